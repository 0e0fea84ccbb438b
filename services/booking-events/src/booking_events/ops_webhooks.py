"""/ops/webhooks: tenants' webhook endpoints, each endpoint's delivery log, and replaying a delivery.

The reads and the replay are `booking_core.ops.webhooks`' and
`booking_core.webhooks.deliveries`' (the API's and `bookingctl webhooks`'
too): a replay sends a dead or delivered delivery again as a new round, with
the same `webhook-id` (receivers deduplicate by it), audited as the signed-in operator.  No page ever shows a
signing secret: the reads never select one.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from booking_core.config import Settings
from booking_core.ops import webhooks
from booking_core.webhooks import deliveries
from booking_events.keys import OPS_SESSION, SETTINGS
from booking_events.ops_auth import operator_required
from booking_events.ops_data import conn
from booking_events.ops_render import error, page

#: The delivery states the endpoint page filters on (`?state=`): the deliveries' own, as the API's filter.
STATES = deliveries.STATES


def _endpoints(settings: Settings) -> list[dict]:
    with conn(settings) as c:
        return webhooks.console_endpoints(c)


def _endpoint(settings: Settings, endpoint_id: str, state: str | None):
    with conn(settings) as c:
        return webhooks.console_endpoint(c, endpoint_id, state=state)


def _replay(settings: Settings, delivery_id: str, actor: str):
    with conn(settings) as c:
        return webhooks.console_replay(c, delivery_id, actor=actor)


@operator_required
async def endpoints_page(request: web.Request) -> web.StreamResponse:
    """GET /ops/webhooks: every tenant's endpoints, failing ones first, with open and dead deliveries."""
    found = await asyncio.to_thread(_endpoints, request.app[SETTINGS])
    return page(request, "webhooks.html", endpoints=found, limit=webhooks.CONSOLE_LIMIT)


@operator_required
async def endpoint_page(request: web.Request) -> web.StreamResponse:
    """GET /ops/webhooks/endpoints/{id}[?state=dead]: the endpoint and its newest deliveries."""
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        return error(request, 400, "Bad filter", f"state: must be one of {', '.join(STATES)}.")
    found = await asyncio.to_thread(_endpoint, request.app[SETTINGS], request.match_info["endpoint_id"], state)
    if found is None:
        return error(request, 404, "No such endpoint", "No live webhook endpoint has that id.")
    endpoint, log = found
    return page(request, "webhook_endpoint.html", endpoint=endpoint, deliveries=log, state=state, states=STATES)


@operator_required
async def replay(request: web.Request) -> web.StreamResponse:
    """POST /ops/webhooks/deliveries/{id}/replay: send it again (same webhook-id), back to its endpoint's log."""
    done = await asyncio.to_thread(_replay, request.app[SETTINGS], request.match_info["delivery_id"],
                                   request[OPS_SESSION].operator)
    if done is None:
        return error(request, 404, "No such delivery", "No webhook delivery has that id. Nothing was sent.")
    result, endpoint_id = done
    if result == "open":
        return error(request, 409, "Nothing done", "That delivery is still being tried; it can be replayed once "
                     "it is delivered or dead.")
    raise web.HTTPSeeOther(f"/ops/webhooks/endpoints/{endpoint_id}")
