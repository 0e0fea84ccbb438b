"""The `record_audit_event` actor: one audit message becomes one link of its tenant's chain.

Redeliveries are harmless (the event id is recorded once); a payload that can never
be recorded fails at once (`throws`) and goes to the dead letters instead of retrying.
A booking's own audit task is marked done in the transaction that records its entry.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq

from audit_worker.broker import broker, settings
from booking_core import db
from booking_core.audit import chain
from booking_core.messaging.contracts import AUDIT
from booking_core.messaging.errors import PermanentTaskError
from booking_core.tasks import taskstate
from booking_core.worker.broker import actor_options

log = logging.getLogger(__name__)


@dramatiq.actor(
    actor_name=AUDIT.actor,
    queue_name=AUDIT.queue,
    broker=broker,
    throws=(PermanentTaskError,),
    **actor_options(settings, AUDIT.queue),
)
def record_audit_event(
    *positional: Any,
    event_id: str | None = None,
    kind: str | None = None,
    tenant_id: str | None = None,
    booking_id: str | None = None,
    actor: str | None = None,
    occurred_at: str | None = None,
    details: dict | None = None,
    task: str | None = None,
    **unknown: Any,
) -> None:
    """Append the event to its tenant's chain; a redelivered event changes nothing.

    Fields default to None so a missing one is refused as InvalidAuditEvent (permanent)
    rather than as a TypeError that would be retried.  `task` ("audit", on a
    booking's `booking.created` event) names the booking task this entry finishes.
    """
    if positional:
        raise chain.InvalidAuditEvent("audit messages carry keyword arguments only")
    if task is not None and task != AUDIT.task:
        raise chain.InvalidAuditEvent(f"audit messages finish the {AUDIT.task!r} task only")
    payload = {
        "event_id": event_id, "kind": kind, "tenant_id": tenant_id, "booking_id": booking_id,
        "actor": actor, "occurred_at": occurred_at, "details": details, **unknown,
    }
    with db.pooled(settings) as conn, conn.transaction():
        recorded = chain.append(conn, payload)  # a savepoint inside this transaction
        if task is not None and booking_id is not None:
            taskstate.mark_done(conn, booking_id, AUDIT.task)
    if recorded:
        log.info("recorded audit event %s (%s) for tenant %s", event_id, kind, tenant_id)
    else:
        log.info("audit event %s was already recorded; redelivery ignored", event_id)
