"""GET /api/v1/bookings/{id}/events: the tenant's stream, under the API's own bearer auth.

Authentication and tenant scoping are booking_core's functions, the same the
API calls: an unknown token is 401, another tenant's booking is 404.  The
token is checked again every 2 s while the stream is open (`tokenwatch`):
revoking it ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from booking_core import db
from booking_core.model import bookings, tenants
from booking_events import sse
from booking_events.admission import StreamsFull
from booking_events.keys import SETTINGS, SETUPS, SLOTS, TOKEN_WATCH
from booking_events.problems import problem
from booking_events.streams import client_of, stream, too_many


def _lookup(url: str, token: str, booking_id: str) -> tuple[dict | None, dict | None]:
    """(identity, booking) for the token and booking id; either None when not found."""
    with db.pool(url).connection() as conn:
        identity = tenants.authenticate(conn, token)
        if identity is None:
            return None, None
        return identity, bookings.get(conn, identity["tenant_id"], booking_id)


async def booking_events(request: web.Request) -> web.StreamResponse:
    """The booking's progress as Server-Sent Events."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return problem(401, "unauthorized", "Send 'Authorization: Bearer <token>'.",
                       headers={"WWW-Authenticate": 'Bearer realm="bookings"'})
    try:
        last_event_id = sse.parse_last_event_id(request.headers.get("Last-Event-ID"))
    except ValueError:
        return problem(400, "bad-last-event-id", "Last-Event-ID must be an event id (a whole number).")
    app = request.app
    try:
        with contextlib.ExitStack() as held:
            # The client's cap first: it costs nothing, and the lookup below costs a query.
            held.enter_context(app[SLOTS].hold("client", client_of(request)))
            async with app[SETUPS]:
                identity, booking = await asyncio.to_thread(_lookup, app[SETTINGS].database_url, token.strip(),
                                                            request.match_info["booking_id"])
            if identity is None:
                return problem(401, "unauthorized", "The token is unknown or revoked.",
                               headers={"WWW-Authenticate": 'Bearer realm="bookings"'})
            if booking is None:
                return problem(404, "not-found", "No such booking.")
            booking_id = str(booking["id"])
            held.enter_context(app[SLOTS].hold("link", f"api:{booking_id}"))
            watch, token_id = app[TOKEN_WATCH], identity["token_id"]
            return await stream(request, booking_id, last_event_id,
                                guard=lambda queue: watch.watching(token_id, queue))
    except StreamsFull as full:
        return too_many(request, full)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/bookings/{booking_id}/events", booking_events)
