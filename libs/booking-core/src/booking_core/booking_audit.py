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
"""

from __future__ import annotations

import logging

import psycopg

from booking_core import audit, outbox

log = logging.getLogger(__name__)

#: How long the work's transaction may wait for its tenant's audit chain before handing the event over.
LOCK_TIMEOUT_MS = 2000


def record(conn: psycopg.Connection, message: outbox.OutboxMessage) -> str:
    """Append `message`'s audit event in the caller's open transaction: "appended", or "queued" to the outbox."""
    # For the rest of the caller's transaction, which ends right after this append.
    conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
    try:
        audit.append(conn, message.payload)  # its own savepoint: a failure undoes the append alone
        return "appended"
    except (psycopg.Error, audit.AuditChainBroken, audit.InvalidAuditEvent) as exc:
        log.warning("audit event %s of booking %s handed to the audit worker: %s: %s",
                    message.payload.get("kind"), message.payload.get("booking_id"), type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "")
        outbox.add(conn, [message])
        return "queued"
