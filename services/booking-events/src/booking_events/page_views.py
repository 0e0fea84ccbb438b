"""The customer's progress page under a capability URL: /status/{token}, its stream and its invoice.

Served here, beside the stream, because the page's live part is a stream:
the API's gunicorn threads then never hold a customer's open page, the page
and its EventSource share one origin (so `default-src 'self'` covers both),
and the API keeps no HTML.  The token (booking_core.model.status_links) is the only
credential: it names one booking, expires, and dies when the secret rotates.
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources

from aiohttp import web

from booking_core import db
from booking_core.model import bookings
from booking_core.model.currencies import format_amount
from booking_core.model.status_links import InvalidToken, verify
from booking_core.web.headers import SECURITY_HEADERS
from booking_core.web.pages import templates
from booking_events import eventlog, progress, sse
from booking_events.admission import StreamsFull
from booking_events.keys import SETTINGS, SLOTS
from booking_events.streams import client_of, stream, too_many

#: The progress page's URL holds its capability token: no forms, no Referer (booking_core.web.pages).
_templates = templates("booking_events", "templates")


def _page(status: int, template: str, *, heading: str = "Booking progress unavailable", **context) -> web.Response:
    return web.Response(status=status, text=_templates.get_template(template).render(heading=heading, **context),
                        content_type="text/html", headers=SECURITY_HEADERS)


def _booking_id(request: web.Request) -> str | web.Response:
    """The booking the URL's token opens, or the page saying why it does not."""
    try:
        return verify(request.app[SETTINGS].status_secret, request.match_info["token"], now=time.time())
    except InvalidToken as e:
        if str(e) == "expired":
            return _page(410, "invalid.html", reason="This link has expired.")
        return _page(404, "invalid.html", reason="This link is not valid.")


def _load(url: str, booking_id: str) -> dict | None:
    with db.pool(url).connection() as conn:
        return bookings.get(conn, None, booking_id)


async def status_page(request: web.Request) -> web.Response:
    """The booking and its three steps, readable without JavaScript."""
    booking_id = _booking_id(request)
    if isinstance(booking_id, web.Response):
        return booking_id
    row = await asyncio.to_thread(_load, request.app[SETTINGS].database_url, booking_id)
    if row is None:
        return _page(404, "invalid.html", reason="This booking no longer exists.")
    token = request.match_info["token"]
    currency = row["currency"].strip()
    return _page(200, "status.html", booking=row, amount=format_amount(row["amount"], currency),
                 currency=currency, steps=progress.steps(row["tasks"]),
                 stream_url=f"/status/{token}/events", invoice_url=f"/status/{token}/invoice")


def _page_event(row: dict) -> dict:
    return progress.step_view(row["task"], row["state"], row["attempts"])


async def status_events(request: web.Request) -> web.StreamResponse:
    """The page's stream: the same events, in the customer's words, without internal error text."""
    booking_id = _booking_id(request)
    if isinstance(booking_id, web.Response):
        return booking_id
    try:
        last_event_id = sse.parse_last_event_id(request.headers.get("Last-Event-ID"))
    except ValueError:
        last_event_id = 0  # a browser only ever echoes our ids; start over rather than fail
    slots = request.app[SLOTS]
    try:
        with slots.hold("client", client_of(request)), slots.hold("link", f"page:{booking_id}"):
            return await stream(request, booking_id, last_event_id, show=_page_event)
    except StreamsFull as full:
        return too_many(request, full)


async def status_invoice(request: web.Request) -> web.Response:
    """The invoice PDF, once issued."""
    booking_id = _booking_id(request)
    if isinstance(booking_id, web.Response):
        return booking_id
    inv = await asyncio.to_thread(eventlog.invoice_pdf, request.app[SETTINGS].database_url, booking_id)
    if inv is None:
        return _page(409, "invalid.html", heading="Your invoice is not ready yet",
                     reason="Please try again in a moment: the progress page shows when it is ready.")
    return web.Response(body=bytes(inv["pdf"]), content_type="application/pdf", headers={
        **SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{inv["number"]}.pdf"'})


def add_routes(app: web.Application) -> None:
    app.router.add_static("/status/assets/", _static_dir(), name="assets")
    app.router.add_get("/status/{token}", status_page)
    app.router.add_get("/status/{token}/events", status_events)
    app.router.add_get("/status/{token}/invoice", status_invoice)


def _static_dir() -> str:
    """The vendored script and stylesheet, shipped inside the package (no CDN)."""
    return str(resources.files("booking_events") / "static")
