"""How bookings look in JSON: one function, used by every view and the replay store.

It fills the `Booking` response model, so a key the model (and hence the
OpenAPI document) does not declare cannot slip into a response.
"""

from __future__ import annotations

from booking_api.contract import Booking
from booking_core.contracts import TASKS
from booking_core.currencies import format_amount


def booking_json(row: dict) -> dict:
    """The API's representation of a booking row with its tasks."""
    tasks = {}
    for name in TASKS:
        t = row["tasks"].get(name, {})
        tasks[name] = {
            "state": t.get("state", "pending"),
            "attempts": t.get("attempts", 0),
            "last_error": t.get("last_error"),
            "updated_at": t.get("updated_at"),
            "trace_id": t.get("trace_id"),
        }
    currency = row["currency"].strip()
    booking = Booking(
        id=str(row["id"]),
        customer={"name": row["customer_name"], "email": row["customer_email"]},
        item=row["item"],
        check_in=row["check_in"],
        check_out=row["check_out"],
        amount=format_amount(row["amount"], currency),
        currency=currency,
        status=row["status"],
        created_at=row["created_at"],
        trace_id=row.get("trace_id"),
        tasks=tasks,
        links={"self": f"/api/v1/bookings/{row['id']}", "invoice": f"/api/v1/bookings/{row['id']}/invoice"},
    )
    return booking.model_dump(mode="json", by_alias=True)
