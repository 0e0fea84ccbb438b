"""The body of a delivery: the stored event's {type, timestamp, data}, as compact JSON.

The event's payload is built by the database trigger that records it (migration
0013) from the one booking that changed, so it holds that tenant's data only.
The body is serialised the same way on every attempt (jsonb keeps its keys in a
fixed order), so a retry carries the same bytes and the same webhook-id.
"""

from __future__ import annotations

import json

EVENT_TYPES = (
    "booking.created",
    "booking.email_sent",
    "booking.invoice_issued",
    "booking.completed",
    "booking.task_dead",
)
#: A payload larger than this is not sent (ours are a few hundred bytes).
MAX_BODY_BYTES = 256 * 1024


def body(payload: dict) -> bytes:
    """The bytes signed and sent; ValueError when the payload is over the cap."""
    out = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    if len(out) > MAX_BODY_BYTES:
        raise ValueError(f"payload of {len(out)} bytes is over the {MAX_BODY_BYTES}-byte cap")
    return out


def message_id(event_id: str) -> str:
    """The webhook-id of an event: the same on every attempt, replay and endpoint."""
    return "msg_" + event_id.replace("-", "")
