"""Which worker processes consume which queue: each worker stamps itself in Redis every few seconds.

Why: the ops console and on-call want "how many workers does the email queue
have now", whoever scaled them (`bookingctl up`, the kopf operator, a human).
Dramatiq's own heartbeats (`ns:__heartbeats__`) say a process is alive but not
which queues it consumes, and an idle worker leaves no ack set.  So every
worker process adds its broker id to `ns:__consumers__.<queue>` (a sorted set
scored by the time in ms) for each queue it consumes, every `INTERVAL_SECONDS`,
and removes itself when it stops.  A member not restamped within `TTL_MS` (a
crashed process) no longer counts and is pruned by the next stamp.  One small
Redis write per process every few seconds; nothing in Postgres.

The same stamp adds the messages this process finished since the last one to its
queues' completion counters (booking_scaling.completions), which the autoscalers'
throughput estimate reads: counted in memory per message, written with the stamp.
It also writes which pod the process runs in (its host name: a Deployment's pod is
named so) and when it last finished a message (booking_scaling.podload), so the
operator can let the ReplicaSet delete idle pods first on a scale-down.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import Counter

import redis
from dramatiq import Middleware
from dramatiq.common import current_millis

from booking_scaling import completions, podload

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 5.0
#: Three missed stamps and a worker no longer counts.
TTL_MS = 15_000


def key(namespace: str, queue: str) -> str:
    return f"{namespace}:__consumers__.{queue}"


def stamp(client: redis.Redis, namespace: str, queues: frozenset[str] | set[str], worker_id: str,
          now_ms: int, finished: dict[str, int] | None = None, *, host: str | None = None,
          last_work_ms: int | None = None, boot_ms: int | None = None) -> None:
    """Mark `worker_id` as consuming `queues` at `now_ms`, prune members older than TTL_MS, add
    `finished` (queue -> messages finished since the last stamp) to the completion counters and,
    with `host`, record the pod it runs in, when it last finished a message and when it booted."""
    pipe = client.pipeline(transaction=False)
    completions.add(pipe, namespace, finished or {})
    if host is not None:
        podload.add(pipe, namespace, queues, worker_id, host, last_work_ms, now_ms, boot_ms)
    for q in sorted(queues):
        pipe.zadd(key(namespace, q), {worker_id: now_ms})
        pipe.zremrangebyscore(key(namespace, q), "-inf", now_ms - TTL_MS)
        pipe.pexpire(key(namespace, q), TTL_MS * 4)
    pipe.execute()


def leave(client: redis.Redis, namespace: str, queues: frozenset[str] | set[str], worker_id: str) -> None:
    pipe = client.pipeline(transaction=False)
    for q in sorted(queues):
        pipe.zrem(key(namespace, q), worker_id)
    podload.remove(pipe, namespace, queues, worker_id)
    pipe.execute()


class PresenceMiddleware(Middleware):
    """Stamps this worker process as a consumer of its queues while it runs."""

    def __init__(self, *, interval_seconds: float = INTERVAL_SECONDS, host: str | None = None):
        self.interval_seconds = interval_seconds
        #: The pod this process runs in: a Deployment's pod has its own name as host name.
        self.host = host or socket.gethostname()
        self._last_work_ms: int | None = None
        self._boot_ms: int | None = None
        self.queues: frozenset[str] = frozenset()
        self.broker = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished: Counter[str] = Counter()
        self._lock = threading.Lock()

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        """Count a finished message (a failed one is retried or dead, not done) for the next stamp."""
        with self._lock:
            self._last_work_ms = current_millis()  # a failed attempt was work too
            if exception is None:
                self._finished[message.queue_name] += 1

    def _take_finished(self) -> dict[str, int]:
        with self._lock:
            taken, self._finished = dict(self._finished), Counter()
        return taken

    def after_worker_boot(self, broker, worker) -> None:
        from booking_core.queues.pausewatch import consumed_queues

        client = getattr(broker, "client", None)
        if client is None or getattr(broker, "broker_id", None) is None:  # not a Redis broker
            return
        self.broker, self.queues = broker, consumed_queues(broker, worker)
        self._boot_ms = current_millis()  # ready to consume: the end of this pod's start, for the autoscaler
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="consumer-presence", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker, worker) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=self.interval_seconds + 2)
        try:
            pipe = broker.client.pipeline(transaction=False)
            completions.add(pipe, broker.namespace, self._take_finished())
            pipe.execute()
            leave(broker.client, broker.namespace, self.queues, broker.broker_id)
        except redis.RedisError as e:
            log.debug("could not remove this worker's presence: %s", e)

    def _run(self) -> None:
        while True:
            finished = self._take_finished()
            try:
                stamp(self.broker.client, self.broker.namespace, self.queues, self.broker.broker_id,
                      current_millis(), finished, host=self.host, last_work_ms=self._last_work_ms,
                      boot_ms=self._boot_ms)
            except redis.RedisError as e:
                log.debug("could not stamp this worker's presence: %s", e)
                with self._lock:  # counted at the next stamp instead
                    self._finished.update(finished)
            if self._stop.wait(self.interval_seconds):
                return
