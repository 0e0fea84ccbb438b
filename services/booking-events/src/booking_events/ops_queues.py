"""/ops/queues: depth, age, throughput and workers per queue, and who fills it, kept current over SSE.

The page is complete without JavaScript (every figure is in the HTML); the
vendored ops.js opens /ops/queues/stream, which sends the same figures every
`REFRESH_SECONDS`, computed by the same function.  The stream ends after
`STREAM_SECONDS` (the browser reconnects, and the session is checked again),
or at once when the session ends.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from booking_core.messaging.contracts import QUEUES
from booking_events import ops_data, sse
from booking_events.keys import OPS_FORM, OPS_SESSION, REDIS, SETTINGS
from booking_events.ops_auth import current_session, operator_required
from booking_events.ops_render import error, page
from booking_events.streams import STREAM_HEADERS

REFRESH_SECONDS = 2.0
STREAM_SECONDS = 300.0


@operator_required
async def queues_page(request: web.Request) -> web.StreamResponse:
    fields = await asyncio.to_thread(ops_data.queue_fields, request.app[SETTINGS], request.app[REDIS])
    return page(request, "queues.html", queues=QUEUES, f=fields, refresh=int(REFRESH_SECONDS),
                top=ops_data.TOP_TENANTS)


@operator_required
async def queues_stream(request: web.Request) -> web.StreamResponse:
    """The figures as `fields` events until the session ends or STREAM_SECONDS pass."""
    app = request.app
    resp = web.StreamResponse(headers=STREAM_HEADERS)
    await resp.prepare(request)
    await resp.write(sse.retry_hint())
    loop = asyncio.get_running_loop()
    until = loop.time() + STREAM_SECONDS
    while loop.time() < until:
        fields = await asyncio.to_thread(ops_data.queue_fields, app[SETTINGS], app[REDIS])
        await resp.write(sse.frame("fields", fields))
        await asyncio.sleep(REFRESH_SECONDS)
        if await current_session(request) is None:
            break
    await resp.write_eof()
    return resp


@operator_required
async def pause_or_resume(request: web.Request) -> web.StreamResponse:
    """POST /ops/queues/{queue}/{pause|resume}: booking_core.queues.pauses, audited as this operator; then the page."""
    queue, action = request.match_info["queue"], request.match_info["action"]
    reason = request[OPS_FORM].get("reason", "") if action == "pause" else ""
    try:
        await asyncio.to_thread(ops_data.set_paused, request.app[SETTINGS], queue, action == "pause",
                                request[OPS_SESSION].operator, reason)
    except ValueError as e:  # an unknown queue, or a reason too long or not one printable line
        return error(request, 400, f"Queue not {action}d", f"{str(e).capitalize()}. Nothing was changed.")
    raise web.HTTPSeeOther("/ops/queues")
