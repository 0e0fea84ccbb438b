"""How bookings look in JSON: one function, used by every view and the replay store.

It fills the `Booking` response model, so a key the model (and hence the
OpenAPI document) does not declare cannot slip into a response.
"""

from __future__ import annotations

from booking_api.contract import Booking
from booking_core.config import Settings
from booking_core.messaging.contracts import TASKS
from booking_core.model import status_links
from booking_core.model.currencies import format_amount


def status_page_url(row: dict, settings: Settings | None) -> str | None:
    """The customer's progress page (a capability URL), or None when no secret is configured.

    Its expiry follows the booking's creation, so the URL (and the booking's ETag) never changes.
    """
    if settings is None or not settings.status_secret:
        return None
    token = status_links.sign(settings.status_secret, str(row["id"]),
                              status_links.expiry_for(row["created_at"], settings.status_ttl_seconds))
    return f"{settings.events_base_url}/status/{token}"


def booking_json(row: dict, settings: Settings | None = None) -> dict:
    """The API's representation of a booking row with its tasks (and, given settings, its page link)."""
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
        links={"self": f"/api/v1/bookings/{row['id']}", "invoice": f"/api/v1/bookings/{row['id']}/invoice",
               "events": f"{settings.events_base_url if settings else ''}/api/v1/bookings/{row['id']}/events",
               "status_page": status_page_url(row, settings)},
    )
    return booking.model_dump(mode="json", by_alias=True)
