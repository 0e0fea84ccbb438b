"""Paused queues: one row per paused queue in Postgres, read by every worker.

Pausing is a human's decision to stop a queue's work for a while (an SMTP
provider in trouble, a bad invoice template) without losing or failing any
message: its messages wait in Redis and run once it is resumed.  The state is
in Postgres, not in one worker's memory, so every worker process sees it
(`pausewatch.QueuePauseMiddleware` polls it) and it survives restarts.  The
ops API, the ops console, `bookingctl queues` and the metrics all call these
functions: there is no second implementation.

Each change is audited with who made it, as dead-letter actions are: the audit
message is written to the outbox in the transaction that changes the row.  A
pause belongs to no customer, so its entry goes to the chain of the platform's
own tenant (`OPS_TENANT_ID`, created by migration 0007).  Pausing the audit
queue holds its own audit entry back until the queue is resumed; it is not lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from booking_core.audit.chain import MAX_ACTOR_CHARS
from booking_core.messaging import outbox
from booking_core.messaging.contracts import QUEUES
from booking_core.tasks.deadletters import audit_event

#: The platform's own tenant (uuid5 of the URL "booking-platform:ops"): its audit
#: chain holds operator actions that concern no customer.
OPS_TENANT_ID = "d22cc515-7637-5483-8c70-c24a5137cc44"
MAX_REASON_CHARS = 200
#: What a reason may not hold: control characters, line breaks, bidi overrides (it is shown in
#: terminals, pages and logs).  The API's `Text` refuses the same before it gets here.
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Pause:
    """One paused queue: who paused it, when, and why."""

    queue: str
    paused_by: str
    paused_at: datetime
    reason: str

    def as_dict(self) -> dict:
        return {"queue": self.queue, "paused_by": self.paused_by, "paused_at": self.paused_at.isoformat(),
                "reason": self.reason}


def check_queue(queue: str) -> str:
    """`queue` if it is one of the platform's queues, else ValueError naming them."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {str(queue)[:40]!r}: queues are {', '.join(QUEUES)}")
    return queue


def _actor(actor: str) -> str:
    """The operator's identity, bounded as the audit trail requires."""
    if not isinstance(actor, str) or not actor.strip():
        raise ValueError("actor must name who pauses or resumes the queue")
    return actor.strip()[:MAX_ACTOR_CHARS]


def _reason(reason: str) -> str:
    """A free-text reason, shown to other operators: bounded, one printable line."""
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON_CHARS:
        raise ValueError(f"reason must be at most {MAX_REASON_CHARS} characters")
    if _UNSHOWABLE.search(reason):
        raise ValueError("reason must be one line of printable characters")
    return reason


def _audit(kind: str, queue: str, actor: str, details: dict) -> outbox.OutboxMessage:
    event = audit_event(kind=kind, tenant_id=OPS_TENANT_ID, booking_id=None, actor=actor,
                        details={"queue": queue, **details})
    if event is None:  # only without a tenant, and one is given
        raise RuntimeError("no audit event for a queue pause")
    return event


def pause(conn: psycopg.Connection, queue: str, *, actor: str, reason: str = "") -> bool:
    """Pause `queue` (audited as done by `actor`); False when it was already paused (nothing changes)."""
    queue, actor, reason = check_queue(queue), _actor(actor), _reason(reason)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO queue_pauses (queue, paused_by, reason) VALUES (%s, %s, %s)"
            " ON CONFLICT (queue) DO NOTHING RETURNING queue", (queue, actor, reason)).fetchone()
        if row is None:
            return False
        outbox.add(conn, [_audit("queue.paused", queue, actor, {"reason": reason})])
    return True


def resume(conn: psycopg.Connection, queue: str, *, actor: str, only_own: bool = False) -> bool:
    """Resume `queue` (audited as done by `actor`); False when it was not paused (nothing changes).

    `only_own`: resume it only if `actor` paused it (False, nothing changed, when someone else did):
    the local runner's automatic yield (booking_scaling.yielding) lifts its own pauses, never a person's.
    """
    queue, actor = check_queue(queue), _actor(actor)
    with conn.transaction():
        row = conn.execute("DELETE FROM queue_pauses WHERE queue = %s AND (NOT %s OR paused_by = %s)"
                           " RETURNING paused_by, paused_at, reason", (queue, only_own, actor)).fetchone()
        if row is None:
            return False
        outbox.add(conn, [_audit("queue.resumed", queue, actor, {
            "paused_by": _column(row, 0, "paused_by"),
            "paused_at": _column(row, 1, "paused_at").astimezone(UTC).isoformat()})])
    return True


def _column(row, index: int, name: str):
    """A column of a row from a tuple or a dict cursor (callers bring either kind of connection)."""
    return row[name] if isinstance(row, dict) else row[index]


def paused(conn: psycopg.Connection) -> dict[str, Pause]:
    """Every paused queue, by name (absent: running)."""
    rows = conn.execute("SELECT queue, paused_by, paused_at, reason FROM queue_pauses").fetchall()
    pauses = (Pause(*(_column(r, i, n) for i, n in enumerate(("queue", "paused_by", "paused_at", "reason"))))
              for r in rows)
    return {p.queue: Pause(p.queue, p.paused_by, p.paused_at.astimezone(UTC), p.reason) for p in pauses}


def state(conn: psycopg.Connection) -> dict[str, Pause | None]:
    """Every queue of the platform with its pause, or None while it runs (the lists shown to people)."""
    current = paused(conn)
    return {q: current.get(q) for q in QUEUES}
