"""QueuePauseMiddleware: a worker stops starting a paused queue's messages, and starts again on resume.

The paused queues live in Postgres (queues/pauses.py), so a pause reaches every worker
process and survives restarts.  Each worker reads them once at boot, before its
threads take any message (a worker started while its queue is paused starts
paused), then once every `poll_ms` from a thread of its own: one indexed query
on one connection.

Pausing uses Dramatiq's own `Worker.pause()`: consumers stop fetching and worker
threads stop starting messages; a message already running finishes.  Nothing
is acked, failed or dropped: messages wait in Redis, and those this worker had
already fetched wait in its memory, still counted in flight, and are requeued by
Dramatiq if the worker shuts down meanwhile.  A worker that consumes several
queues, some paused, pauses only those queues' consumers (messages it already
fetched from them may still start); the platform's workers consume one queue each.

Two details keep a pause safe:
  * a paused worker sends no broker command, so nothing refreshes its Redis
    heartbeat, and after heartbeat_timeout another worker would take it for dead
    and requeue the messages it holds (run twice on resume).  While anything is
    paused, each poll refreshes the heartbeat (the key Dramatiq's dispatch script
    writes, `booking_scaling.layout.Layout.heartbeats`);
  * a read error keeps the last known state (`PauseReader`, logged once, and once
    on recovery): a database blip must neither resume a paused queue nor pause a
    running one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import psycopg
import redis
from dramatiq import Middleware
from dramatiq.common import current_millis, q_name

from booking_core import db
from booking_core.queues import pauses
from booking_scaling import pausemirror
from booking_scaling.layout import Layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What a worker does about pauses: pause whole, and which of its queues' consumers pause."""

    #: Every queue the worker consumes is paused: Worker.pause().
    whole: bool = False
    #: The paused queues among those it consumes.
    queues: frozenset[str] = frozenset()


RUNNING = Plan()


def plan(consumed: frozenset[str], paused: frozenset[str]) -> Plan:
    """The worker's plan, given the queues it consumes and the queues paused platform-wide."""
    mine = consumed & paused
    return Plan(whole=bool(consumed) and mine == consumed, queues=frozenset(mine))


def consumed_queues(broker, worker) -> frozenset[str]:
    """The canonical names of the queues `worker` consumes (its --queues, else every declared one)."""
    declared = {q_name(q) for q in broker.get_declared_queues()}
    whitelist = worker.consumer_whitelist
    return frozenset(declared & {q_name(q) for q in whitelist} if whitelist else declared)


class PauseReader:
    """The paused queues, read on one connection of its own (the workers' poll, the local autoscaler).

    A read error keeps the last known set, logged once when the outage starts
    and once when it ends: a database blip must neither resume a paused queue
    nor pause a running one.
    """

    def __init__(self, database_url: str, *, timeout_seconds: float = 2.0):
        self.database_url = database_url
        self.timeout_seconds = timeout_seconds
        #: The last set read (every queue of the platform); empty until a read succeeds.
        self.paused: frozenset[str] = frozenset()
        self.failing = False
        self._conn: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        """Its connection (autocommit, every statement bounded by the timeout), opened again after close().

        The local runner's CPU yield pauses and resumes queues on it too (bookingctl.cpu_yield).
        """
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.database_url, autocommit=True,
                                    connect_timeout=max(1, round(self.timeout_seconds)),
                                    options=f"-c statement_timeout={int(self.timeout_seconds * 1000)}")
        return self._conn

    def read(self) -> frozenset[str]:
        """The paused queues now, or the last known ones when Postgres cannot say."""
        try:
            current = frozenset(pauses.paused(self.connection()))
        except psycopg.Error as e:
            self.close()
            if not self.failing:
                log.warning("cannot read the paused queues (%s); keeping the last known state (%s)",
                            e, ", ".join(sorted(self.paused)) or "none paused")
                self.failing = True
            return self.paused
        if self.failing:
            log.warning("paused queues readable again")
            self.failing = False
        self.paused = current
        return current

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class QueuePauseMiddleware(Middleware):
    """Applies the paused queues of Postgres to this process' Dramatiq worker."""

    def __init__(self, *, database_url: str, poll_ms: int = 1_000, read_timeout_seconds: float = 2.0):
        self.reader = PauseReader(database_url, timeout_seconds=read_timeout_seconds)
        self.poll_seconds = poll_ms / 1000
        self.worker = None
        self.consumed: frozenset[str] = frozenset()
        self.applied = RUNNING
        #: The paused queues last copied to Redis (None: not yet): a running queue's key is
        #: cleared until a write succeeds, not once a second for ever.
        self._mirrored: frozenset[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- Dramatiq hooks -------------------------------------------------------------------

    def before_worker_boot(self, broker, worker) -> None:
        """Read the pauses before any thread runs, so a paused queue's worker starts paused."""
        self.worker = worker
        self.consumed = consumed_queues(broker, worker)
        self.applied = plan(self.consumed, self.reader.read())
        if self.applied.queues:
            log.warning("starting with queue(s) %s paused: their messages wait until resumed",
                        ", ".join(sorted(self.applied.queues)))

    def after_consumer_thread_boot(self, broker, thread) -> None:
        """A consumer of a paused queue starts paused (in its own thread, before its first fetch)."""
        if q_name(thread.queue_name) in self.applied.queues:
            thread.pause()

    def after_worker_thread_boot(self, broker, thread) -> None:
        """A worker thread starts paused when the whole worker is."""
        if self.applied.whole:
            thread.pause()

    def after_worker_boot(self, broker, worker) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="queue-pause-poll", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker, worker) -> None:
        self._stop.set()
        if self._thread is not None:
            # Bounded: a Worker.pause() still waiting for a running message must not hold up shutdown.
            self._thread.join(timeout=self.poll_seconds + self.reader.timeout_seconds + 1)
        self.reader.close()

    # --- the poll -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the poll thread must outlive any one bad round
                log.exception("queue pause poll failed; trying again in %.1fs", self.poll_seconds)

    def poll(self) -> None:
        """Read the pauses and apply any change; keep the heartbeat and the Redis copy fresh."""
        target = plan(self.consumed, self.reader.read())
        if target != self.applied:
            self._apply(target)
        if self.applied.queues:
            self._heartbeat()
        if self.applied.queues or self._mirrored != self.applied.queues:  # a pause's copy expires: refresh it
            self._mirror()

    def _apply(self, target: Plan) -> None:
        worker, before = self.worker, self.applied
        for queue in sorted(target.queues - before.queues):
            log.warning("queue %s paused: no new message starts; running ones finish", queue)
        if target.whole:
            worker.pause()  # returns once the running messages have finished
        else:
            if before.whole:
                worker.resume()
            for name, consumer in list(worker.consumers.items()):
                (consumer.pause if q_name(name) in target.queues else consumer.resume)()
        self.applied = target
        for queue in sorted(before.queues - target.queues):
            log.warning("queue %s resumed", queue)

    def _mirror(self) -> None:
        """Copy the applied pauses to Redis for readers without Postgres (pausemirror: the operator)."""
        broker = self.worker.broker
        client = getattr(broker, "client", None)
        if client is None:  # not a Redis broker
            return
        try:
            pausemirror.write(client, broker.namespace, self.consumed, self.applied.queues,
                              ttl_ms=max(pausemirror.TTL_MS, int(self.poll_seconds * 5000)))
            self._mirrored = self.applied.queues
        except redis.RedisError as e:
            log.debug("could not copy the paused queues to Redis: %s", e)

    def _heartbeat(self) -> None:
        """Refresh this worker's Dramatiq heartbeat, which a paused consumer no longer sends."""
        broker = self.worker.broker
        client, broker_id = getattr(broker, "client", None), getattr(broker, "broker_id", None)
        if client is None or broker_id is None:  # not a Redis broker
            return
        try:
            client.zadd(Layout(broker.namespace).heartbeats, {broker_id: current_millis()})
        except redis.RedisError as e:
            log.debug("could not refresh the heartbeat while paused: %s", e)
