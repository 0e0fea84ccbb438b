"""Compaction of the booking event log: old events keep only each task's final state.

`booking_events` (migration 0004) gets a row for every visible change of every
task: about nine per booking, more with retries.  The progress stream needs
the full history while a booking is in flight and for a while after; a month
later a client asking for a booking's events needs its outcome, not every
step.  So, once events are older than `keep_days`, each (booking, task)
keeps only its latest event and the rest are deleted: history stays
answerable (the stream replays the final states, ids only ever grow, and
Last-Event-ID still works) while the log grows with the bookings, not with
their transitions.

Compaction walks the log in id order from a stored cursor (migration 0008),
a batch at a time, and stops at the first event that is not yet old enough:
each pass reads only rows it has not read before, however many kept rows lie
behind it.  A task that changes again after its events were compacted (an
operator requeues a dead letter a month later) keeps its older final event
too; that is one row, not a leak worth a re-read.
"""

from __future__ import annotations

from typing import NamedTuple

import psycopg


class Compacted(NamedTuple):
    """One batch's outcome: events deleted, settled events looked at, and the cursor after them."""

    deleted: int
    settled: int
    last_id: int


_COMPACT = """
WITH scan AS (
    SELECT id, booking_id, task, at < clock_timestamp() - make_interval(days => %(days)s) AS old
    FROM booking_events WHERE id > %(after)s ORDER BY id LIMIT %(limit)s
), settled AS (
    -- The old events before the first young one: the cursor never passes an event it kept for age.
    SELECT id, booking_id, task FROM scan
    WHERE old AND id < coalesce((SELECT min(id) FROM scan WHERE NOT old), (SELECT max(id) FROM scan) + 1)
), gone AS (
    -- The statement's snapshot still sees rows it deletes, so each task's latest event survives.
    DELETE FROM booking_events e USING settled s
    WHERE e.id = s.id AND EXISTS (SELECT 1 FROM booking_events n
                                  WHERE n.booking_id = s.booking_id AND n.task = s.task AND n.id > s.id)
    RETURNING e.id
)
SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM settled) AS settled,
       coalesce((SELECT max(id) FROM settled), %(after)s) AS last
"""


def compact(conn: psycopg.Connection, *, keep_days: int, after_id: int, limit: int) -> Compacted:
    """Compact the settled events among the `limit` after `after_id`.

    An event is settled when it is older than `keep_days` and so is every event
    between `after_id` and it; of those, all but each task's latest are deleted.
    """
    row = conn.execute(_COMPACT, {"days": keep_days, "after": after_id, "limit": limit}).fetchone()
    return Compacted(row["deleted"], row["settled"], row["last"])


def compact_next(conn: psycopg.Connection, *, keep_days: int, limit: int = 2_000) -> Compacted:
    """One batch from the stored cursor, and the cursor moved, in one transaction.

    The caller repeats while a batch settles `limit` events (more may be waiting).
    Concurrent callers queue on the cursor row, so no batch is compacted twice.
    """
    with conn.transaction():
        after = conn.execute("SELECT last_id FROM booking_events_compaction FOR UPDATE").fetchone()["last_id"]
        done = compact(conn, keep_days=keep_days, after_id=after, limit=limit)
        if done.last_id != after:
            conn.execute("UPDATE booking_events_compaction SET last_id = %s", (done.last_id,))
    return done
