"""The audit worker against a Postgres of its own that this module stops and starts.

Two failures the issue tracker saw (issue 10): a database that goes away right
after a task's work committed must not leave the task `running` (defect 4),
and an unreachable database is an outage to wait out, never a reason to
dead-letter a message.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
import uuid

import dramatiq
import pytest
from dramatiq.middleware import Middleware

from booking_core import db
from booking_core.db.migrate import migrate
from booking_core.messaging.contracts import AUDIT
from booking_core.model import tenants
from booking_embedded import EmbeddedPostgres, free_port
from relay_helpers import booking_without_relay

MAX_RETRIES = 1


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def postgres(server_dir_factory):
    """A migrated Postgres that only this module uses, so stopping it disturbs no one else."""
    root = server_dir_factory("own-postgres")
    server = EmbeddedPostgres(root, free_port(), root / "logs")
    server.start()
    migrate(server.url)
    yield server
    db.close_pools()
    server.stop()


@pytest.fixture(scope="module")
def actors(postgres, redis_url):
    """`audit_worker.actors` bound to that Postgres, with one retry and short waits."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "DATABASE_URL": postgres.url, "REDIS_URL": redis_url,
            "BOOKING_REDIS_NAMESPACE": f"audit-outage-{uuid.uuid4().hex[:8]}",
            "BOOKING_RETRY_AUDIT_MAX_RETRIES": str(MAX_RETRIES),
            "BOOKING_RETRY_AUDIT_MIN_BACKOFF_MS": "50", "BOOKING_RETRY_AUDIT_MAX_BACKOFF_MS": "200",
            "BOOKING_DB_ACQUIRE_TIMEOUT_MS": "500",
        }.items():
            mp.setenv(name, value)
        for name in ("audit_worker.actors", "audit_worker.broker"):
            sys.modules.pop(name, None)
        module = importlib.import_module("audit_worker.actors")
    yield module
    module.broker.flush_all()
    module.broker.close()


@pytest.fixture
def worker(actors):
    w = dramatiq.Worker(actors.broker, queues={AUDIT.queue}, worker_threads=1)
    w.start()
    yield w
    w.stop()


def booking_audit_message(url: str) -> tuple[str, dramatiq.Message]:
    """A new booking (on `url`) and the relay's message for its own `audit` task."""
    with db.connect(url, autocommit=True) as conn:
        tenant = tenants.ensure_tenant(conn, f"t-{uuid.uuid4().hex[:12]}")
        booking_id, messages = booking_without_relay(conn, tenant["id"], actor="token:test")
    out = messages["audit"]
    return booking_id, dramatiq.Message(
        queue_name=AUDIT.queue, actor_name=AUDIT.actor, args=(), kwargs=out["payload"],
        options={}, message_id=out["message_id"])


def task_and_entries(url: str, booking_id: str) -> tuple[dict, int]:
    with db.connect(url, autocommit=True) as conn:
        task = conn.execute("SELECT state, attempts, last_error FROM booking_tasks"
                            " WHERE booking_id = %s AND task = 'audit'", (booking_id,)).fetchone()
        entries = conn.execute("SELECT count(*) AS n FROM audit_log WHERE booking_id = %s",
                               (booking_id,)).fetchone()["n"]
    return task, entries


def dead_letters(actors) -> int:
    return actors.broker.client.zcard(f"{actors.settings.redis_namespace}:{AUDIT.queue}.XQ")


class StopPostgresAfterWork(Middleware):
    """Stops Postgres once the actor has returned, before any other middleware's after-hook."""

    def __init__(self, server: EmbeddedPostgres, message_id: str):
        self.server, self.message_id, self.stopped = server, message_id, threading.Event()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if message.message_id == self.message_id and exception is None:
            self.server.stop()
            self.stopped.set()


def test_postgres_lost_right_after_the_work_leaves_the_task_done(
    postgres, actors, worker, caplog
):
    """Given the work committed, when Postgres stops before the task state could be written
    separately, then the task still reads done once Postgres is back (defect 4)."""
    caplog.set_level(logging.WARNING)
    booking_id, message = booking_audit_message(postgres.url)
    # Appended last, so its after-hook runs first: before the task-state middleware's.
    stopper = StopPostgresAfterWork(postgres, message.message_id)
    actors.broker.add_middleware(stopper)
    try:
        actors.broker.enqueue(message)
        assert stopper.stopped.wait(60)
        actors.broker.join(AUDIT.queue, timeout=60_000)  # acked: every after-hook has run
    finally:
        actors.broker.middleware.remove(stopper)
        postgres.start()
    task, entries = task_and_entries(postgres.url, booking_id)
    assert task == {"state": "done", "attempts": 1, "last_error": None}
    assert entries == 1
    assert not [r for r in caplog.records if r.name == "booking_core.tasks.taskstate"
                and r.levelno >= logging.ERROR]


class Attempts(Middleware):
    """Records how each attempt at one message ended, as the worker saw it."""

    def __init__(self, message_id: str):
        self.message_id, self.failures = message_id, []

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if message.message_id == self.message_id and exception is not None:
            self.failures.append(type(exception).__name__)


def test_an_unreachable_postgres_is_retried_past_the_retry_budget_not_dead_lettered(
    postgres, actors, worker
):
    """Given Postgres stopped and one retry allowed, when the message has failed on the
    outage three times, then it is still retried (never dead-lettered) and completes once
    Postgres is back."""
    booking_id, message = booking_audit_message(postgres.url)
    attempts = Attempts(message.message_id)
    actors.broker.add_middleware(attempts)
    postgres.stop()
    try:
        actors.broker.enqueue(message)
        wait_for(lambda: len(attempts.failures) >= MAX_RETRIES + 2 or dead_letters(actors),
                 timeout=120)
        assert dead_letters(actors) == 0
        assert set(attempts.failures) <= {"PoolTimeout", "OperationalError"}
    finally:
        actors.broker.middleware.remove(attempts)
        postgres.start()
    task = wait_for(lambda: (t := task_and_entries(postgres.url, booking_id))[0]["state"] == "done"
                    and t, timeout=120)
    assert task[1] == 1
    actors.broker.join(AUDIT.queue, timeout=60_000)
    assert dead_letters(actors) == 0
