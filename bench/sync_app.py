"""The article's synchronous baseline: the same API doing all the slow work inside the request.

`POST /api/v1/sync/bookings` validates and saves the booking exactly as the real
endpoint does, then — before answering — sends the confirmation email,
renders and stores the invoice PDF and appends the audit entry by calling the
three workers' own actor functions (`actor.fn`, Dramatiq's undecorated
function: same code, same Postgres, same SMTP sink), and marks the tasks done.
The outbox rows the save writes are deleted in its transaction, so the relay
publishes nothing and no worker repeats the work.

Served by gunicorn with the API's own settings (`bench/seed_scenario.py` starts
it beside the platform):

    gunicorn -c python:booking_api.gunicorn_conf --pythonpath bench sync_app:app
"""

from __future__ import annotations

import uuid

from flask import Blueprint, Flask, g

from audit_worker.actors import record_audit_event
from booking_api import admission, create_app
from booking_api.auth import actor_name
from booking_api.bookings_views import _created, _json_body, validate_booking
from booking_api.database import get_db, settings
from booking_api.presenters import booking_json
from booking_api.problems import ApiError
from booking_core.messaging.contracts import audit_payload
from booking_core.model import bookings
from email_worker.actors import send_confirmation_email
from invoice_worker.actors import issue_invoice

bp = Blueprint("sync", __name__, url_prefix="/api/v1/sync")


@bp.post("/bookings")
def create_booking_sync():
    """Confirm a booking and do its email, invoice and audit before answering."""
    decision = admission.take(g.identity["tenant_id"])  # the same admission as the real endpoint
    admission.enforce(decision)
    booking, errors = validate_booking(_json_body())
    if errors:
        raise ApiError(422, "invalid-booking", "Some fields are invalid.", errors=errors)
    conn = get_db()
    tenant_id = g.identity["tenant_id"]
    with conn.transaction():
        row = bookings.create(conn, tenant_id=tenant_id, booking=booking, actor=actor_name())
        conn.execute("DELETE FROM outbox WHERE payload->>'booking_id' = %s", (row["id"],))
    send_confirmation_email.fn(task="email", booking_id=row["id"], tenant_id=tenant_id)
    issue_invoice.fn(task="invoice", booking_id=row["id"], tenant_id=tenant_id)
    record_audit_event.fn(**audit_payload(
        event_id=str(uuid.uuid4()), kind="booking.created", tenant_id=tenant_id, booking_id=row["id"],
        actor=actor_name(), occurred_at=row["created_at"].isoformat()))
    conn.execute("UPDATE booking_tasks SET state = 'done', attempts = 1, updated_at = clock_timestamp()"
                 " WHERE booking_id = %s", (row["id"],))
    body = booking_json(bookings.get(conn, tenant_id, row["id"]), settings())
    return _created(body, body["links"]["self"], decision)


def make_app() -> Flask:
    """The real API app plus the synchronous route."""
    app = create_app()
    app.register_blueprint(bp)
    return app


app = make_app()
