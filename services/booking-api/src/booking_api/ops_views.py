"""Operations (admin tokens only): queue depth and dead letters."""

from __future__ import annotations

import re

from flask import Blueprint, request

from booking_api.auth import actor_name, admin_required
from booking_api.contract import QueueQuery
from booking_api.database import get_db, get_redis, settings
from booking_api.problems import ApiError
from booking_api.validation import validate_query
from booking_core import deadletters
from booking_core.contracts import QUEUES
from booking_core.queues import QueueReader

bp = Blueprint("ops", __name__, url_prefix="/api/v1/ops")
_ID = re.compile(r"^[0-9a-fA-F-]{36}$")


def _queue_arg() -> str | None:
    return validate_query(QueueQuery, request.args).queue


@bp.get("/queues")
@admin_required
def queues():
    """Per queue: ready, in flight, delayed, dead (one atomic Redis snapshot)."""
    reader = QueueReader(get_redis(), settings().redis_namespace)
    return {"queues": [d.as_dict() for d in reader.snapshot(QUEUES)]}


@bp.get("/dead-letters")
@admin_required
def list_dead_letters():
    """Dead-lettered messages, oldest first, optionally of one queue."""
    letters = deadletters.list_dead(get_redis(), settings().redis_namespace, _queue_arg())
    return {"items": [d.as_dict() for d in letters]}


def _find(dead_id: str) -> deadletters.DeadLetter:
    if not _ID.match(dead_id):
        raise ApiError(404, "not-found", "No such dead letter.")
    try:
        return deadletters.find(get_redis(), settings().redis_namespace, dead_id, _queue_arg())
    except deadletters.DeadLetterError:
        raise ApiError(404, "not-found", "No such dead letter.") from None


@bp.post("/dead-letters/<dead_id>/requeue")
@admin_required
def requeue(dead_id: str):
    """Send a dead letter back to its queue with fresh retries (audited)."""
    letter = _find(dead_id)
    deadletters.requeue(get_db(), get_redis(), settings().redis_namespace, letter, actor=actor_name())
    return {"requeued": letter.as_dict()}


@bp.delete("/dead-letters/<dead_id>")
@admin_required
def discard(dead_id: str):
    """Drop a dead letter for good (audited)."""
    letter = _find(dead_id)
    deadletters.discard(get_db(), get_redis(), settings().redis_namespace, letter, actor=actor_name())
    return "", 204
