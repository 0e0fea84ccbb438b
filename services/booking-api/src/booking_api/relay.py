"""The outbox relay: publishes committed outbox rows to Redis, then deletes them.

Woken by NOTIFY at each booking's commit, and sweeps every
`relay_sweep_seconds` anyway (a NOTIFY is lost while the relay is down).
Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays share the
work without publishing a row twice at the same time; a crash after publish
and before delete republishes it with the same message id, which consumers
treat as a duplicate.  While Redis is down, rows wait and bookings still commit.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import dramatiq
import psycopg
import redis
from prometheus_client import Counter, Histogram, start_http_server

from booking_api.idempotency import purge_expired
from booking_core import db
from booking_core.broker import make_broker
from booking_core.config import Settings
from booking_core.outbox import CHANNEL
from booking_core.telemetry import setup_tracing, shutdown

log = logging.getLogger("booking_api.relay")
PURGE_EVERY_SECONDS = 300

PUBLISHED = Counter("booking_relay_published", "Outbox messages published to Redis, by queue.", ["queue"])
FAILURES = Counter("booking_relay_failures", "Relay loop failures, by kind (redis, postgres).", ["kind"])
BATCH_SECONDS = Histogram("booking_relay_batch_duration_seconds", "Time to publish and delete one outbox batch.",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


def publish_batch(conn: psycopg.Connection, broker: dramatiq.Broker, limit: int) -> int:
    """Publish and delete up to `limit` outbox rows in one transaction; return how many."""
    start = time.perf_counter()
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, message_id::text, queue, actor, payload, options FROM outbox"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        ).fetchall()
        for r in rows:
            broker.enqueue(dramatiq.Message(
                queue_name=r["queue"], actor_name=r["actor"], args=(), kwargs=r["payload"],
                options=r["options"], message_id=r["message_id"],
            ))
        if rows:
            conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([r["id"] for r in rows],))
    for r in rows:
        PUBLISHED.labels(r["queue"]).inc()
    if rows:
        BATCH_SECONDS.observe(time.perf_counter() - start)
    return len(rows)


class Relay:
    """The relay loop; `stop()` (or SIGTERM) ends it after the current batch."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.broker = make_broker(settings)
        self._stop = threading.Event()

    def stop(self, *_args) -> None:
        self._stop.set()

    def drain(self, conn: psycopg.Connection) -> int:
        """Publish until the outbox is empty; return the number published."""
        total = 0
        while not self._stop.is_set():
            n = publish_batch(conn, self.broker, self.settings.relay_batch_size)
            total += n
            if n < self.settings.relay_batch_size:
                break
        return total

    def _wait(self, listen: psycopg.Connection) -> None:
        """Sleep until a NOTIFY, the next sweep, or stop(), whichever comes first."""
        deadline = time.monotonic() + self.settings.relay_sweep_seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            # Short slices, so stop() is honoured within half a second.
            if any(True for _ in listen.notifies(timeout=min(left, 0.5), stop_after=1)):
                return

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
                            last_purge = time.monotonic()
                        self._wait(listen)
            except (redis.RedisError, dramatiq.errors.ConnectionError, psycopg.OperationalError) as e:
                FAILURES.labels("postgres" if isinstance(e, psycopg.Error) else "redis").inc()
                log.warning("relay: %s: %s; retrying in %.1fs", type(e).__name__, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)


def main() -> None:
    """Entry point `booking-relay`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    setup_tracing("booking-relay")
    port = int(os.environ.get("BOOKING_METRICS_PORT", "9100"))
    start_http_server(port)
    log.info("metrics on :%d/metrics", port)
    relay = Relay(Settings.from_env())
    signal.signal(signal.SIGTERM, relay.stop)
    signal.signal(signal.SIGINT, relay.stop)
    relay.run()
    shutdown()
    log.info("relay stopped")
