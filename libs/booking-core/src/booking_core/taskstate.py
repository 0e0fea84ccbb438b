"""Task states in `booking_tasks`, kept by a Dramatiq middleware.

`pending → running → done`, or `retrying` while Dramatiq's Retries middleware
will try again, or `dead` once it has dead-lettered the message.  The actors
never touch these rows themselves: the middleware sees every attempt, and its
`after_process_message` runs after Retries' (it is registered before Retries;
after-hooks run in reverse), so `message.failed` says whether this was the last.
A message whose task is already `done` (a redelivery) is not set back to
`running`; the actor's own idempotency turns it into a no-op.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import Middleware

from booking_core import db
from booking_core.config import Settings

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500


def describe_error(exc: BaseException) -> str:
    """A one-line, bounded description of a failure for `last_error`."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text[:MAX_ERROR_CHARS]


def _task_key(message: dramatiq.Message) -> tuple[str, str] | None:
    """(booking_id, task) when this message is a booking's task, else None."""
    kwargs = message.kwargs or {}
    task, booking_id = kwargs.get("task"), kwargs.get("booking_id")
    if task and booking_id:
        return str(booking_id), str(task)
    return None


class TaskStateMiddleware(Middleware):
    """Mirror each attempt of a booking task into its `booking_tasks` row."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def _execute(self, sql: str, params: tuple) -> None:
        with db.pool(self.settings.database_url, max_size=self.settings.db_pool_max).connection() as conn:
            conn.execute(sql, params)

    def before_process_message(self, broker, message):
        key = _task_key(message)
        if key is None:
            return
        self._execute(
            "UPDATE booking_tasks SET state = 'running', attempts = attempts + 1,"
            " updated_at = clock_timestamp()"
            " WHERE booking_id = %s AND task = %s AND state <> 'done'",
            key,
        )

    def after_process_message(self, broker, message, *, result=None, exception=None):
        key = _task_key(message)
        if key is None:
            return
        if exception is None:
            self._execute(
                "UPDATE booking_tasks SET state = 'done', last_error = NULL,"
                " updated_at = clock_timestamp() WHERE booking_id = %s AND task = %s",
                key,
            )
            return
        state = "dead" if message.failed else "retrying"
        self._execute(
            "UPDATE booking_tasks SET state = %s, last_error = %s,"
            " updated_at = clock_timestamp()"
            " WHERE booking_id = %s AND task = %s AND state <> 'done'",
            (state, describe_error(exception), *key),
        )

    def after_skip_message(self, broker, message):
        """A skipped message (age limit) was dead-lettered without running."""
        key = _task_key(message)
        if key is not None and message.failed:
            self._execute(
                "UPDATE booking_tasks SET state = 'dead', last_error = 'skipped: message too old',"
                " updated_at = clock_timestamp()"
                " WHERE booking_id = %s AND task = %s AND state <> 'done'",
                key,
            )
