"""The reconciler: re-publishes unfinished tasks whose message Redis has lost.

Postgres knows what is unfinished; Redis only carries messages.  When Redis
loses its data (FLUSHALL, a restart without its AOF, a failover to an empty
replica) or a state write was lost, a task can sit `pending`, `running` or
`retrying` for ever with nothing left to run it (issue 10, defect 2).  This
loop finds such tasks and writes their message to the outbox again, rebuilt
from the booking (`booking_core.tasks.republish`); the relay publishes it.

A task is re-published only when all three hold:

1. no progress: its row's `updated_at` is older than the threshold
   (`BOOKING_RECONCILE_AFTER_MS`, default max(2 x heartbeat timeout, 120 s)).
   It must exceed Dramatiq's heartbeat timeout: a message held by a worker
   that died is requeued by Dramatiq itself within that time;
2. no outbox row for it (the relay is about to publish it);
3. no message for it in Redis: no body naming its booking and task in the
   queue's `.msgs`, `.DQ.msgs` or `.XQ.msgs` hashes (booking_scaling.layout), where
   Dramatiq keeps the body of every ready, in-flight, delayed and dead message
   until it is acked.
   When Redis does not answer, nothing is re-published: absence is unproven.
   A task whose only message is a Redis dead letter lost its `dead` write:
   it is marked dead and its dead-letter record written from that letter.

The re-publish sets the task `pending` (with a fresh `updated_at`, so the
next pass waits a full threshold again) only if the row is still stale, in
the transaction that writes the outbox row, so a task that finished meanwhile
is left alone.  A false positive (a message Redis held after all) means one
duplicate delivery, which the idempotent workers turn into a no-op.

Several relay replicas are safe: only the holder of a session advisory lock,
taken on a connection kept for that alone, reconciles; if it dies, Postgres
releases the lock with its session and another replica takes over.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import dramatiq
import psycopg
import redis

from booking_core import db
from booking_core.config import Settings
from booking_core.messaging import outbox
from booking_core.messaging.contracts import CONTRACTS, WEBHOOK
from booking_core.tasks import deadletters
from booking_core.tasks.republish import task_message
from booking_core.webhooks import deliveries as webhook_deliveries
from booking_scaling.layout import Layout
from outbox_relay.history import compact_history
from outbox_relay.metrics import FAILURES, RECONCILED

log = logging.getLogger("outbox_relay.reconcile")

#: The leader lock's key ("reco").
LOCK_KEY = 0x7265636F
#: Tasks examined per pass (the oldest first).
BATCH = 500
ACTOR = "system:reconciler"

_STALE = """
SELECT t.booking_id::text AS booking_id, t.task, t.state FROM booking_tasks t
WHERE t.state IN ('pending', 'running', 'retrying')
  AND t.updated_at < clock_timestamp() - make_interval(secs => %(after)s)
  AND NOT EXISTS (SELECT 1 FROM outbox o
                  WHERE o.payload->>'booking_id' = t.booking_id::text AND o.payload->>'task' = t.task)
ORDER BY t.updated_at LIMIT %(limit)s
"""
_CLAIM = """
UPDATE booking_tasks SET state = 'pending', updated_at = clock_timestamp()
WHERE booking_id = %(booking_id)s AND task = %(task)s AND state IN ('pending', 'running', 'retrying')
  AND updated_at < clock_timestamp() - make_interval(secs => %(after)s)
RETURNING task
"""
_MARK_DEAD = _CLAIM.replace("state = 'pending'", "state = 'dead', last_error = %(error)s")


def _kwargs(body: bytes) -> dict:
    """A message body's kwargs; {} when it is not a Dramatiq message (a body in Redis is never trusted)."""
    try:
        kwargs = json.loads(body).get("kwargs")
    except (ValueError, AttributeError):
        return {}
    return kwargs if isinstance(kwargs, dict) else {}


def _bodies(client: redis.Redis, namespace: str, queues: set[str]) -> Iterator[tuple[bool, bytes]]:
    """Every message body Dramatiq keeps for `queues` (ready, in flight, delayed, dead), each with whether it
    is a dead letter: the one scan both the tasks' and the webhook deliveries' reconciliation read."""
    layout = Layout(namespace)
    for q in sorted(queues):
        for key, dead in ((layout.ready_messages(q), False), (layout.delayed_messages(q), False),
                          (layout.dead_messages(q), True)):
            for _, body in client.hscan_iter(key, count=1000):
                yield dead, body


def _task_of(body: bytes) -> tuple[str, str] | None:
    kwargs = _kwargs(body)
    if kwargs.get("booking_id") and kwargs.get("task"):
        return str(kwargs["booking_id"]), str(kwargs["task"])
    return None


def scan_redis(client: redis.Redis, namespace: str, queues: set[str]) -> tuple[set[tuple[str, str]], dict]:
    """What Dramatiq keeps for `queues`: the (booking_id, task) of live messages (ready, in flight,
    delayed), and the dead ones' bodies by (booking_id, task)."""
    live: set[tuple[str, str]] = set()
    dead: dict[tuple[str, str], bytes] = {}
    for is_dead, body in _bodies(client, namespace, queues):
        if (found := _task_of(body)) is not None:
            if is_dead:
                dead[found] = body
            else:
                live.add(found)
    return live, dead


def held_in_redis(client: redis.Redis, namespace: str, queues: set[str]) -> set[tuple[str, str]]:
    """(booking_id, task) of every message body Dramatiq keeps for `queues`: ready, in flight, delayed, dead."""
    live, dead = scan_redis(client, namespace, queues)
    return live | set(dead)


def _record_dead(conn: psycopg.Connection, row: dict, body: bytes, after_seconds: float) -> bool:
    """A stale task whose only message is a Redis dead letter: its `dead` write was lost.

    Write it now (state and dead-letter record, one transaction) from the letter
    Redis still holds, so it is listed and requeued from Postgres like any other.
    The record is written first and undone if the task moved meanwhile
    (docs/lock-order.md: dead letters before task rows).
    """
    message = dramatiq.Message.decode(body)
    tb = (message.options.get("traceback") or "").strip()
    error = (tb.splitlines()[-1] if tb else "dead-lettered")[:500]
    marked = False
    with conn.transaction():
        deadletters.record(conn, message, error=error)
        marked = conn.execute(_MARK_DEAD, {**row, "error": error, "after": after_seconds}).fetchone() is not None
        if not marked:
            raise psycopg.Rollback()
    if not marked:
        return False
    log.warning("reconciler: task %s of booking %s was %s but its message is a dead letter in Redis; recorded"
                " it as dead", row["task"], row["booking_id"], row["state"])
    return True


def reconcile_once(conn: psycopg.Connection, client: redis.Redis, namespace: str, after_seconds: float) -> int:
    """One pass: re-publish every stale task with no message anywhere; return how many."""
    stale = conn.execute(_STALE, {"after": after_seconds, "limit": BATCH}).fetchall()
    if not stale:
        return 0
    live, dead = scan_redis(client, namespace, {CONTRACTS[r["task"]].queue for r in stale})
    done = 0
    for r in stale:
        key = (r["booking_id"], r["task"])
        if key in live:
            continue
        if key in dead:
            _record_dead(conn, r, dead[key], after_seconds)
            continue
        with conn.transaction():
            if conn.execute(_CLAIM, {**r, "after": after_seconds}).fetchone() is None:
                continue  # it made progress meanwhile
            message = task_message(conn, r["booking_id"], r["task"], actor=ACTOR)
            outbox.add(conn, [message])
        RECONCILED.labels(message.queue).inc()
        log.warning("reconciler: task %s of booking %s was %s with no message in Redis or the outbox for over"
                    " %.0fs; re-published as message %s", r["task"], r["booking_id"], r["state"], after_seconds,
                    message.message_id)
        done += 1
    return done


def reconcile_webhooks_once(conn: psycopg.Connection, client: redis.Redis, namespace: str,
                            after_seconds: float) -> int:
    """Re-publish open webhook deliveries whose message is nowhere (Redis lost it); return how many.

    First, events still not fanned out a threshold after they occurred are fanned out here
    (the fan-out is idempotent, so a message that was only late does nothing after it).

    As for tasks: stale past its due time by the threshold, no outbox row, and no body naming it in
    the `webhook` queue's ready, delayed or dead hashes.  The round goes on where it was (its
    attempts are kept), with the same webhook-id.
    """
    fanned = webhook_deliveries.fan_out_stale(conn, after_seconds, limit=BATCH)
    if fanned:
        log.warning("reconciler: fanned out %d webhook event(s) whose fan-out message was lost", fanned)
    candidates = webhook_deliveries.stale(conn, after_seconds, limit=BATCH)
    if not candidates:
        return fanned
    q = WEBHOOK.queue
    held = {str(kwargs["delivery_id"]) for _, body in _bodies(client, namespace, {q})
            if (kwargs := _kwargs(body)).get("delivery_id")}
    done = fanned
    for delivery_id in candidates:
        if delivery_id in held or not webhook_deliveries.republish(conn, delivery_id, after_seconds):
            continue
        RECONCILED.labels(q).inc()
        log.warning("reconciler: webhook delivery %s had no message in Redis or the outbox for over %.0fs past its"
                    " due time; re-published", delivery_id, after_seconds)
        done += 1
    return done


class Reconciler:
    """The reconciler's loop, on a thread of its own; `stop()` ends it.

    The leader also compacts the booking event log after each pass (`outbox_relay.history`),
    unless `event_history_days` is 0.
    """

    def __init__(self, settings: Settings, *, interval: float | None = None):
        self.settings = settings
        self.after = settings.reconcile_after_seconds
        #: A quarter of the threshold, between 1 s and 60 s: a lost task waits at most 1.25 thresholds.
        self.interval = interval if interval is not None else min(max(self.after / 4, 1.0), 60.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self, *_args) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Take the leader lock when free, reconcile every `interval`; reconnect with backoff."""
        backoff = 1.0
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        while not self._stop.is_set():
            try:
                with db.connect(self.settings.database_url, autocommit=True) as lock, \
                        db.connect(self.settings.database_url, autocommit=True) as work:
                    leader = False
                    while not self._stop.is_set():
                        if not leader:
                            leader = lock.execute("SELECT pg_try_advisory_lock(%s) AS ok", (LOCK_KEY,)).fetchone()["ok"]
                            if leader:
                                log.info("reconciler: leader (tasks idle over %.0fs with no message are"
                                         " re-published)", self.after)
                        else:
                            lock.execute("SELECT 1")  # the lock lives as long as this session: keep it checked
                        if leader:
                            reconcile_once(work, client, self.settings.redis_namespace, self.after)
                            reconcile_webhooks_once(work, client, self.settings.redis_namespace, self.after)
                            if self.settings.event_history_days:
                                compact_history(work, self.settings.event_history_days, self._stop)
                        backoff = 1.0
                        self._stop.wait(self.interval)
            except (psycopg.Error, redis.RedisError) as e:
                FAILURES.labels("postgres" if isinstance(e, psycopg.Error) else "redis").inc()
                log.warning("reconciler: %s: %s; retrying in %.0fs", type(e).__name__, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
