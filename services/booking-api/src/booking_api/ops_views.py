"""Operations (admin tokens only): queue depth and pauses, dead letters, bulk jobs, retrying a dead task.

Dead letters are read from their Postgres record (booking_core.tasks.deadletters),
so they can be listed, requeued and discarded whether or not Redis still
holds them; Redis is only told to forget its cached copy.  The filter is
booking_core.ops.filters' (the console's too), and "all that match" is a bulk
job (booking_core.ops.bulkjobs) that a runner in the relay does: the request
answers 202 with the job's URL, where its progress is read.
"""

from __future__ import annotations

import time
from uuid import UUID

from flask import Blueprint, request
from pydantic import ValidationError

from booking_api.auth import actor_name, admin_required
from booking_api.bookings_views import _json_body
from booking_api.contract import QueueQuery
from booking_api.cursors import decode_cursor, page
from booking_api.database import get_db, get_redis, settings
from booking_api.ops_contract import BulkDeadLetterRequest, DeadLetterFilter, DeadLetterQuery, PauseRequest
from booking_api.problems import ApiError
from booking_api.validation import field_errors, validate_query
from booking_core.messaging.contracts import QUEUES, TASKS
from booking_core.messaging.ids import parse_uuid
from booking_core.ops import bulkjobs, filters
from booking_core.queues import pauses, tenant_backlog
from booking_core.tasks import deadletters
from booking_core.tasks.taskretry import TaskNotDead, retry_task
from booking_scaling.depth import QueueReader

bp = Blueprint("ops", __name__, url_prefix="/api/v1/ops")
#: Who fills the queues: one outbox aggregate per 2 s per process, however often admins poll.
WHO_FILLS = tenant_backlog.SharedReading(ttl=2.0)


def _filter(q: DeadLetterFilter, code: str, detail: str) -> deadletters.Filter:
    """The filter resolved (a tenant given by name looked up); 422 `code` naming `tenant` when none is called so."""
    try:
        return filters.resolve(get_db(), q.shared())
    except filters.InvalidFilter as e:
        raise ApiError(422, code, detail, errors=e.as_list()) from None


def _queue_arg() -> str | None:
    return validate_query(QueueQuery, request.args).queue


def _pause_json(pause: pauses.Pause | None) -> dict:
    """A queue's pause fields: `paused`, and who, when and why while it is paused."""
    if pause is None:
        return {"paused": False}
    return {"paused": True} | {k: v for k, v in pause.as_dict().items() if k != "queue"}


@bp.get("/queues")
@admin_required
def queues():
    """Per queue: ready, in flight, delayed, dead (one atomic Redis snapshot), whether it is paused, and its
    top tenants by outbox backlog."""
    reader = QueueReader(get_redis(), settings().redis_namespace)
    state = pauses.state(get_db())
    ranked, names = WHO_FILLS.get(settings(), get_db())  # on the request's connection: the API's own pool
    now_ms = int(time.time() * 1000)
    return {"queues": [d.as_dict() | _pause_json(state[d.queue])
                       | tenant_backlog.as_json(ranked.get(d.queue), names, now_ms) for d in reader.snapshot(QUEUES)]}


def _known_queue(queue: str) -> str:
    if queue not in QUEUES:
        raise ApiError(404, "not-found", f"No such queue; queues are {', '.join(QUEUES)}.")
    return queue


def _pause_body() -> PauseRequest:
    """The optional pause body: none at all, or JSON with an optional `reason`."""
    if not request.mimetype and not request.content_length:
        return PauseRequest()
    try:
        return PauseRequest.model_validate(_json_body())
    except ValidationError as e:
        raise ApiError(422, "invalid-pause", "Some fields are invalid.", errors=field_errors(e)) from None


@bp.post("/queues/<queue>/pause")
@admin_required
def pause_queue(queue: str):
    """Stop workers starting this queue's messages (they wait, none lost); audited."""
    queue = _known_queue(queue)
    body = _pause_body()
    changed = pauses.pause(get_db(), queue, actor=actor_name(), reason=body.reason or "")
    return {"queue": queue, "changed": changed} | _pause_json(pauses.state(get_db())[queue])


@bp.post("/queues/<queue>/resume")
@admin_required
def resume_queue(queue: str):
    """Let workers take this queue's messages again; audited."""
    queue = _known_queue(queue)
    changed = pauses.resume(get_db(), queue, actor=actor_name())
    return {"queue": queue, "changed": changed} | _pause_json(pauses.state(get_db())[queue])


@bp.get("/dead-letters")
@admin_required
def list_dead_letters():
    """Open dead letters, oldest first, filtered by queue, tenant, error text and time of death; paged."""
    query = validate_query(DeadLetterQuery, request.args)
    after = decode_cursor(query.cursor) if query.cursor else None
    f = _filter(query, "invalid-query", "Some query parameters are invalid.")
    letters = deadletters.list_dead(get_db(), f, limit=query.limit + 1, after=after)
    letters, cursor = page(letters, query.limit, lambda d: (d.dead_since, d.id))
    return {"items": [d.as_dict() for d in letters], "next_cursor": cursor}


def _find(dead_id: str) -> deadletters.DeadLetter:
    queue = _queue_arg()
    try:
        return deadletters.find(get_db(), dead_id, queue)
    except deadletters.DeadLetterError:
        raise ApiError(404, "not-found", "No such dead letter.") from None


def _gone(e: deadletters.DeadLetterError) -> ApiError:
    return ApiError(404, "not-found", f"No such dead letter: {e}.")


# `uuid:` keeps `/dead-letters/requeue` and `/dead-letters/discard` (the bulk actions) from
# also matching the one-letter routes (an OPTIONS there would advertise DELETE).
@bp.post("/dead-letters/<uuid:dead_id>/requeue")
@admin_required
def requeue(dead_id: UUID):
    """Send a dead letter back through the outbox with fresh retries (audited)."""
    letter = _find(str(dead_id))
    try:
        deadletters.requeue(get_db(), get_redis(), settings().redis_namespace, letter, actor=actor_name())
    except deadletters.DeadLetterError as e:  # resolved by someone else meanwhile
        raise _gone(e) from None
    return {"requeued": letter.as_dict()}


@bp.delete("/dead-letters/<uuid:dead_id>")
@admin_required
def discard(dead_id: UUID):
    """Close a dead letter for good (audited)."""
    letter = _find(str(dead_id))
    try:
        deadletters.discard(get_db(), get_redis(), settings().redis_namespace, letter, actor=actor_name())
    except deadletters.DeadLetterError as e:
        raise _gone(e) from None
    return "", 204


def _bulk(action: str):
    """Start a bulk job for every open letter matching the body's filter (202), or count them (`dry_run`)."""
    try:
        body = BulkDeadLetterRequest.model_validate(_json_body())
    except ValidationError as e:
        raise ApiError(422, "invalid-filter", "Some fields are invalid.", errors=field_errors(e)) from None
    f = _filter(body, "invalid-filter", "Some fields are invalid.")
    if body.dry_run:
        return {"action": action, "dry_run": True, "count": deadletters.count(get_db(), f)}
    job_id = bulkjobs.start(get_db(), action, f, actor=actor_name())
    return _job(job_id), 202, {"Location": f"/api/v1/ops/jobs/{job_id}"}


def _job(job_id: str) -> dict:
    job = bulkjobs.get(get_db(), job_id, stale_seconds=settings().bulk_job_stale_ms / 1000)
    if job is None:
        raise ApiError(404, "not-found", "No such job.")
    return job.as_dict()


@bp.post("/dead-letters/requeue")
@admin_required
def requeue_all():
    """Requeue every open dead letter that matches the filter (a job; each letter audited), or count them."""
    return _bulk("requeue")


@bp.post("/dead-letters/discard")
@admin_required
def discard_all():
    """Discard every open dead letter that matches the filter (a job; each letter audited), or count them."""
    return _bulk("discard")


@bp.get("/jobs/<uuid:job_id>")
@admin_required
def job(job_id: UUID):
    """A bulk job's state and progress, whoever started it (the API or the console)."""
    return _job(str(job_id))


@bp.post("/bookings/<booking_id>/tasks/<task>/retry")
@admin_required
def retry(booking_id: str, task: str):
    """Re-publish a dead task through the outbox, with or without a dead-letter record (audited)."""
    try:
        bid = str(parse_uuid(booking_id, "booking_id", error=ValueError))
    except ValueError:
        raise ApiError(404, "not-found", "No such booking.") from None
    if task not in TASKS:
        raise ApiError(404, "not-found", f"No such task; tasks are {', '.join(TASKS)}.")
    try:
        sent = retry_task(get_db(), get_redis(), settings().redis_namespace, bid, task, actor=actor_name())
    except TaskNotDead as e:
        raise ApiError(409, "task-not-dead", str(e).capitalize() + ".") from None
    except LookupError:
        raise ApiError(404, "not-found", "No such booking.") from None
    return {"booking_id": bid, "task": task, "message_id": sent}, 202
