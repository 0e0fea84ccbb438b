"""/ops/dead-letters: filter, page, inspect, and requeue or discard one or all that match.

Every action is booking_core.tasks.deadletters' (the API's and bookingctl's), with
the signed-in operator as the audit actor, and every filter is read by
booking_core.ops.filters (the API's contract).  "All that match" goes through a
confirmation page that shows the dry-run count and the filter in words; the
confirmed action becomes a bulk job (booking_core.ops.bulkjobs), the same the
API starts, which a runner in the relay does in batches while its page shows
the progress: closing the page or restarting this process stops nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from aiohttp import web

from booking_core.messaging.contracts import QUEUES
from booking_core.ops.filters import InvalidFilter
from booking_core.tasks import deadletters
from booking_events import ops_data, sse
from booking_events.keys import OPS_FORM, OPS_SESSION, REDIS, SETTINGS
from booking_events.ops_auth import current_session, operator_required
from booking_events.ops_filters import PAGE_SIZE, LetterQuery, parse, parse_action
from booking_events.ops_render import error, page
from booking_events.streams import STREAM_HEADERS

log = logging.getLogger(__name__)


async def _filter(request: web.Request, q: LetterQuery) -> deadletters.Filter:
    """The booking_core filter for the query; InvalidFilter for an unknown tenant."""
    return await asyncio.to_thread(ops_data.resolve_filter, request.app[SETTINGS], q.checked)


def _bad_filter(request: web.Request, e: InvalidFilter) -> web.Response:
    """The API's 422, as a page: every bad field, with the contract's message."""
    return page(request, "invalid_filter.html", status=422, errors=e.errors)


@operator_required
async def list_letters(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    try:
        q = parse(request.query)
        f = await _filter(request, q)
    except InvalidFilter as e:
        return _bad_filter(request, e)
    found = await asyncio.to_thread(ops_data.letter_page, settings, f, limit=PAGE_SIZE,
                                    offset=(q.page - 1) * PAGE_SIZE)
    pages = max(1, -(-found.total // PAGE_SIZE))
    return page(request, "dead_letters.html", q=q, queues=QUEUES, found=found, pages=pages,
                tenants=await asyncio.to_thread(ops_data.tenant_list, settings))


@operator_required
async def letter(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    detail = await asyncio.to_thread(ops_data.letter_detail, settings, request.match_info["dead_id"])
    if detail is None:
        return error(request, 404, "No such dead letter",
                     "This dead letter does not exist or is no longer open (requeued or discarded).")
    dead, booking, tenant = detail
    trace = ops_data.trace_id(dead, booking)
    return page(request, "dead_letter.html", letter=dead, booking=booking, tenant=tenant, trace=trace,
                trace_url=ops_data.trace_link(settings.trace_url_template, trace))


@operator_required
async def act_on_letter(request: web.Request) -> web.StreamResponse:
    """POST /ops/dead-letters/{id}/{requeue|discard}."""
    action = request.match_info["action"]
    session = request[OPS_SESSION]
    why_not = await asyncio.to_thread(ops_data.act_on_one, request.app[SETTINGS], request.app[REDIS],
                                      request.match_info["dead_id"], action, session.operator)
    if why_not:
        return error(request, 409, "Nothing done", why_not)
    outcome = "It is back in its queue with fresh retries." if action == "requeue" \
        else "It is closed; its task stays dead."
    return page(request, "done.html", heading=f"Dead letter {action}d",
                message=f"{outcome} Recorded in the audit trail as {session.operator}.")


@operator_required
async def confirm_bulk(request: web.Request) -> web.StreamResponse:
    """GET /ops/dead-letters/bulk?action=…&<filter>: the dry-run count, and the form that confirms."""
    try:
        action = parse_action(request.query.get("action"))
        q = replace(parse(request.query), page=1)
        f = await _filter(request, q)
    except InvalidFilter as e:
        return _bad_filter(request, e)
    count = await asyncio.to_thread(ops_data.dry_run, request.app[SETTINGS], f)
    return page(request, "confirm_bulk.html", action=action, q=q, count=count)


@operator_required
async def start_bulk(request: web.Request) -> web.StreamResponse:
    """POST /ops/dead-letters/bulk: queue the job for the runners, show its page."""
    form = request[OPS_FORM]
    try:
        action = parse_action(form.get("action"))
        f = await _filter(request, parse(form))
    except InvalidFilter as e:
        return _bad_filter(request, e)
    job_id = await asyncio.to_thread(ops_data.start_job, request.app[SETTINGS], action, f,
                                     request[OPS_SESSION].operator)
    raise web.HTTPSeeOther(f"/ops/jobs/{job_id}")


def job_fields(job) -> dict[str, str]:
    """A job's progress as display text (the page and its stream)."""
    state = "running (its runner stopped; another runner resumes it)" if job.stalled else job.state
    return {"done": str(job.done), "matched": str(job.matched), "state": state,
            "percent": str(job.percent), "error": job.error or ""}


@operator_required
async def job_page(request: web.Request) -> web.StreamResponse:
    job = await asyncio.to_thread(ops_data.job, request.app[SETTINGS], request.match_info["job_id"])
    if job is None:
        return error(request, 404, "No such bulk action", "There is no bulk action with this id.")
    tenants = await asyncio.to_thread(ops_data.tenant_list, request.app[SETTINGS])
    names = {t["id"]: t["name"] for t in tenants}
    shown = {("tenant" if k == "tenant_id" else k): names.get(v, v) if k == "tenant_id" else v
             for k, v in job.filter.items()}
    return page(request, "job.html", job=job, f=job_fields(job), shown_filter=shown)


@operator_required
async def job_stream(request: web.Request) -> web.StreamResponse:
    """The job's progress as `fields` events, then `done` when it has finished or failed."""
    settings = request.app[SETTINGS]
    resp = web.StreamResponse(headers=STREAM_HEADERS)
    await resp.prepare(request)
    await resp.write(sse.retry_hint())
    while True:
        job = await asyncio.to_thread(ops_data.job, settings, request.match_info["job_id"])
        if job is None or await current_session(request) is None:
            break
        await resp.write(sse.frame("fields", job_fields(job)))
        if job.state in ("finished", "failed"):
            await resp.write(sse.frame("done", {"state": job.state}))
            break
        await asyncio.sleep(0.5)
    await resp.write_eof()
    return resp
