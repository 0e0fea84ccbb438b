"""Bulk dead-letter jobs: "requeue (or discard) all that match", the one way to act on many letters.

The API (`POST /api/v1/ops/dead-letters/requeue|discard`) and the ops console
both only *start* a job (`start`: a `queued` row holding the resolved filter and
how many letters matched then); a runner in a long-lived service (the relay's
`BulkJobRunner`, `booking_core.ops.bulkrunner`) claims it and does the work, so
a job outlives the request, the page, and the process that started it.  Both
read its progress from the same row (`get`).

Why a runner and not the starting process: a bulk action can outlast its
request (thousands of letters after an outage), and the process that started
it may be a console pod or an API worker that is restarted in the meantime.
Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several runners (relay
replicas) share the jobs without taking one twice; a runner reports after each
batch (`heartbeat_at`), and a running job whose runner stopped reporting for
`stale_seconds` is claimed again and resumed by another runner.

Exactly once in effect: each batch of letters is acted on and its progress
recorded in one transaction (`deadletters.apply_all(on_batch=…)`), under the
claim token of the runner that holds the job.  A runner that lost its claim
(another took the job over) fails that update, its batch rolls back, and it
stops; the letters it did not commit stay open for the new runner, which
resumes with the same filter and so acts only on what is still open.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg
import redis
from opentelemetry import propagate, trace
from psycopg.types.json import Jsonb

from booking_core.ops import filters
from booking_core.tasks import deadletters
from booking_core.telemetry.tracing import current_carrier

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("booking_core.ops.bulkjobs")

ACTIONS = ("requeue", "discard")
#: Letters per transaction.
BATCH_SIZE = 50
#: A job whose runners died this many times is failed rather than claimed again: it is more
#: likely to be what kills them than their bad luck.
MAX_CLAIMS = 5
#: Runners LISTEN here; `start` notifies, so a new job starts at once rather than at the next poll.
CHANNEL = "ops_bulk_jobs"


class LostClaim(RuntimeError):
    """Another runner took this job over (this one was thought dead): stop, undoing the current batch."""


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
    #: Running, but its runner has not reported for the stale time: another runner will resume it.
    stalled: bool

    @property
    def percent(self) -> int:
        """Share done of what matched when it was started (100 once finished)."""
        if self.state == "finished":
            return 100
        if self.state != "running" or not self.matched:
            return 0
        return min(99, 100 * self.done // self.matched)

    def as_dict(self) -> dict:
        """The job as the API shows it (`GET /api/v1/ops/jobs/{id}`)."""
        return {"id": self.id, "action": self.action, "state": self.state, "filter": self.filter,
                "actor": self.actor, "counts": {"done": self.done, "total": self.matched},
                "errors": [self.error] if self.error else [], "stalled": self.stalled,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None}


def start(conn: psycopg.Connection, action: str, f: deadletters.Filter, *, actor: str,
          claim: str | None = None) -> str:
    """Record a queued job for the runners and wake them; returns its id.

    With `claim` (a token of the caller's), the job is recorded already claimed by the
    caller, who runs it itself (`bookingctl dlq … --all`, to print each letter as it goes);
    if the caller dies, the job goes stale and a runner resumes it like any other.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
    # The starting request's trace, continued by whichever runner does the job.
    trace_context = Jsonb(carrier) if (carrier := current_carrier()) else None
    with conn.transaction():
        matched = deadletters.count(conn, f)
        if claim is None:
            row = conn.execute("INSERT INTO ops_bulk_jobs (action, filter, actor, matched, trace_context)"
                               " VALUES (%s, %s, %s, %s, %s) RETURNING id::text",
                               (action, Jsonb(filters.to_json(f)), actor, matched, trace_context)).fetchone()
            conn.execute(f"NOTIFY {CHANNEL}")
        else:
            row = conn.execute(
                "INSERT INTO ops_bulk_jobs (action, filter, actor, matched, trace_context, state, claim, claims,"
                " heartbeat_at) VALUES (%s, %s, %s, %s, %s, 'running', %s, 1, clock_timestamp()) RETURNING id::text",
                (action, Jsonb(filters.to_json(f)), actor, matched, trace_context, claim)).fetchone()
    return row["id"]


_COLUMNS = ("id::text, action, filter, actor, matched, done, state, error, created_at, updated_at, finished_at,"
            " state = 'running' AND coalesce(heartbeat_at, updated_at)"
            " < clock_timestamp() - make_interval(secs => %s) AS stalled")


def get(conn: psycopg.Connection, job_id: str, *, stale_seconds: float = 60.0) -> Job | None:
    """The job, or None (also for an id that is not a uuid)."""
    try:
        job_id = str(uuid.UUID(job_id))
    except ValueError:
        return None
    row = conn.execute(f"SELECT {_COLUMNS} FROM ops_bulk_jobs WHERE id = %s", (stale_seconds, job_id)).fetchone()
    return Job(**row) if row else None


_CLAIM = """
UPDATE ops_bulk_jobs SET state = 'running', claim = %(claim)s, claims = claims + 1,
       heartbeat_at = clock_timestamp(), updated_at = clock_timestamp()
WHERE id = (SELECT id FROM ops_bulk_jobs
            WHERE state = 'queued'
               OR (state = 'running'
                   AND coalesce(heartbeat_at, updated_at) < clock_timestamp() - make_interval(secs => %(stale)s))
            ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id::text, claims
"""


def claim(conn: psycopg.Connection, *, stale_seconds: float) -> tuple[str, str] | None:
    """Take the oldest queued job, or a running one whose runner went quiet: (job id, claim token), or None.

    A job claimed more than MAX_CLAIMS times is failed instead (and the next one looked at).
    """
    while True:
        token = str(uuid.uuid4())
        with conn.transaction():
            row = conn.execute(_CLAIM, {"claim": token, "stale": stale_seconds}).fetchone()
            if row is None:
                return None
            if row["claims"] <= MAX_CLAIMS:
                if row["claims"] > 1:
                    log.warning("bulk job %s: its runner stopped reporting; resuming it", row["id"])
                return row["id"], token
            conn.execute("UPDATE ops_bulk_jobs SET state = 'failed', error = %s, updated_at = clock_timestamp(),"
                         " finished_at = clock_timestamp() WHERE id = %s",
                         (f"its runner stopped {MAX_CLAIMS} times; the letters it did are done, "
                          "start it again for the rest", row["id"]))


def _progress(job_id: str, token: str):
    """The per-batch update, in the batch's own transaction (the last lock it takes: docs/lock-order.md)."""

    def record(conn: psycopg.Connection, letters: list[deadletters.DeadLetter]) -> None:
        updated = conn.execute(
            "UPDATE ops_bulk_jobs SET done = done + %s, heartbeat_at = clock_timestamp(),"
            " updated_at = clock_timestamp() WHERE id = %s AND claim = %s AND state = 'running'",
            (len(letters), job_id, token)).rowcount
        if not updated:
            raise LostClaim(f"bulk job {job_id} was taken over by another runner")

    return record


def run(conn: psycopg.Connection, client: redis.Redis | None, namespace: str, job_id: str, token: str,
        *, batch_size: int = BATCH_SIZE,
        on_letter: Callable[[deadletters.DeadLetter], None] | None = None) -> None:
    """Do a claimed job on `conn` (autocommit) to its end, or until its claim is lost.

    `on_letter` is told of each letter once its batch has committed.
    """
    job = get(conn, job_id)
    if job is None:
        raise LookupError(f"no bulk job {job_id}")
    carrier = conn.execute("SELECT trace_context FROM ops_bulk_jobs WHERE id = %s", (job_id,)).fetchone()
    with _tracer.start_as_current_span(f"bulk {job.action}", context=propagate.extract(carrier["trace_context"] or {}),
                                       attributes={"booking.bulk_job.id": job_id}):
        _run(conn, client, namespace, job, token, batch_size, on_letter)


def _run(conn: psycopg.Connection, client: redis.Redis | None, namespace: str, job: Job, token: str,
         batch_size: int, on_letter: Callable[[deadletters.DeadLetter], None] | None) -> None:
    job_id = job.id
    done = 0
    try:
        for letter in deadletters.apply_all(conn, client, namespace, filters.from_json(job.filter), job.action,
                                             actor=job.actor, batch_size=batch_size,
                                             on_batch=_progress(job_id, token)):
            done += 1
            if on_letter is not None:
                on_letter(letter)
    except LostClaim:
        log.warning("bulk job %s: another runner took it over after %d letters here; stopping", job_id, done)
        return
    except Exception as e:  # the batches done so far stay done; the row says where it stopped
        log.exception("bulk job %s stopped after %d letters", job_id, done)
        conn.execute("UPDATE ops_bulk_jobs SET state = 'failed', error = %s, updated_at = clock_timestamp(),"
                     " finished_at = clock_timestamp() WHERE id = %s AND claim = %s",
                     (f"{type(e).__name__}: {e}"[:1000], job_id, token))
        return
    conn.execute("UPDATE ops_bulk_jobs SET state = 'finished', updated_at = clock_timestamp(),"
                 " finished_at = clock_timestamp() WHERE id = %s AND claim = %s", (job_id, token))
