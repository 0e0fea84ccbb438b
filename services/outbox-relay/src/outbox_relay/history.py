"""The reconciler leader's second chore: compacting the booking event log.

`outbox_relay.compaction` does one batch; this runs batches until the log's
settled part is done or `MAX_BATCHES` have run, pausing between them so the
deletes never come as one long burst of WAL that the accept path's commits
would queue behind.  It runs on the reconciler's thread and connection, only
on the leader, so one relay replica compacts and the publishing loop never
waits for it.
"""

from __future__ import annotations

import logging
import threading

import psycopg

from outbox_relay.compaction import compact_next
from outbox_relay.metrics import EVENTS_COMPACTED

log = logging.getLogger("outbox_relay.history")

#: Events looked at per batch (one short transaction each).
BATCH = 2_000
#: Batches per reconciler pass: up to 50,000 events.  With a pass every 30 s (the default) that keeps
#: up with about 180 bookings/s around the clock (nine events each), and catches up on a backlog of
#: history (a first upgrade) at 6 million events an hour.
MAX_BATCHES = 25
#: Pause between batches.
PAUSE_SECONDS = 0.05


def compact_history(conn: psycopg.Connection, keep_days: int, stop: threading.Event) -> int:
    """Compact what has settled since the last pass; return how many events were deleted."""
    deleted = 0
    for _ in range(MAX_BATCHES):
        done = compact_next(conn, keep_days=keep_days, limit=BATCH)
        deleted += done.deleted
        EVENTS_COMPACTED.inc(done.deleted)
        if done.settled < BATCH or stop.wait(PAUSE_SECONDS):
            break
    if deleted:
        log.info("event log: %d events older than %d days compacted to their task's final state", deleted, keep_days)
    return deleted
