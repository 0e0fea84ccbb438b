"""Bulk dead-letter jobs: "requeue (or discard) all that match", run in batches with visible progress.

`deadletters.apply_all` does the work, `batch_size` letters per transaction,
each audited with the operator as actor.  This module only keeps a row per
job in `ops_bulk_jobs` (the filter, how many matched at confirmation, how many
are done so far), written after each batch, so that any console pod can show
the progress and a job's outcome survives the page being closed.

A job runs in the process that started it.  If that process dies, the row
stops moving: `Job.stalled` says so, and running the same filter again acts
only on the letters still open (the ones done were resolved in their batch).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg
import redis
from psycopg.types.json import Jsonb

from booking_core.tasks import deadletters

log = logging.getLogger(__name__)

#: Letters per transaction in a console bulk action.
BATCH_SIZE = 50
#: A running job whose row has not moved for this long has lost its process.
STALL_SECONDS = 120


@dataclass(frozen=True)
class Job:
    id: str
    action: str
    filter: dict
    actor: str
    matched: int
    done: int
    state: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    stalled: bool

    @property
    def percent(self) -> int:
        """Share done of what matched at confirmation (100 once finished)."""
        if self.state != "running" or not self.matched:
            return 100 if self.state == "finished" else 0
        return min(99, 100 * self.done // self.matched)


def filter_to_json(f: deadletters.Filter) -> dict:
    """The filter as JSON (times as ISO-8601), to store with the job and show on its page."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in vars(f).items() if v is not None}


def filter_from_json(doc: dict) -> deadletters.Filter:
    return deadletters.Filter(**{k: (datetime.fromisoformat(v) if k in ("dead_since", "dead_before") else v)
                                 for k, v in doc.items()})


def create(conn: psycopg.Connection, action: str, f: deadletters.Filter, *, actor: str, matched: int) -> str:
    """Record a new running job; returns its id."""
    return conn.execute("INSERT INTO ops_bulk_jobs (action, filter, actor, matched) VALUES (%s, %s, %s, %s)"
                        " RETURNING id::text", (action, Jsonb(filter_to_json(f)), actor, matched)).fetchone()["id"]


def get(conn: psycopg.Connection, job_id: str) -> Job | None:
    """The job, or None (also for an id that is not a uuid)."""
    try:
        job_id = str(uuid.UUID(job_id))
    except ValueError:
        return None
    row = conn.execute(
            "SELECT id::text, action, filter, actor, matched, done, state, error, created_at, updated_at,"
            " finished_at, state = 'running' AND updated_at < clock_timestamp() - make_interval(secs => %s)"
            " AS stalled FROM ops_bulk_jobs WHERE id = %s", (STALL_SECONDS, job_id)).fetchone()
    return Job(**row) if row else None


def run(conn: psycopg.Connection, client: redis.Redis | None, namespace: str, job_id: str,
        *, batch_size: int = BATCH_SIZE) -> Job:
    """Do the job on `conn` (autocommit), recording progress after each batch; returns the final row."""
    job = get(conn, job_id)
    if job is None:
        raise LookupError(f"no bulk job {job_id}")
    done = 0
    try:
        for done, _letter in enumerate(deadletters.apply_all(conn, client, namespace, filter_from_json(job.filter),
                                                             job.action, actor=job.actor, batch_size=batch_size),
                                       start=1):
            if done % batch_size == 0:
                conn.execute("UPDATE ops_bulk_jobs SET done = %s, updated_at = clock_timestamp() WHERE id = %s",
                             (done, job_id))
    except Exception as e:  # the batches done so far stay done; the row says where it stopped
        log.exception("bulk job %s stopped after %d letters", job_id, done)
        conn.execute("UPDATE ops_bulk_jobs SET done = %s, state = 'failed', error = %s,"
                     " updated_at = clock_timestamp(), finished_at = clock_timestamp() WHERE id = %s",
                     (done, f"{type(e).__name__}: {e}"[:1000], job_id))
    else:
        conn.execute("UPDATE ops_bulk_jobs SET done = %s, state = 'finished', updated_at = clock_timestamp(),"
                     " finished_at = clock_timestamp() WHERE id = %s", (done, job_id))
    return get(conn, job_id)
