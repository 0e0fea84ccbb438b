"""Task states on real Postgres and Redis: a failed state write is retried, never silently lost."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

import dramatiq
import pytest
from psycopg.conninfo import make_conninfo

from booking_core import db
from booking_core.messaging.errors import PermanentTaskError
from booking_core.tasks.taskstate import TaskStateMiddleware, _task_key
from booking_core.worker.broker import make_broker
from e2e_helpers import wait_until
from relay_helpers import booking_without_relay

#: A real queue name (dead letters recorded here must be ones the ops API documents),
#: isolated by the test's own Redis namespace.
QUEUE = "email"


def make_booking(conn, tenant: dict) -> str:
    # No relay runs here; the test sends the message itself.
    return booking_without_relay(conn, tenant["id"])[0]


def task_row(conn, booking_id: str) -> dict:
    return conn.execute(
        "SELECT state, attempts, last_error, updated_at FROM booking_tasks"
        " WHERE booking_id = %s AND task = 'email'", (booking_id,),
    ).fetchone()


@pytest.mark.parametrize(("outcome", "state", "last_error"), [
    ("returns", "done", None),
    ("refuses", "dead", "PermanentTaskError: refused"),
])
def test_a_state_write_whose_backend_is_terminated_is_retried(
    settings, db_conn, tenant, caplog, outcome, state, last_error
):
    """Given an attempt that ends while the test holds its task row's lock, when the worker's
    blocked state write loses its backend (pg_terminate_backend), then the write is retried
    and the task still ends in its final state."""
    caplog.set_level(logging.WARNING, logger="booking_core.tasks.taskstate")
    app = f"taskstate-{uuid.uuid4().hex[:8]}"
    # Its own application_name, so the test can find (and kill) the worker's backends only.
    worker_settings = dataclasses.replace(
        settings, database_url=make_conninfo(settings.database_url, application_name=app))
    broker = make_broker(worker_settings, track_tasks=True)
    started, proceed = threading.Event(), threading.Event()

    def work(*, task: str, booking_id: str, tenant_id: str) -> None:
        """An actor that does not mark its task done: the middleware must write it."""
        started.set()
        proceed.wait(30)
        if outcome == "refuses":
            raise PermanentTaskError("refused")

    actor = dramatiq.actor(work, broker=broker, actor_name=f"work_{app.replace('-', '_')}",
                           queue_name=QUEUE, max_retries=0, throws=(PermanentTaskError,))
    booking_id = make_booking(db_conn, tenant)
    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=1)
    worker.start()
    try:
        actor.send(task="email", booking_id=booking_id, tenant_id=tenant["id"])
        assert started.wait(30)
        assert task_row(db_conn, booking_id)["state"] == "running"
        with db.connect(settings.database_url) as locker:
            locker.execute("SELECT 1 FROM booking_tasks WHERE booking_id = %s AND task = 'email'"
                           " FOR UPDATE", (booking_id,))
            proceed.set()
            pid = wait_until(lambda: db_conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                " AND wait_event_type = 'Lock'", (app,)).fetchone())["pid"]
            assert db_conn.execute("SELECT pg_terminate_backend(%s) AS ok", (pid,)).fetchone()["ok"]
            locker.rollback()
        row = wait_until(lambda: (r := task_row(db_conn, booking_id))["state"] == state and r)
    finally:
        worker.stop()
        broker.close()
    assert (row["attempts"], row["last_error"]) == (1, last_error)
    retried = [r for r in caplog.records if r.name == "booking_core.tasks.taskstate"
               and r.levelno == logging.WARNING and booking_id in r.getMessage()]
    assert retried and "retrying" in retried[0].getMessage()


def test_a_state_write_that_never_lands_is_bounded_and_logged_as_an_error(caplog):
    """Given no reachable Postgres, the write gives up after its attempts, loudly, in seconds."""
    from booking_embedded import free_port

    caplog.set_level(logging.WARNING, logger="booking_core.tasks.taskstate")
    middleware = TaskStateMiddleware(
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1",
        write_attempts=2, first_backoff=0.05, connect_timeout=0.5)
    booking_id = str(uuid.uuid4())
    message = dramatiq.Message(queue_name="email", actor_name="send_confirmation_email", args=(),
                               kwargs={"task": "email", "booking_id": booking_id,
                                       "tenant_id": str(uuid.uuid4())}, options={})
    started = time.monotonic()
    middleware.after_process_message(None, message, exception=None)
    assert time.monotonic() - started < 10
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert booking_id in error.getMessage() and "as done after 2 attempt(s)" in error.getMessage()


@pytest.mark.parametrize("kwargs", [
    {"task": "email", "booking_id": "1; DROP TABLE booking_tasks"},
    {"task": "parcel", "booking_id": str(uuid.uuid4())},
    {"booking_id": str(uuid.uuid4())},
    {"task": "email"},
])
def test_messages_that_name_no_task_row_are_not_tracked(kwargs):
    message = dramatiq.Message(queue_name="email", actor_name="x", args=(), kwargs=kwargs,
                               options={})
    assert _task_key(message) is None


def test_a_task_key_is_the_canonical_booking_id():
    booking_id = uuid.uuid4()
    message = dramatiq.Message(queue_name="email", actor_name="x", args=(), options={},
                               kwargs={"task": "email", "booking_id": str(booking_id).upper()})
    assert _task_key(message) == (str(booking_id), "email")
