"""The relay loop: drain the outbox, linger, sleep until a NOTIFY or the next sweep, repeat.

Writers NOTIFY only while the relay says it sleeps (`relay_wakeup.sleeping`,
see booking_core.messaging.outbox): a NOTIFY takes a database-wide lock at commit, which
would queue every booking's commit behind every other's.  So a relay that has
just published keeps polling the outbox for `LINGER_SECONDS` (a busy outbox
refills within milliseconds), and only then sets the flag, looks once more
(a row committed just before the flag did not notify) and sleeps.  Under load
it never sleeps and nobody notifies; when idle, the first booking wakes it at
once.  It sweeps every `relay_sweep_seconds` anyway (a NOTIFY is lost while
the relay is down, or in the instant between its last look and its sleep).
Postgres or Redis failures end the connection, not the process: the loop
reconnects with backoff.  Every `PURGE_EVERY_SECONDS` it also deletes expired
Idempotency-Keys, so no API request pays for that, and dead-letter records
resolved more than `dead_letter_retention_days` ago (open ones never).

The order (`BOOKING_RELAY_ORDER`): `fair` (the default) tops each queue up to
its publish-ahead in fair order by tenant (`fair.py`), reading the queues'
depth from Redis each round; what does not fit waits in the outbox, and the
relay looks again every `POLL_SECONDS` while rows are held back.  `fifo`
publishes every due row at once, oldest first (`publish.py`).  Every
`REPORT_SECONDS` or so it reports what waits, per queue and per tenant
(`backlog.py`) on its /metrics; one relay at a time reads it from the outbox,
copies it to Redis for the autoscalers and for the other relays, and reads
less often when the read is slow (`report_turn.py`).
"""

from __future__ import annotations

import logging
import threading
import time

import dramatiq
import psycopg
import redis

from booking_core import db
from booking_core.config import Settings
from booking_core.messaging.contracts import QUEUES
from booking_core.messaging.outbox import CHANNEL
from booking_core.model.idempotency import purge_expired
from booking_core.tasks.deadletters import purge_resolved
from booking_core.worker.broker import make_broker
from booking_scaling.depth import QueueReader
from outbox_relay import backlog
from outbox_relay.fair import publish_fair, room
from outbox_relay.metrics import BACKLOG, FAILURES
from outbox_relay.publish import publish_batch
from outbox_relay.report_turn import ReportTurn, Turn, mirror_ttl_ms

log = logging.getLogger("outbox_relay")
PURGE_EVERY_SECONDS = 300
#: After publishing, keep polling this long before going to sleep ...
LINGER_SECONDS = 0.25
#: ... this often (an indexed EXISTS on a small table: a fraction of a millisecond).
POLL_SECONDS = 0.02

_SET_SLEEPING = ("INSERT INTO relay_wakeup (id, sleeping) VALUES (1, %s)"
                 " ON CONFLICT (id) DO UPDATE SET sleeping = EXCLUDED.sleeping")
_HAS_ROWS = "SELECT EXISTS (SELECT 1 FROM outbox WHERE available_at <= clock_timestamp()) AS any"


class Relay:
    """The relay loop; `stop()` (or SIGTERM) ends it after the current batch."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.broker = make_broker(settings)
        self.depths = QueueReader(self.broker.client, settings.redis_namespace)
        self.turn = ReportTurn(self.broker.client, settings.redis_namespace)
        self._stop = threading.Event()

    def stop(self, *_args) -> None:
        """Ask the loop to end; safe from a signal handler."""
        self._stop.set()

    def drain(self, conn: psycopg.Connection) -> int:
        """Publish until the outbox is empty (fifo) or every queue is full (fair); return the number published."""
        if self.settings.relay_order == "fair":
            return self.fill(conn)
        total = 0
        while not self._stop.is_set():
            n = publish_batch(conn, self.broker, self.settings.relay_batch_size)
            total += n
            if n < self.settings.relay_batch_size:
                break
        return total

    def fill(self, conn: psycopg.Connection) -> int:
        """Top every queue up to its publish-ahead, tenants in fair order, until none has room or rows."""
        total = 0
        while not self._stop.is_set():
            n = 0
            for depth in self.depths.snapshot(QUEUES):
                budget = min(room(depth, self.settings.relay_ahead), self.settings.relay_batch_size)
                if budget:
                    n += publish_fair(conn, self.broker, depth.queue, budget, self.settings.plan_default_weight)
            total += n
            if not n:
                break
        return total

    def report(self, work: psycopg.Connection) -> Turn:
        """Report what waits (outbox and Redis) on /metrics: another relay's fresh reading, else, if it is
        this relay's turn, its own, which it also copies to Redis for the autoscalers."""
        turn = self.turn.take(work, lambda conn: backlog.read(conn, self.depths.snapshot(QUEUES), QUEUES))
        if turn.read_seconds is not None:
            backlog.mirror(self.broker.client, self.settings.redis_namespace, turn.report,
                           mirror_ttl_ms(turn.interval))
        if turn.report is not None:
            BACKLOG.report = turn.report
        return turn

    def _wait(self, listen: psycopg.Connection) -> None:
        """Sleep until a NOTIFY, the next sweep, or stop(), whichever comes first."""
        deadline = time.monotonic() + self.settings.relay_sweep_seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            # Short slices, so stop() is honoured within half a second.
            if any(True for _ in listen.notifies(timeout=min(left, 0.5), stop_after=1)):
                return

    def _linger(self, work: psycopg.Connection) -> bool:
        """Poll the outbox for LINGER_SECONDS; True as soon as it has rows again."""
        deadline = time.monotonic() + LINGER_SECONDS
        while time.monotonic() < deadline and not self._stop.wait(POLL_SECONDS):
            if work.execute(_HAS_ROWS).fetchone()["any"]:
                return True
        return False

    def idle(self, listen: psycopg.Connection, work: psycopg.Connection, *, published: int) -> None:
        """Between drains: linger if work is flowing, else announce sleep and wait to be woken.

        Rows that are due but were not published wait for room in their queue (fair
        order), or for another relay's turn: look again shortly, without asking
        writers to NOTIFY (which would cost every commit a lock).
        """
        if published and self._linger(work):
            return
        if not published and work.execute(_HAS_ROWS).fetchone()["any"]:
            self._stop.wait(POLL_SECONDS)
            return
        work.execute(_SET_SLEEPING, (True,))
        if not work.execute(_HAS_ROWS).fetchone()["any"]:
            self._wait(listen)
        if not self._stop.is_set():  # a relay that stops leaves the flag up for the others
            work.execute(_SET_SLEEPING, (False,))

    def run(self) -> None:
        """Loop until stopped, reconnecting and backing off on failures."""
        backoff = 0.1
        last_purge = 0.0
        while not self._stop.is_set():
            try:
                with db.connect(self.settings.database_url, autocommit=True) as listen, \
                        db.connect(self.settings.database_url, autocommit=True) as work:
                    listen.execute(f"LISTEN {CHANNEL}")
                    log.info("relay connected; listening on %s", CHANNEL)
                    while not self._stop.is_set():
                        if n := self.drain(work):
                            log.debug("published %d messages", n)
                        backoff = 0.1
                        if time.monotonic() - last_purge > PURGE_EVERY_SECONDS:
                            purge_expired(work, self.settings.idempotency_ttl_seconds)
                            purge_resolved(work, self.settings.dead_letter_retention_days)
                            last_purge = time.monotonic()
                        if self.turn.due():
                            self.report(work)
                        self.idle(listen, work, published=n)
            except (redis.RedisError, dramatiq.errors.ConnectionError, psycopg.OperationalError) as e:
                FAILURES.labels("postgres" if isinstance(e, psycopg.Error) else "redis").inc()
                log.warning("relay: %s: %s; retrying in %.1fs", type(e).__name__, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
