"""GET /api/v1/bookings/{id}/events: the tenant's stream, under the API's own bearer auth.

Authentication and tenant scoping are booking_core's functions, the same the
API calls: an unknown token is 401, another tenant's booking is 404.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from booking_core import bookings, db, tenants
from booking_events import sse
from booking_events.keys import SETTINGS
from booking_events.problems import problem
from booking_events.streams import stream


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
    identity, booking = await asyncio.to_thread(_lookup, request.app[SETTINGS].database_url, token.strip(),
                                                request.match_info["booking_id"])
    if identity is None:
        return problem(401, "unauthorized", "The token is unknown or revoked.",
                       headers={"WWW-Authenticate": 'Bearer realm="bookings"'})
    if booking is None:
        return problem(404, "not-found", "No such booking.")
    return await stream(request, str(booking["id"]), last_event_id)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/bookings/{booking_id}/events", booking_events)
