"""A worker's own booking event (email.sent, invoice.issued), appended to the audit chain with its work.

Why not through the audit worker: sent through the outbox, each such event
cost an outbox insert, a relay publish and delete, and an audit-worker
transaction (about three commits, and a queue hop, per event).  The issue 9
benchmarks counted those commits as a third of the whole pipeline's; every one
is a commit the accept path may wait behind.  Appended in the transaction that
records the work, the event is exactly once by construction: its id is derived
from the booking and unique in `audit_log`, and it commits with the work or
not at all.

The work must never depend on the chain: an email already sent has to be
recorded.  So the append runs in its savepoint with a short lock timeout; if it
fails (the tenant's chain lock is contended past the timeout, or the chain is
broken), the savepoint is rolled back and the event goes through the outbox to
the audit worker as before, which retries it and dead-letters it visibly.

The caller writes its task's state after this append (docs/lock-order.md: the
chain before the task rows), so the short timeout is put back once the append
is done: the state write waits as long as it must, and an email already sent is
always recorded.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg.rows import tuple_row

from booking_core.audit import chain
from booking_core.messaging import outbox

log = logging.getLogger(__name__)

#: How long the work's transaction may wait for its tenant's audit chain before handing the event over.
LOCK_TIMEOUT_MS = 2000
#: Set the transaction's lock_timeout, returning the one it replaces (OFFSET 0: read before set).
_SHORT_WAIT = ("SELECT s.old, set_config('lock_timeout', %s, true)"
               " FROM (SELECT current_setting('lock_timeout') AS old OFFSET 0) s")


def record(conn: psycopg.Connection, message: outbox.OutboxMessage) -> str:
    """Append `message`'s audit event in the caller's open transaction: "appended", or "queued" to the outbox."""
    old = conn.cursor(row_factory=tuple_row).execute(_SHORT_WAIT, (f"{LOCK_TIMEOUT_MS}ms",)).fetchone()[0]
    try:
        chain.append(conn, message.payload)  # its own savepoint: a failure undoes the append alone
        outcome = "appended"
    except (psycopg.Error, chain.AuditChainBroken, chain.InvalidAuditEvent) as exc:
        log.warning("audit event %s of booking %s handed to the audit worker: %s: %s",
                    message.payload.get("kind"), message.payload.get("booking_id"), type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "")
        outbox.add(conn, [message])
        outcome = "queued"
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (old,))
    return outcome
