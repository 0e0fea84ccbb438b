"""Task states in `booking_tasks`: written with the work where possible, else retried.

`pending → running → done`, or `retrying` while Dramatiq's Retries middleware
will try again, or `dead` once it has dead-lettered the message.

A finished task must never read `running`: when the state is written after
the work, in a second transaction, a database error between the two leaves it
so for good (issue 10, defect 4).  So the actor that finishes a task marks it
`done` itself, with `mark_done`, inside the transaction that commits its work
(the email record, the stored invoice, the audit entry): both commit or
neither.  `TaskStateMiddleware` keeps the other states: `running` before each
attempt, and `retrying` / `dead` after a failure, which no work transaction
can carry.  The write that marks a task `dead` also records its message in
`dead_letters` (see booking_core.tasks.deadletters), in the same transaction.
Those writes (and `done` for an actor that did not mark it) are
retried a few times with backoff; if they still fail, the error is logged and
the row keeps its old `updated_at`, which is how the reconciler finds it.

The middleware's `after_process_message` runs after Retries' (it is registered
before Retries; after-hooks run in reverse), so `message.failed` says whether
this was the last attempt.  A message whose task is already `done` (a
redelivery) is not set back to `running`; the actor's own idempotency turns it
into a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import dramatiq
import psycopg
from dramatiq.middleware import Middleware

from booking_core import db
from booking_core.messaging.contracts import TASKS
from booking_core.messaging.ids import parse_uuid
from booking_core.tasks import deadletters

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500

_DONE = (
    "UPDATE booking_tasks SET state = 'done', last_error = NULL, updated_at = clock_timestamp()"
    " WHERE booking_id = %s AND task = %s AND state <> 'done'"
)
_RUNNING = (
    "UPDATE booking_tasks SET state = 'running', attempts = attempts + 1,"
    " updated_at = clock_timestamp() WHERE booking_id = %s AND task = %s AND state <> 'done'"
)
_FAILED = (
    "UPDATE booking_tasks SET state = %s, last_error = %s, updated_at = clock_timestamp()"
    " WHERE booking_id = %s AND task = %s AND state <> 'done'"
)

#: Per worker thread: the (booking_id, task) pairs the running actor marked done itself.
_marked = threading.local()


def _marks() -> set[tuple[str, str]]:
    if not hasattr(_marked, "keys"):
        _marked.keys = set()
    return _marked.keys


def mark_done(conn: psycopg.Connection, booking_id: str, task: str) -> None:
    """Set the task `done` in the caller's open transaction, the one that commits its work.

    The caller must commit that transaction before it returns (a `with
    conn.transaction()` block or the pool's `connection()` block does): the
    middleware then trusts the mark and writes nothing more for this attempt.
    It is the transaction's last lock (docs/lock-order.md): the task row, then,
    through the UPDATE trigger, the booking's event numbering lock.
    """
    booking_id = str(parse_uuid(booking_id, "booking_id"))
    conn.execute(_DONE, (booking_id, task))
    _marks().add((booking_id, task))


def describe_error(exc: BaseException) -> str:
    """A one-line, bounded description of a failure for `last_error`."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text[:MAX_ERROR_CHARS]


def _task_key(message: dramatiq.Message) -> tuple[str, str] | None:
    """(booking_id, task) when this message is a booking's task, else None.

    A message without a known task or with a booking id that is no UUID names
    no row: there is nothing to track (the actor refuses it on its own).
    """
    kwargs = message.kwargs or {}
    task, booking_id = kwargs.get("task"), kwargs.get("booking_id")
    if task not in TASKS or booking_id is None:
        return None
    try:
        return str(uuid.UUID(str(booking_id))), task
    except ValueError:
        return None


def _recorder(message: dramatiq.Message, error: str):
    """Write `message`'s dead-letter record on the connection of the write that marks its task dead.

    Both statements share one transaction: a task is never `dead` without a
    record from which it can be requeued (issue 10, defect 1).  The attempts
    are the task row's own count when there is one.
    """
    def write(conn: psycopg.Connection) -> None:
        key = _task_key(message)
        attempts = None
        if key is not None:
            row = conn.execute("SELECT attempts FROM booking_tasks WHERE booking_id = %s AND task = %s",
                               key).fetchone()
            attempts = (row["attempts"] if isinstance(row, dict) else row[0]) if row else None
        deadletters.record(conn, message, error=error, attempts=attempts)
    return write


class TaskStateMiddleware(Middleware):
    """Mirror each attempt of a booking task into its `booking_tasks` row.

    Options are keyword-only, as in Dramatiq's own middleware: `database_url`
    and `pool_max` (this process's shared pool), and how hard to try a state
    write after an attempt: `write_attempts` tries, the first retry after
    `first_backoff` seconds and each next one four times later, each waiting
    at most `connect_timeout` seconds for a connection.  The defaults bound a
    write to about ten seconds when Postgres is down.
    """

    def __init__(self, *, database_url: str, pool_max: int = 10, write_attempts: int = 4,
                 first_backoff: float = 0.1, connect_timeout: float = 2.0):
        self.database_url = database_url
        self.pool_max = pool_max
        self.write_attempts = write_attempts
        self.first_backoff = first_backoff
        self.connect_timeout = connect_timeout

    def _write(self, key: tuple[str, str] | None, state: str, sql: str | None, params: tuple, *,
               attempts: int, also=None) -> bool:
        """Run one state write (and `also(conn)` in its transaction, first), retried with backoff.

        False (and logged) if it never lands.  `key` None writes `also` alone.
        `also` (the dead-letter record) goes first: docs/lock-order.md puts dead
        letters before task rows.
        """
        key = key or ("-", "-")
        delay = self.first_backoff
        for attempt in range(1, attempts + 1):
            try:
                pool = db.pool(self.database_url, max_size=self.pool_max)
                with pool.connection(timeout=self.connect_timeout) as conn:  # one transaction
                    if also is not None:
                        also(conn)
                    if sql is not None:
                        conn.execute(sql, params)
                return True
            except psycopg.Error as exc:
                if attempt == attempts:
                    log.error(
                        "could not record task %s of booking %s as %s after %d attempt(s): %s;"
                        " its row keeps its previous state and updated_at until a later attempt"
                        " or the reconciler repairs it", key[1], key[0], state, attempts,
                        describe_error(exc))
                    return False
                log.warning("recording task %s of booking %s as %s failed (%s); retrying in"
                            " %.1fs", key[1], key[0], state, describe_error(exc), delay)
                time.sleep(delay)
                delay *= 4
        return False

    def before_process_message(self, broker, message):
        _marks().clear()
        key = _task_key(message)
        if key is not None:
            # One try only: `running` is informative, and the attempt itself will meet
            # (and be retried for) whatever outage made this write fail.
            self._write(key, "running", _RUNNING, key, attempts=1)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        key = _task_key(message)
        if key is None:
            if exception is not None and message.failed:  # not a booking task, but dead all the same
                self._write(None, "dead", None, (), attempts=self.write_attempts,
                            also=_recorder(message, describe_error(exception)))
            return
        marked = key in _marks()
        _marks().discard(key)
        if exception is None:
            if not marked:  # an actor that does not mark its own work done
                self._write(key, "done", _DONE, key, attempts=self.write_attempts)
            return
        state = "dead" if message.failed else "retrying"
        error = describe_error(exception)
        self._write(key, state, _FAILED, (state, error, *key), attempts=self.write_attempts,
                    also=_recorder(message, error) if message.failed else None)

    def after_skip_message(self, broker, message):
        """A skipped message (age limit) was dead-lettered without running."""
        if not message.failed:
            return
        key = _task_key(message)
        error = "skipped: message too old"
        self._write(key, "dead", _FAILED if key else None, ("dead", error, *key) if key else (),
                    attempts=self.write_attempts, also=_recorder(message, error))
