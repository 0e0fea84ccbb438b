"""A Dramatiq app for test_lifeline: the platform's worker broker and one chatty actor.

Run by the tests as `dramatiq lifeline_app --path <this dir> --queues lifeline`,
so Dramatiq's own CLI forks the worker and the metrics process, as in production.
"""

from __future__ import annotations

import logging
import os

import dramatiq
import redis

from booking_core.config import Settings
from booking_core.worker.broker import setup_broker

settings = Settings.from_env()
broker = setup_broker(settings, track_tasks=False, service_name="lifeline-test")
log = logging.getLogger("lifeline_app")


@dramatiq.actor(queue_name="lifeline", max_retries=0)
def chatter(lines: int, done_key: str) -> None:
    """Log `lines` long lines, then record in Redis which process finished."""
    for i in range(lines):
        log.warning("line %d %s", i, "x" * 200)
    redis.Redis.from_url(settings.redis_url).set(done_key, os.getpid())
