"""Liveness and readiness probes, each answering within a bound whatever the database does.

`/healthz` touches nothing but the process: a liveness probe must not restart a
healthy API because Postgres is down. `/readyz` is ready while the API can do
what it is for, accepting bookings, and that needs Postgres only: the booking,
its tasks and their outbox messages commit in one transaction, and the relay
publishes them once Redis is back. So Postgres not answering within
`BOOKING_API_READINESS_TIMEOUT_SECONDS` (1.5 s) is 503, while Redis not answering is 200
with `"status": "degraded"` and `"degraded": ["redis"]`, and the
`booking_api_degraded{dependency="redis"}` gauge is 1: a Redis blip must not take
every API pod out of its Service at once. Postgres is asked on a fresh
connection of its own (never a pool slot that requests need) in one background
thread per process: a probe that arrives while the previous check still waits on
a frozen server shares that check rather than starting another, so probes can
never pile up threads.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import redis
from flask import Blueprint, current_app

from booking_api.database import conninfo, settings
from booking_api.metrics import DEGRADED
from booking_api.pg_limits import BoundedConnection
from booking_api.problems import ApiError

bp = Blueprint("health", __name__)

class PostgresProbe:
    """One `SELECT 1` at a time on a short-lived connection, in a background thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz-postgres")
        self._lock = threading.Lock()
        self._current: Future | None = None

    def start(self, info: str, answer_timeout: float) -> Future:
        """The check in flight, or a new one if none is."""
        with self._lock:
            if self._current is None or self._current.done():
                self._current = self._executor.submit(self._select_one, info, answer_timeout)
            return self._current

    @staticmethod
    def _select_one(info: str, answer_timeout: float) -> None:
        with BoundedConnection.connect(info, autocommit=True) as conn:
            conn.answer_timeout = answer_timeout
            conn.execute("SELECT 1")


_probes: dict[tuple[int, str], PostgresProbe] = {}
_probes_lock = threading.Lock()
_redis: dict[str, redis.Redis] = {}


def _probe(info: str) -> PostgresProbe:
    """This process's probe of one database (its thread is started after gunicorn forks)."""
    with _probes_lock:
        return _probes.setdefault((os.getpid(), info), PostgresProbe())


def _redis_client(url: str, timeout: float) -> redis.Redis:
    """A Redis client for readiness only, with socket timeouts inside the probe's bound."""
    client = _redis.get(url)
    if client is None:
        client = _redis[url] = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    return client


@bp.get("/healthz")
def healthz():
    """The process is alive and serving (no database, no Redis)."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Ready when Postgres answers within the readiness bound; degraded (still ready) when Redis does not."""
    bound = current_app.config["API"].readiness_timeout_seconds
    deadline = time.monotonic() + bound
    s = settings()
    info = conninfo(s.database_url, current_app.config["API"])
    postgres = _probe(info).start(info, bound)
    checks = {}
    try:
        _redis_client(s.redis_url, bound * 2 / 3).ping()
        checks["redis"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        checks["redis"] = type(e).__name__
    try:
        postgres.result(timeout=max(deadline - time.monotonic(), 0))
        checks["postgres"] = "ok"
    except FutureTimeout:
        checks["postgres"] = "Timeout"
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        checks["postgres"] = type(e).__name__
    checks = {"postgres": checks["postgres"], "redis": checks["redis"]}
    DEGRADED.labels("redis").set(0 if checks["redis"] == "ok" else 1)
    if checks["postgres"] != "ok":
        failing = ", ".join(k for k, v in checks.items() if v != "ok")
        raise ApiError(503, "not-ready", f"Not ready: {failing} unreachable.")
    degraded = [k for k, v in checks.items() if v != "ok"]
    return {"status": "degraded" if degraded else "ready", "checks": checks, "degraded": degraded}
