"""Ids in messages are untrusted: each is checked once, here, before it reaches SQL or a log.

Message arguments come from Redis, where anyone with access can write; a
malformed id can never become valid by retrying, so it is a permanent error
(`InvalidMessage` by default, or the caller's own `PermanentTaskError`
subclass) that names the field and shows a bounded repr of the value.
"""

from __future__ import annotations

import uuid

from booking_core.messaging.contracts import Contract
from booking_core.messaging.errors import InvalidMessage, PermanentTaskError

#: How much of a bad value an error message repeats (it may be hostile and long).
SHOWN_CHARS = 80


def parse_uuid(value: object, field: str, *,
               error: type[PermanentTaskError] = InvalidMessage) -> uuid.UUID:
    """`value` (a UUID or its text) as a UUID; else `error` naming `field`."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise error(f"{field} is not a UUID: {repr(value)[:SHOWN_CHARS]}") from None


def is_uuid(value: str) -> bool:
    """Whether `value` reads as a UUID (an outbox row's tenant_id is payload text: '' or anything)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def task_ids(contract: Contract, *, task: object, booking_id: object,
             tenant_id: object) -> tuple[str, str]:
    """Check a booking task message for `contract`; its (booking_id, tenant_id), canonical."""
    if task != contract.task:
        raise InvalidMessage(
            f"message for task {repr(task)[:SHOWN_CHARS]} sent to the {contract.task!r} actor"
        )
    return (str(parse_uuid(booking_id, "booking_id")), str(parse_uuid(tenant_id, "tenant_id")))
