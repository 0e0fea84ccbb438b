"""One fair turn of one queue: top its Redis list up to the publish-ahead, tenants in fair order.

The outbox is the waiting room.  A queue's Redis list holds only what its
workers are about to take: the relay keeps `max(BOOKING_RELAY_AHEAD, in
flight)` messages ready (`room`), where the in-flight count, read from Redis,
is about the workers' prefetch, so the list grows with the workers the
autoscaler adds.  Whatever else is waiting stays in Postgres, where the next
turn can still put a newcomer first.  Without this the relay would push a
tenant's whole import into the list at once and every later message would
queue behind it, whoever's it is (the FIFO ordering, `publish.py`).

A turn, in one transaction:

1. take the queue's turn: `pg_try_advisory_xact_lock`, never waiting (a relay
   that does not get it leaves the queue to the relay that has it), so the
   scheduler's state is read and written by one relay at a time and several
   relays stay fair together (docs/lock-order.md);
2. count each tenant's due rows, up to `room` (the most one turn can take from
   a tenant), read their weights (their plans) and the queue's scheduler state
   (`fair_share_clocks`, `fair_share_tags`);
3. `fairshare.schedule` picks up to `room` messages;
4. claim those rows (`FOR UPDATE SKIP LOCKED`, each tenant's in the order they became due),
   enqueue them in the scheduled order in one Redis round trip, delete them,
   and write the state back.

If Redis fails the transaction rolls back: rows and state are as before.
"""

from __future__ import annotations

import time
from collections import deque

import dramatiq
import psycopg

from booking_core.messaging.ids import is_uuid
from booking_core.model import plans
from booking_scaling.depth import QueueDepth
from outbox_relay.fairshare import Tags, Waiting, schedule
from outbox_relay.publish import COLUMNS, counted, send

#: The advisory lock class of a queue's fair turn ("fair"); the second key is hashtext(queue).
TURN_LOCK = 0x66616972

#: Each tenant with due rows in a queue: its due rows up to the turn's budget, and its oldest row among them.
#: The scheduler never takes more than the budget from one tenant, so counting past it is waste:
#: the distinct tenants come from a skip scan of the (queue, tenant_id, available_at, id) index, one
#: descent per tenant, and each tenant's due rows are read in the order they became due, up to the
#: budget.  The index puts a tenant's due rows first, so the scan stops at its first row not yet due: a
#: turn costs O(tenants x budget) whatever the backlog, due or waiting out a retry's backoff.
#: `statement_timestamp()`, not `clock_timestamp()`: a volatile bound cannot be an index condition, and
#: a filter would read every row still waiting (`GROUP BY tenant_id` over every due row cost O(rows)).
WAITING = """
WITH RECURSIVE tenants AS (
    (SELECT tenant_id FROM outbox WHERE queue = %(queue)s ORDER BY tenant_id LIMIT 1)
  UNION ALL
    SELECT (SELECT o.tenant_id FROM outbox o WHERE o.queue = %(queue)s AND o.tenant_id > t.tenant_id
            ORDER BY o.tenant_id LIMIT 1)
    FROM tenants t WHERE t.tenant_id IS NOT NULL
)
SELECT t.tenant_id, due.n, due.head FROM tenants t CROSS JOIN LATERAL (
    SELECT count(*)::int AS n, min(id) AS head FROM (
        SELECT id FROM outbox o WHERE o.queue = %(queue)s AND o.tenant_id = t.tenant_id
          AND o.available_at <= statement_timestamp() ORDER BY o.available_at, o.id LIMIT %(budget)s) rows) due
WHERE t.tenant_id IS NOT NULL AND due.n > 0
"""
#: The rows the schedule chose, each tenant's in the order `WAITING` counted them (`due`: that order's key).
_CLAIM = (f"SELECT o.* FROM unnest(%s::text[], %s::int[]) AS p(tenant_id, n) CROSS JOIN LATERAL"
          f" (SELECT {COLUMNS}, tenant_id, available_at AS due FROM outbox"
          f" WHERE queue = %s AND outbox.tenant_id = p.tenant_id AND available_at <= statement_timestamp()"
          f" ORDER BY available_at, id LIMIT p.n FOR UPDATE SKIP LOCKED) o")


def room(depth: QueueDepth, ahead: int) -> int:
    """How many messages the queue may take now: max(ahead, its in-flight count) minus what is ready."""
    return max(0, max(ahead, depth.in_flight) - depth.ready)


def due_tenants(conn: psycopg.Connection, queue: str, budget: int) -> list[dict]:
    """`WAITING` for `queue`, planned as it must be; call it in the turn's transaction (the setting is local to it).

    Each tenant's first due rows by the index's order, never a bitmap of all its rows and a sort:
    the planner, expecting few rows per tenant, would otherwise read each tenant's every row.
    """
    conn.execute("SET LOCAL enable_bitmapscan = off")
    return conn.execute(WAITING, {"queue": queue, "budget": budget}).fetchall()


def _load(conn: psycopg.Connection, queue: str, tenants: list[str]) -> Tags:
    clock = conn.execute("SELECT vtime FROM fair_share_clocks WHERE queue = %s", (queue,)).fetchone()
    rows = conn.execute("SELECT tenant_id, finish FROM fair_share_tags WHERE queue = %s AND tenant_id = ANY(%s)",
                        (queue, tenants)).fetchall()
    return Tags(clock["vtime"] if clock else 0.0, {r["tenant_id"]: r["finish"] for r in rows})


def _save(conn: psycopg.Connection, queue: str, tags: Tags) -> None:
    conn.execute("INSERT INTO fair_share_clocks (queue, vtime) VALUES (%s, %s)"
                 " ON CONFLICT (queue) DO UPDATE SET vtime = EXCLUDED.vtime", (queue, tags.vtime))
    conn.execute("DELETE FROM fair_share_tags WHERE queue = %s AND finish <= %s", (queue, tags.vtime))
    if tags.finish:
        tenants, finishes = zip(*tags.finish.items(), strict=True)
        conn.execute("INSERT INTO fair_share_tags (queue, tenant_id, finish)"
                     " SELECT %s, t, f FROM unnest(%s::text[], %s::float8[]) AS u(t, f)"
                     " ON CONFLICT (queue, tenant_id) DO UPDATE SET finish = EXCLUDED.finish",
                     (queue, list(tenants), list(finishes)))


def publish_fair(conn: psycopg.Connection, broker: dramatiq.Broker, queue: str, budget: int,
                 default_weight: int) -> int:
    """Publish up to `budget` of `queue`'s due outbox rows in fair order; return how many (0: not our turn)."""
    start = time.perf_counter()
    with conn.transaction():
        turn = conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS ours", (TURN_LOCK, queue))
        if budget <= 0 or not turn.fetchone()["ours"]:
            return 0
        waiting = due_tenants(conn, queue, budget)
        if not waiting:
            return 0
        tenants = [w["tenant_id"] for w in waiting]
        weight = plans.weights(conn, [t for t in tenants if is_uuid(t)], default_weight)
        chosen = schedule(_load(conn, queue, tenants),
                          [Waiting(w["tenant_id"], w["n"], weight.get(w["tenant_id"], default_weight), w["head"])
                           for w in waiting], budget)
        counts = chosen.counts()
        claimed = conn.execute(_CLAIM, (list(counts), list(counts.values()), queue)).fetchall()
        by_tenant: dict[str, deque[dict]] = {}
        for row in sorted(claimed, key=lambda r: (r["due"], r["id"])):
            by_tenant.setdefault(row["tenant_id"], deque()).append(row)
        rows = [by_tenant[t].popleft() for t in chosen.order if by_tenant.get(t)]
        send(conn, broker, rows)
        _save(conn, queue, chosen.tags)
    return counted(rows, start)
