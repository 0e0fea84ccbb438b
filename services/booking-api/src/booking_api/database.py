"""Per-request Postgres connection and per-process Redis client, with every wait bounded.

A request takes one pooled autocommit connection on first use and returns
it at teardown: authentication is one statement, the booking write another
(atomic on its own), and views that need more open an explicit transaction.

Why the bounds: when Postgres is down or frozen, a request must get a 503 with
`Retry-After` in a few seconds, never hang, and never tie up every gunicorn
thread, or `/healthz` stops answering and a liveness probe restarts a healthy API.

- Acquiring a pooled connection waits at most `BOOKING_API_DB_POOL_TIMEOUT_SECONDS` (2 s);
  opening one, `BOOKING_API_DB_CONNECT_TIMEOUT_SECONDS` (2 s, libpq's minimum).
- A connection is checked with one empty round trip when it comes out of the
  pool, unless it went back less than `BOOKING_API_DB_CHECK_IDLE_SECONDS` (1 s) ago after a
  request that used it: under load every connection is that fresh, and the
  check was one of three round trips per confirm.  A server restart takes
  longer than that, so the sockets it kills have been idle and are checked.
- On a live server `statement_timeout` (3 s) and `lock_timeout` (2 s) cancel a
  statement that runs or waits too long (`QueryCanceled`, `LockNotAvailable`).
- A stopped or unreachable server answers nothing, so those server-side limits
  never fire: each round trip also gives up after `BOOKING_API_DB_ANSWER_TIMEOUT_SECONDS`
  (3.5 s, above `statement_timeout` so a live server's own cancel comes first);
  the connection, in an unknown state, is closed.
- After such an outage signal, requests fail fast for `BOOKING_API_DB_OUTAGE_HOLD_SECONDS`
  (2 s), then one request at a time probes the database while the others get
  their 503 at once: in steady outage one thread per gunicorn worker waits.
- Threads × connections: gunicorn runs 4 threads per worker and the pool allows
  `BOOKING_DB_POOL_MAX` (10) connections, so a connection is always free; the
  limit that matters is on threads. At most `BOOKING_API_DB_REQUEST_SLOTS` (3, one below
  the threads) requests per worker use the database at once; a fourth waits at
  most `BOOKING_API_DB_SLOT_WAIT_SECONDS` (1 s) for a slot, and none at all once a round
  trip has gone unanswered for `BOOKING_API_DB_STALL_SECONDS` (0.5 s): it gets its 503. So
  when the database stops answering in the middle of a burst, one thread stays
  free for `/healthz`, `/readyz` and the 503s. Raise `BOOKING_API_DB_REQUEST_SLOTS` with `--threads`.

The pool is this module's own rather than `booking_core.db.pool`, because that
pool checks connections without a bound: on a frozen server the check hangs.
Each bound is a field of `ApiSettings` (settings.py), set by `BOOKING_API_<NAME>`.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import psycopg
import redis
from flask import Flask, current_app, g, request
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from booking_api.pg_limits import BoundedConnection, DatabaseUnavailable, FailedFast, OutageGate, stalled_seconds
from booking_api.problems import problem
from booking_api.settings import ApiSettings
from booking_core import db
from booking_core.config import Settings

log = logging.getLogger(__name__)

_redis: dict[str, redis.Redis] = {}
_pools: dict[tuple, ConnectionPool] = {}
_lock = threading.Lock()


_gates: dict[tuple[int, str], OutageGate] = {}
_slots: dict[tuple[int, int], threading.BoundedSemaphore] = {}


def _per_process(table: dict, key: tuple, make):
    """`table[key]`, made once by `make()`: looked up without the lock, since this runs on every request.

    Checked again under the lock, so two threads that miss at once make one
    (a pool opens connections when made: a second would leak them).
    """
    found = table.get(key)
    if found is None:
        with _lock:
            found = table.get(key)
            if found is None:
                found = table[key] = make()
    return found


def _gate() -> OutageGate:
    """This process's gate for the app's database (a fresh one after gunicorn forks)."""
    return _per_process(_gates, (os.getpid(), settings().database_url), OutageGate)


def _request_slots() -> threading.BoundedSemaphore:
    """This process's limit on requests using the database at once."""
    size = api().db_request_slots
    return _per_process(_slots, (os.getpid(), size), lambda: threading.BoundedSemaphore(size))


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def api() -> ApiSettings:
    """The API's own settings: typed and checked at start, so nothing here casts them again."""
    return current_app.config["API"]


def conninfo(url: str, bounds: ApiSettings) -> str:
    """`url` with the API's connect timeout and statement and lock timeouts added."""
    options = conninfo_to_dict(url).get("options") or ""
    limits = f"-c statement_timeout={bounds.db_statement_timeout_ms} -c lock_timeout={bounds.db_lock_timeout_ms}"
    return make_conninfo(url, connect_timeout=bounds.db_connect_timeout_seconds,
                         options=f"{options} {limits}".strip())


def _pool() -> ConnectionPool:
    """This process's pool for the app's database, opened on first use (never across a fork).

    Keyed by the raw settings, not by the built conninfo: parsing a conninfo
    three times on every request cost about 0.4 ms of CPU per confirm.
    """
    bounds = api()
    key = (os.getpid(), bounds.core.database_url, bounds.core.db_pool_max, bounds.db_answer_timeout_seconds,
           bounds.db_connect_timeout_seconds, bounds.db_statement_timeout_ms, bounds.db_lock_timeout_ms)
    return _per_process(_pools, key, lambda: _open_pool(bounds))


def _open_pool(bounds: ApiSettings) -> ConnectionPool:
    app_settings, answer = bounds.core, bounds.db_answer_timeout_seconds
    scope = app_settings.database_url

    def configure(conn: BoundedConnection) -> None:
        conn.answer_timeout, conn.scope = answer, scope

    # Open as many connections as requests may use at once, before they are needed:
    # a connection opened in a burst costs a fork and a SCRAM exchange on its request.
    min_size = max(1, min(bounds.db_request_slots, app_settings.db_pool_max))
    return ConnectionPool(conninfo(app_settings.database_url, bounds), min_size=min_size,
                          max_size=app_settings.db_pool_max,
                          connection_class=BoundedConnection, configure=configure,
                          kwargs={"row_factory": dict_row, "autocommit": True},
                          timeout=bounds.db_pool_timeout_seconds, open=True, name="booking-api")


def get_db():
    """This request's connection (dict rows, autocommit), checked alive within bounded time."""
    if "db" in g:
        return g.db
    bounds = api()
    gate = _gate()
    gate.enter()
    slots = _request_slots()
    try:
        _take_slot(slots, bounds.db_slot_wait_seconds, bounds.db_stall_seconds)
    except FailedFast:
        gate.abandon()
        raise
    pool = _pool()
    deadline = time.monotonic() + bounds.db_pool_timeout_seconds
    try:
        while True:
            conn = pool.getconn(timeout=max(deadline - time.monotonic(), 0.01))
            try:
                # The check a pool would make, bounded: a server restart leaves dead sockets.
                if not db.recently_returned(conn, bounds.db_check_idle_seconds):
                    _check(conn, bounds.db_check_timeout_seconds)
            except DatabaseUnavailable:
                pool.putconn(conn)
                raise
            except psycopg.OperationalError:
                pool.putconn(conn)  # a dead connection: the pool drops it; try another
                if time.monotonic() >= deadline:
                    raise
                continue
            break
    except (psycopg.OperationalError, PoolTimeout):
        slots.release()
        gate.failed(bounds.db_outage_hold_seconds)
        raise
    except BaseException:
        slots.release()
        raise
    gate.ok()
    g.db_pool, g.db, g.db_slots = pool, conn, slots
    return conn


def _take_slot(slots: threading.BoundedSemaphore, wait: float, stall: float) -> None:
    """A slot within `wait` seconds; none at all while the database is stalled."""
    deadline = time.monotonic() + wait
    while not slots.acquire(timeout=0.05):
        if stalled_seconds(settings().database_url) > stall:
            raise FailedFast("Postgres is not answering the requests in progress")
        if time.monotonic() >= deadline:
            raise FailedFast("every database slot of this worker is busy")


def _check(conn: BoundedConnection, timeout: float) -> None:
    """One empty round trip within `timeout` seconds."""
    saved = conn.answer_timeout
    conn.answer_timeout = timeout
    try:
        conn.execute("")
    finally:
        conn.answer_timeout = saved


def get_redis() -> redis.Redis:
    """A Redis client with short timeouts: ops views must fail fast, not hang."""
    url = settings().redis_url
    client = _redis.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        _redis[url] = client
    return client


def _close_db(exc: BaseException | None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        db.mark_returned(conn)
        try:
            g.db_pool.putconn(conn)
        finally:
            g.db_slots.release()


def _unavailable(e: psycopg.OperationalError):
    """Postgres down, frozen or too slow: 503 problem+json with Retry-After, never a 500."""
    slow = isinstance(e, errors.QueryCanceled | errors.LockNotAvailable)
    if not slow and not isinstance(e, FailedFast):
        _gate().failed(api().db_outage_hold_seconds)
    log.warning("database unavailable: %s: %s", type(e).__name__, (str(e).strip().splitlines() or [""])[0])
    detail = "The database took too long to answer." if slow else "The database is unavailable."
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        detail += " The change may or may not have been saved: retry with the same Idempotency-Key."
    return problem(503, "database-unavailable", detail,
                   headers={"Retry-After": str(api().db_retry_after_seconds)})


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close_db)
    app.register_error_handler(psycopg.OperationalError, _unavailable)
