"""The bulk-job runner: a thread of a long-lived service (the relay) that does the queued bulk jobs.

It sleeps on `LISTEN ops_bulk_jobs` (with a poll as a fallback: a NOTIFY sent
while it was reconnecting is lost), claims one job at a time
(`bulkjobs.claim`, `FOR UPDATE SKIP LOCKED`) and runs it to its end.  Every
replica of the service runs one; they share the jobs.  When a runner's process
dies mid-job, the job's heartbeat stops and, once it is `stale_seconds` old,
another runner (or this one, restarted) claims and resumes it.
"""

from __future__ import annotations

import logging
import threading

import psycopg
import redis

from booking_core import db
from booking_core.config import Settings
from booking_core.ops import bulkjobs

log = logging.getLogger(__name__)


class BulkJobRunner(threading.Thread):
    """Claims and runs bulk jobs on a thread of its own (`start()`) until `stop()`."""

    def __init__(self, settings: Settings, *, batch_size: int = bulkjobs.BATCH_SIZE):
        super().__init__(name="bulk-jobs", daemon=True)
        self.settings = settings
        self.batch_size = batch_size
        self.stale_seconds = settings.bulk_job_stale_ms / 1000
        #: Between claims when no NOTIFY comes: often enough to resume a stale job soon after it goes stale.
        self.poll_seconds = min(5.0, max(0.2, self.stale_seconds / 4))
        self._stopping = threading.Event()

    def stop(self, *_args) -> None:
        self._stopping.set()

    def run(self) -> None:
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10, socket_connect_timeout=10)
        try:
            while not self._stopping.is_set():
                try:
                    self._serve(client)
                except (psycopg.Error, OSError) as e:  # Postgres went away: its job goes stale and is resumed
                    log.warning("bulk-job runner: %s; retrying in %.1f s", e, self.poll_seconds)
                    self._stopping.wait(self.poll_seconds)
        finally:
            client.close()

    def _serve(self, client: redis.Redis) -> None:
        with db.connect(self.settings.database_url, autocommit=True) as conn:
            if conn.info.server_version >= 140000:
                # A runner killed while its backend waits on a lock: the backend notices the closed
                # socket within this time and rolls back, freeing the letters it holds for the next
                # runner, rather than at its next write to the client.
                conn.execute("SET client_connection_check_interval = '2s'")
            conn.execute(f"LISTEN {bulkjobs.CHANNEL}")
            while not self._stopping.is_set():
                if self.run_one(conn, client):
                    continue
                for _ in conn.notifies(timeout=self.poll_seconds, stop_after=1):
                    pass

    def run_one(self, conn: psycopg.Connection, client: redis.Redis | None) -> bool:
        """Claim and run one job; False when there was none to claim."""
        claimed = bulkjobs.claim(conn, stale_seconds=self.stale_seconds)
        if claimed is None:
            return False
        job_id, token = claimed
        log.info("bulk job %s: running", job_id)
        bulkjobs.run(conn, client, self.settings.redis_namespace, job_id, token, batch_size=self.batch_size)
        return True
