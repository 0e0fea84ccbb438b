"""The relay loop: drain the outbox, wait for a NOTIFY or the next sweep, repeat.

Woken by NOTIFY at each booking's commit, and sweeps every
`relay_sweep_seconds` anyway (a NOTIFY is lost while the relay is down).
Postgres or Redis failures end the connection, not the process: the loop
reconnects with backoff.  Every `PURGE_EVERY_SECONDS` it also deletes expired
Idempotency-Keys, so no API request pays for that.
"""

from __future__ import annotations

import logging
import threading
import time

import dramatiq
import psycopg
import redis

from booking_core import db
from booking_core.broker import make_broker
from booking_core.config import Settings
from booking_core.idempotency import purge_expired
from booking_core.outbox import CHANNEL
from outbox_relay.metrics import FAILURES
from outbox_relay.publish import publish_batch

log = logging.getLogger("outbox_relay")
PURGE_EVERY_SECONDS = 300


class Relay:
    """The relay loop; `stop()` (or SIGTERM) ends it after the current batch."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.broker = make_broker(settings)
        self._stop = threading.Event()

    def stop(self, *_args) -> None:
        """Ask the loop to end; safe from a signal handler."""
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
