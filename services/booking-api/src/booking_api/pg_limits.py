"""Bounded waits on Postgres: a connection that gives up, and a gate that fails fast.

Pure mechanisms, no Flask: `database.py` chooses the numbers and applies them
to the API's requests (its docstring says why each bound exists).
"""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg import errors

from booking_core import db

#: Each round trip in progress on a BoundedConnection of this process: id(conn) -> (scope, start).
_round_trips: dict[int, tuple[str | None, float]] = {}


class DatabaseUnavailable(psycopg.OperationalError):
    """Postgres is down or not answering: the request gets a 503, not a 500."""


class FailedFast(DatabaseUnavailable):
    """Refused without asking the database (an outage is known, or every slot is busy)."""


class BoundedConnection(db.TimedConnection):
    """A connection that stops waiting for a server that does not answer.

    Every operation of a psycopg connection waits through `wait()`; this one
    passes it a deadline. psycopg then raises `_WaitTimeout` (psycopg >= 3.3);
    the query may or may not have run, so the connection is closed, not reused.
    """

    answer_timeout: float | None = None
    #: Which database this connection talks to, so a stall is only evidence against that one.
    scope: str | None = None

    def wait(self, gen, *args, **kwargs):
        """psycopg's wait, bounded by `answer_timeout` unless the caller gives a timeout."""
        if kwargs.get("timeout") is None and len(args) < 2:
            kwargs["timeout"] = self.answer_timeout
        _round_trips[id(self)] = (self.scope, time.monotonic())
        try:
            return super().wait(gen, *args, **kwargs)
        except errors._WaitTimeout:
            self.pgconn.finish()
            raise DatabaseUnavailable("Postgres did not answer in time") from None
        finally:
            _round_trips.pop(id(self), None)


def stalled_seconds(scope: str | None) -> float:
    """How long the oldest round trip in progress on `scope` in this process has waited for Postgres."""
    starts = [start for owner, start in list(_round_trips.values()) if owner == scope]
    return time.monotonic() - min(starts) if starts else 0.0


class OutageGate:
    """Fail fast while the database is known to be out; let one request at a time probe it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_until = 0.0  # 0: healthy; else the end of the fail-fast hold
        self._probing = False

    def enter(self) -> None:
        """Raise DatabaseUnavailable at once during the hold, or while another request probes."""
        with self._lock:
            if not self._down_until:
                return
            if time.monotonic() < self._down_until or self._probing:
                raise FailedFast("Postgres was unavailable moments ago")
            self._probing = True

    def abandon(self) -> None:
        """The probing request gave up before asking: let the next one probe."""
        with self._lock:
            self._probing = False

    def ok(self) -> None:
        with self._lock:
            self._down_until, self._probing = 0.0, False

    def failed(self, hold: float) -> None:
        with self._lock:
            self._down_until, self._probing = time.monotonic() + hold, False
