"""A real Dramatiq worker on real Redis honours the queue pauses kept in real Postgres.

Paused: no new message of the queue starts, a running one finishes, nothing is
acked or lost; resumed: the waiting messages run.  The pause is read at boot
(a restarted worker starts paused) and a database error keeps the last state.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import replace

import dramatiq
import pytest
import redis

from booking_core.queues import pauses
from booking_core.queues.pausewatch import RUNNING, Plan, QueuePauseMiddleware, plan
from booking_core.worker.broker import make_broker
from booking_scaling import pausemirror
from booking_scaling.depth import QueueReader
from e2e_helpers import wait_until

POLL_MS = 100


@pytest.fixture
def conn(no_queue_pauses):
    return no_queue_pauses


class Probe:
    """A worker on the `email` queue of this test's own Redis namespace, with an actor that records runs."""

    def __init__(self, settings):
        self.settings = replace(settings, pause_poll_ms=POLL_MS)
        self.broker = make_broker(self.settings, track_tasks=True)
        self.watch = next(m for m in self.broker.middleware if isinstance(m, QueuePauseMiddleware))
        self.done: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

        def probe(tag: str) -> None:
            self.started.set()
            self.release.wait(30)
            self.done.append(tag)

        self.actor = dramatiq.actor(probe, broker=self.broker, queue_name="email",
                                    actor_name=f"probe_{uuid.uuid4().hex[:8]}", max_retries=0)
        self.worker: dramatiq.Worker | None = None

    def start(self) -> None:
        self.worker = dramatiq.Worker(self.broker, queues={"email"}, worker_threads=2, worker_timeout=100)
        self.worker.start()

    def depth(self):
        (d,) = QueueReader(redis.Redis.from_url(self.settings.redis_url),
                           self.settings.redis_namespace).snapshot(("email",))
        return d

    def close(self) -> None:
        self.release.set()
        if self.worker is not None:
            self.worker.stop()
        self.broker.close()


@pytest.fixture
def probe(settings, conn):
    p = Probe(settings)
    yield p
    p.close()


def test_plan_pauses_the_whole_worker_only_when_all_its_queues_are_paused():
    assert plan(frozenset({"email"}), frozenset()) == RUNNING
    assert plan(frozenset({"email"}), frozenset({"email", "audit"})) == Plan(True, frozenset({"email"}))
    assert plan(frozenset({"email", "audit"}), frozenset({"audit"})) == Plan(False, frozenset({"audit"}))
    assert plan(frozenset(), frozenset({"audit"})) == RUNNING


def test_a_paused_queue_starts_nothing_new_lets_the_running_one_finish_and_runs_all_after_resume(probe, conn):
    probe.start()
    # Given a message running when the queue is paused
    probe.release.clear()
    probe.actor.send("running")
    assert probe.started.wait(10)
    assert pauses.pause(conn, "email", actor="test-operator", reason="test")
    wait_until(lambda: "email" in probe.watch.reader.paused, timeout=10, what="the worker to read the pause")
    probe.release.set()
    # Then the running one finishes and the worker is paused
    wait_until(lambda: probe.watch.applied.whole, timeout=15, what="the worker to apply the pause")
    assert probe.done == ["running"]
    # When a message is sent while paused, it does not start, and it is neither acked nor lost
    probe.actor.send("waiting")
    time.sleep(1.5)
    assert probe.done == ["running"]
    depth = probe.depth()
    assert depth.ready + depth.in_flight == 1 and depth.dead == 0
    # When resumed, it runs
    assert pauses.resume(conn, "email", actor="test-operator")
    wait_until(lambda: probe.done == ["running", "waiting"], timeout=15, what="the waiting message to run")
    wait_until(lambda: probe.depth().backlog == 0, timeout=10, what="the queue to drain")


def test_a_worker_started_while_its_queue_is_paused_starts_paused(probe, conn):
    # Given the queue paused and a message waiting before the worker (re)starts
    assert pauses.pause(conn, "email", actor="test-operator")
    probe.actor.send("early")
    probe.start()
    time.sleep(1.5)
    assert probe.done == [] and probe.watch.applied.whole
    assert probe.depth().backlog == 1
    pauses.resume(conn, "email", actor="test-operator")
    wait_until(lambda: probe.done == ["early"], timeout=15, what="the message to run after resume")


def test_the_workers_copy_the_pause_to_redis_for_the_operator_and_clear_it_on_resume(probe, conn):
    client = redis.Redis.from_url(probe.settings.redis_url)
    ns = probe.settings.redis_namespace

    def mirrored():
        return pausemirror.read(client, ns, ("email", "invoice"))

    probe.start()
    assert pauses.pause(conn, "email", actor="test-operator")
    assert pauses.pause(conn, "invoice", actor="test-operator")  # no worker of it here: nobody copies it
    wait_until(lambda: mirrored() == {"email"}, timeout=10, what="the email worker to copy its pause")
    assert 0 < client.pttl(pausemirror.key(ns, "email")) <= pausemirror.TTL_MS
    assert pauses.resume(conn, "email", actor="test-operator")
    wait_until(lambda: mirrored() == frozenset(), timeout=10, what="the copy to go on resume")


def test_a_copy_no_worker_refreshes_lapses(settings):
    client = redis.Redis.from_url(settings.redis_url)
    ns = f"test-{uuid.uuid4().hex[:8]}"
    pausemirror.write(client, ns, frozenset({"email", "audit"}), frozenset({"email"}), ttl_ms=200)
    assert pausemirror.read(client, ns, ["email", "audit"]) == {"email"}
    wait_until(lambda: pausemirror.read(client, ns, ["email", "audit"]) == frozenset(), timeout=5,
               interval=0.05, what="the unrefreshed copy to lapse")
    assert pausemirror.read(client, ns, []) == frozenset()


def test_pausing_another_queue_changes_nothing_here(probe, conn):
    probe.start()
    assert pauses.pause(conn, "invoice", actor="test-operator")
    probe.actor.send("mine")
    wait_until(lambda: probe.done == ["mine"], timeout=15, what="the email message to run")
    assert probe.watch.applied == RUNNING


def test_a_paused_worker_keeps_its_heartbeat_so_the_messages_it_holds_are_not_run_twice(settings, conn):
    """Messages a worker fetched before the pause stay with it, in flight; past the heartbeat timeout,
    with maintenance on every broker call, they must not be requeued (run again on resume)."""
    probe = Probe(replace(settings, heartbeat_timeout_ms=1_000, maintenance_chance=1_000_000))
    other = make_broker(probe.settings)
    try:
        probe.start()
        # Given two messages running and a third fetched by the worker when the queue is paused
        probe.release.clear()
        for tag in ("a", "b", "c"):
            probe.actor.send(tag)
        assert probe.started.wait(10)
        wait_until(lambda: probe.depth().in_flight == 3, timeout=10, what="all three fetched")
        pauses.pause(conn, "email", actor="test-operator")
        wait_until(lambda: "email" in probe.watch.reader.paused, timeout=10, what="the worker to read the pause")
        probe.release.set()
        wait_until(lambda: probe.watch.applied.whole, timeout=15, what="the pause")
        # When, after several heartbeat timeouts, another process' broker call runs Dramatiq's maintenance
        time.sleep(2.5)
        # (maintenance looks at the queue of the call: a fourth message, sent to email)
        other.enqueue(probe.actor.message("d"))
        # Then the worker still holds what it had not started (two threads ran one message each): nothing requeued
        depth = probe.depth()
        assert (depth.ready, depth.in_flight, len(probe.done)) == (1, 1, 2)
        # And on resume each runs exactly once
        pauses.resume(conn, "email", actor="test-operator")
        wait_until(lambda: len(probe.done) == 4, timeout=15, what="the held messages to run")
        time.sleep(1)
        assert sorted(probe.done) == ["a", "b", "c", "d"]
    finally:
        probe.close()
        other.close()


def test_a_database_error_keeps_the_last_known_state_and_is_logged_once(probe, conn, caplog):
    assert pauses.pause(conn, "email", actor="test-operator")
    probe.start()
    wait_until(lambda: probe.watch.applied.whole, timeout=10, what="the pause")
    # When Postgres cannot be reached (a port nothing listens on) and the queue is resumed meanwhile
    good = probe.watch.reader.database_url
    caplog.set_level(logging.WARNING, logger="booking_core.queues.pausewatch")
    probe.watch.reader.database_url = "postgresql://nobody@127.0.0.1:9/none"
    probe.watch.reader.close()
    pauses.resume(conn, "email", actor="test-operator")
    probe.actor.send("held")
    time.sleep(10 * POLL_MS / 1000)
    # Then the worker stays paused, and said so once
    assert probe.done == [] and probe.watch.applied.whole
    assert sum("cannot read the paused queues" in r.getMessage() for r in caplog.records) == 1
    # And once Postgres answers again, the resume applies
    probe.watch.reader.database_url = good
    wait_until(lambda: probe.done == ["held"], timeout=15, what="the message after recovery")
    assert any("readable again" in r.getMessage() for r in caplog.records)
