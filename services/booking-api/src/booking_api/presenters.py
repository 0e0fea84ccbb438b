"""How bookings look in JSON: one function, used by every view and the replay store."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from booking_core.contracts import TASKS


def _ts(value) -> str | None:
    return value.isoformat() if value is not None else None


def booking_json(row: dict) -> dict:
    """The API's representation of a booking row with its tasks."""
    tasks = {}
    for name in TASKS:
        t = row["tasks"].get(name, {})
        tasks[name] = {
            "state": t.get("state", "pending"),
            "attempts": t.get("attempts", 0),
            "last_error": t.get("last_error"),
            "updated_at": _ts(t.get("updated_at")),
            "trace_id": t.get("trace_id"),
        }
    return {
        "id": row["id"],
        "customer": {"name": row["customer_name"], "email": row["customer_email"]},
        "item": row["item"],
        "check_in": row["check_in"].isoformat(),
        "check_out": row["check_out"].isoformat(),
        "amount": f"{row['amount']:.2f}",
        "currency": row["currency"].strip(),
        "status": row["status"],
        "created_at": _ts(row["created_at"]),
        "trace_id": row.get("trace_id"),
        "tasks": tasks,
        "links": {
            "self": f"/api/v1/bookings/{row['id']}",
            "invoice": f"/api/v1/bookings/{row['id']}/invoice",
        },
    }


def encode_cursor(row: dict) -> str:
    """An opaque keyset cursor after `row` (newest-first order)."""
    raw = json.dumps([row["created_at"].isoformat(), row["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of encode_cursor; ValueError on anything it did not produce."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, ident = json.loads(raw)
        import uuid

        return datetime.fromisoformat(ts), str(uuid.UUID(ident))
    except Exception as e:  # noqa: BLE001 - any malformed cursor is the client's error
        raise ValueError("invalid cursor") from e
