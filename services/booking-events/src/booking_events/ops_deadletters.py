"""/ops/dead-letters: filter, page, inspect, and requeue or discard one or all that match.

Every action is booking_core.tasks.deadletters' (the API's and bookingctl's), with
the signed-in operator as the audit actor.  "All that match" goes through a
confirmation page that shows the dry-run count and the filter in words; the
confirmed action becomes a bulk job (booking_events.bulkjobs) that runs in
batches in this process while its page shows the progress.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from aiohttp import web

from booking_core.messaging.contracts import QUEUES
from booking_core.tasks import deadletters
from booking_events import ops_data, sse
from booking_events.keys import BULK_TASKS, OPS_FORM, OPS_SESSION, REDIS, SETTINGS
from booking_events.ops_auth import current_session, operator_required
from booking_events.ops_filters import PAGE_SIZE, FilterError, LetterQuery, parse, parse_action
from booking_events.ops_render import error, page
from booking_events.streams import STREAM_HEADERS

log = logging.getLogger(__name__)


async def _filter(request: web.Request, q: LetterQuery) -> deadletters.Filter:
    """The booking_core filter for the query; FilterError for an unknown tenant."""
    tenant_id = None
    if q.tenant:
        tenant_id = await asyncio.to_thread(ops_data.tenant_id, request.app[SETTINGS], q.tenant)
        if tenant_id is None:
            raise FilterError("tenant", f"no tenant is called “{q.tenant}”")
    return deadletters.Filter(queue=q.queue or None, tenant_id=tenant_id, error=q.error or None,
                              dead_since=q.since(), dead_before=q.before())


def _bad_filter(request: web.Request, e: FilterError) -> web.Response:
    return error(request, 400, "Invalid filter", f"The field “{e.field}” {e.message}. Nothing was listed or changed.")


@operator_required
async def list_letters(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    try:
        q = parse(request.query)
        f = await _filter(request, q)
    except FilterError as e:
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
    except FilterError as e:
        return _bad_filter(request, e)
    count = await asyncio.to_thread(ops_data.dry_run, request.app[SETTINGS], f)
    return page(request, "confirm_bulk.html", action=action, q=q, count=count)


@operator_required
async def start_bulk(request: web.Request) -> web.StreamResponse:
    """POST /ops/dead-letters/bulk: record the job, start it here, show its page."""
    form = request[OPS_FORM]
    try:
        action = parse_action(form.get("action"))
        f = await _filter(request, parse(form))
    except FilterError as e:
        return _bad_filter(request, e)
    # Shielded: an operator who closes the tab mid-request cancels the handler, and a job
    # recorded but never started would sit "stalled" until someone ran it again.
    job_id = await asyncio.shield(_start_job(request.app, action, f, request[OPS_SESSION].operator))
    raise web.HTTPSeeOther(f"/ops/jobs/{job_id}")


async def _start_job(app: web.Application, action: str, f: deadletters.Filter, operator: str) -> str:
    """Record the bulk job and start running it in this process; its id."""
    settings, client = app[SETTINGS], app[REDIS]
    job_id = await asyncio.to_thread(ops_data.start_job, settings, action, f, operator)
    task = asyncio.create_task(asyncio.to_thread(ops_data.run_job, settings, client, job_id),
                               name=f"bulk-{job_id}")
    app[BULK_TASKS].add(task)
    task.add_done_callback(app[BULK_TASKS].discard)
    return job_id


def job_fields(job) -> dict[str, str]:
    """A job's progress as display text (the page and its stream)."""
    state = "stalled: its process stopped; run the same action again for what is left" if job.stalled \
        else job.state
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
        if job.state != "running" or job.stalled:
            await resp.write(sse.frame("done", {"state": job.state}))
            break
        await asyncio.sleep(0.5)
    await resp.write_eof()
    return resp
