"""Bookings: create (the hot path), read, list, and fetch the invoice PDF."""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, g, json, request
from werkzeug.exceptions import RequestEntityTooLarge

from booking_api import admission, idempotency
from booking_api.auth import actor_name
from booking_api.contract import MAX_BODY_BYTES, BookingQuery
from booking_api.cursors import decode_cursor, page
from booking_api.database import get_db, settings
from booking_api.presenters import booking_json
from booking_api.problems import ApiError
from booking_api.validation import validate_booking, validate_query
from booking_core.model import bookings
from booking_core.telemetry.tracing import current_trace_id

bp = Blueprint("bookings", __name__, url_prefix="/api/v1/bookings")


def _body() -> bytes:
    """The raw body; 413 (RequestEntityTooLarge) past MAX_BODY_BYTES, however it is framed.

    Werkzeug refuses a too-large Content-Length up front, but a chunked body
    (no Content-Length) is only read up to the limit, and the rest silently
    left unread.  So when a chunked body fills the limit, one more byte is
    asked of the server's own stream: if there is one, the body is too large.
    """
    raw = request.get_data(cache=False)
    if request.content_length is None and len(raw) >= MAX_BODY_BYTES and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return raw


def _json_body() -> object:
    """The parsed JSON body, or the right error: 415, 413 or 400."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported-media-type", "Send the body as application/json.")
    raw = _body()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, "malformed-json", f"The body is not valid JSON: {e}") from None


def _created(body: dict, location: str, decision: admission.Decision, replayed: bool = False) -> Response:
    resp = Response(json.dumps(body), status=201, mimetype="application/json")
    resp.headers["Location"] = location
    if replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    return admission.with_headers(resp, decision)


@bp.post("")
def create_booking():
    """Confirm a booking: one statement writes it, its tasks and its outbox messages.

    The tenant's token is taken first, so a refused request without an
    Idempotency-Key costs no parsing and no database.  With a key, the key's
    lock, lookup and record share the booking's transaction, and the refusal
    waits for the lookup: a replay is answered (and its token given back)
    whatever the bucket holds.
    """
    tenant_id = g.identity["tenant_id"]
    decision = admission.take(tenant_id)
    key = idempotency.parse_key(request.headers.get("Idempotency-Key"))
    if not key:
        admission.enforce(decision)
    data = _json_body()
    booking, errors = validate_booking(data)
    if errors:
        raise ApiError(422, "invalid-booking", "Some fields are invalid.", errors=errors)
    conn = get_db()
    if not key:
        row = bookings.create(conn, tenant_id=tenant_id, booking=booking, actor=actor_name(),
                              trace_id=current_trace_id())
        body = booking_json(row, settings())
        return _created(body, body["links"]["self"], decision)
    fingerprint = idempotency.request_hash(data)
    with conn.transaction():
        stored = idempotency.begin(conn, tenant_id, key, fingerprint, settings().idempotency_ttl_seconds)
        if stored is not None:
            admission.admission().refund(decision)
            return _created(stored["body"], stored["location"], decision, replayed=True)
        admission.enforce(decision)
        row = bookings.create(conn, tenant_id=tenant_id, booking=booking, actor=actor_name(),
                              trace_id=current_trace_id())
        body = booking_json(row, settings())
        location = body["links"]["self"]
        idempotency.store(conn, tenant_id, key, fingerprint, 201, body, location)
    return _created(body, location, decision)


@bp.get("/<booking_id>")
def get_booking(booking_id: str):
    """One booking of the caller's tenant, with live task states; a strong ETag makes polling cheap.

    The ETag is a hash of the exact body, so it changes with any task's state,
    attempts or timestamp; `If-None-Match` with the current one is a bodiless 304.
    """
    row = bookings.get(get_db(), g.identity["tenant_id"], booking_id)
    if row is None:
        raise ApiError(404, "not-found", "No such booking.")
    raw = json.dumps(booking_json(row, settings()))
    resp = Response(raw, mimetype="application/json")
    resp.set_etag(hashlib.sha256(raw.encode()).hexdigest()[:32])
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp.make_conditional(request)


@bp.get("")
def list_bookings():
    """The caller's bookings, newest first, paged by an opaque cursor."""
    query = validate_query(BookingQuery, request.args)
    after = decode_cursor(query.cursor) if query.cursor else None
    rows = bookings.page(get_db(), g.identity["tenant_id"], limit=query.limit + 1, after=after,
                         task_state=query.state, task=query.task)
    rows, cursor = page(rows, query.limit, lambda r: (r["created_at"], r["id"]))
    return {"items": [booking_json(r, settings()) for r in rows], "next_cursor": cursor}


@bp.get("/<booking_id>/invoice")
def get_invoice(booking_id: str):
    """The invoice PDF once issued; 409 while the invoice task is not done."""
    conn = get_db()
    row = bookings.get(conn, g.identity["tenant_id"], booking_id)
    if row is None:
        raise ApiError(404, "not-found", "No such booking.")
    inv = conn.execute(
        "SELECT number, pdf FROM invoices WHERE booking_id = %s AND pdf IS NOT NULL", (booking_id,)
    ).fetchone()
    if inv is None:
        state = row["tasks"].get("invoice", {}).get("state", "pending")
        raise ApiError(409, "invoice-not-ready",
                       f"The invoice is not ready yet (invoice task is {state}).",
                       headers={"Retry-After": "2"})
    resp = Response(bytes(inv["pdf"]), mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'attachment; filename="{inv["number"]}.pdf"'
    return resp
