"""Postgres connections: one lazily opened pool per process.

Pools are opened on first use rather than at import, because gunicorn and
Dramatiq fork worker processes and a connection must never cross a fork.
The schema's migrations are `booking_core.db.migrate` and the SQL files in `migrations/`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

_lock = threading.Lock()

#: A connection given back to its pool less than this many seconds ago is not checked again.
FRESH_SECONDS = 1.0


class TimedConnection(psycopg.Connection):
    """A connection that remembers when it was last given back to its pool."""

    returned_at: float = float("-inf")  # never: its first checkout is checked


#: The nice this process's Postgres backends run at (`Settings.db_backend_nice`, which the local
#: runner sets for the async side); its entry point sets it once, before any connection opens.
_backend_nice = 0
_LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


def backend_nice(conn: psycopg.Connection, nice: int) -> bool:
    """Lower the CPU priority of `conn`'s Postgres backend to `nice`, when that backend runs on this machine.

    Why: the workers' queries run in Postgres backends, which start at the
    postmaster's priority, the API's.  So a nice worker still competed as an
    equal through its backend; with this the request path's backends win the
    CPU, on one box, where nice orders processes of one session.  Only for a
    server on this host (a remote backend's pid means nothing here), and only
    when the pid is a postgres process; raising a nice needs no privilege.
    """
    host = conn.info.host
    if nice <= 0 or not (host.startswith("/") or host in _LOCAL_HOSTS):
        return False
    pid = conn.info.backend_pid
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != "postgres":
                return False
        os.setpriority(os.PRIO_PROCESS, pid, max(nice, os.getpriority(os.PRIO_PROCESS, pid)))
    except OSError:
        return False
    return True


def set_backend_nice(nice: int) -> None:
    """Give every connection this process opens from now on a backend at `nice` (0: leave them alone)."""
    global _backend_nice
    _backend_nice = nice


def _configure(conn: psycopg.Connection) -> None:
    backend_nice(conn, _backend_nice)


def mark_returned(conn: TimedConnection) -> None:
    """Note that `conn` goes back to its pool now (a pool's `reset` callback)."""
    conn.returned_at = time.monotonic()


def recently_returned(conn: TimedConnection, seconds: float) -> bool:
    """Whether `conn` went back to its pool less than `seconds` ago: fresh enough to skip a liveness check."""
    return time.monotonic() - conn.returned_at <= seconds


def _check_unless_fresh(conn: TimedConnection) -> None:
    """The pool's liveness round trip, skipped for a connection used within FRESH_SECONDS.

    Why: the check is a Postgres transaction of its own; a worker checks a
    connection out several times per task, so checking each time cost about
    one commit in three of the whole pipeline.  A server restart takes longer
    than FRESH_SECONDS, so the sockets it kills have been idle and are checked.
    """
    if not recently_returned(conn, FRESH_SECONDS):
        ConnectionPool.check_connection(conn)
_pools: dict[tuple[int, str, bool], ConnectionPool] = {}


def connect(url: str, **kwargs) -> psycopg.Connection:
    """One connection outside any pool (CLI commands, the relay's LISTEN and work connections).

    Its backend gets the async side's nice like a pooled one's (a no-op unless
    `set_backend_nice` was called): the relay works through these, and its
    backends had run at the API's priority.
    """
    conn = psycopg.connect(url, row_factory=dict_row, **kwargs)
    _configure(conn)
    return conn


def pool(url: str, *, max_size: int = 10, autocommit: bool = False) -> ConnectionPool:
    """The pool for `url` (and autocommit mode) in this process, opened on first call."""
    key = (os.getpid(), url, autocommit)
    with _lock:
        found = _pools.get(key)
        if found is None:
            found = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                kwargs={"row_factory": dict_row, "autocommit": autocommit},
                connection_class=TimedConnection,
                open=True,
                # A server restart must not leave the pool handing out dead sockets.
                check=_check_unless_fresh,
                reset=mark_returned,
                configure=_configure,
                name="booking",
            )
            _pools[key] = found
        return found


def close_pools() -> None:
    """Close this process's pools (tests and orderly shutdown)."""
    with _lock:
        for key, p in list(_pools.items()):
            if key[0] == os.getpid():
                p.close()
            del _pools[key]


@contextmanager
def pooled(settings) -> Iterator[psycopg.Connection]:
    """A connection from this process's pool for `settings`, committed as the block ends.

    Waits at most `settings.db_acquire_timeout_ms` for it, so an unreachable
    Postgres fails the caller in seconds (`PoolTimeout`) rather than holding it.
    """
    p = pool(settings.database_url, max_size=settings.db_pool_max)
    with p.connection(timeout=settings.db_acquire_timeout_ms / 1000) as conn:
        yield conn
