"""Who is filling each queue, and since when: the outbox's backlog per queue and tenant, top N first.

Under the fair order (`BOOKING_RELAY_ORDER=fair`) a queue's backlog waits in
the outbox: the relay keeps only a bounded publish-ahead in Redis.  So the
outbox is where the per-tenant answer is, and it is authoritative: its rows
*are* the waiting tasks, in the same transaction as the bookings that made
them, so no copy can drift from it.  One grouped query (`SUMMARY`) counts it
per queue and tenant; the relay reads it each second for its metrics and the
autoscalers, the ops console for its queues page.  Redis's share (the
publish-ahead, at most `max(BOOKING_RELAY_AHEAD, in flight)` per queue) is
counted per queue by `booking_scaling.depth`, not per tenant: reading it per
tenant would mean parsing every ready message for a few messages' difference.

`rank` (pure) orders one reading: per queue, the `n` tenants with the most rows
first (due now or waiting out a retry's backoff), ties by tenant id so the
order is stable between readings, and the rest summed, so whatever the number
of tenants a page or a metric shows at most `n + 1` lines per queue.
`top` is one such reading with the tenants' names, as every page and command
shows it; `as_json` (pure) is the shape the ops API and `bookingctl queues
--json` give it; `SharedReading` spares a process more than one reading per few seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psycopg

from booking_core import db
from booking_core.config import Settings
from booking_core.messaging import ids

#: Tenants named per queue by the console, the ops API and `bookingctl queues`; the rest are summed.
TOP = 10
#: How much of a tenant id that is not a tenant's (payload text) is repeated.
SHOWN_ID_CHARS = 40

#: Per queue and tenant: rows due now, rows waiting out a retry's backoff, and the oldest due row's
#: creation (ms since the epoch; NULL when none is due).  A row of no tenant has tenant_id ''.
SUMMARY = """
SELECT queue, tenant_id,
       count(*) FILTER (WHERE available_at <= clock_timestamp())::int AS waiting,
       count(*) FILTER (WHERE available_at > clock_timestamp())::int AS later,
       (extract(epoch FROM min(created_at) FILTER (WHERE available_at <= clock_timestamp())) * 1000)::bigint
           AS oldest_ms
FROM outbox GROUP BY queue, tenant_id
"""


@dataclass(frozen=True)
class TenantRows:
    """One tenant's rows of one queue in the outbox."""

    tenant_id: str
    waiting: int
    later: int = 0
    #: ms since the epoch of its oldest due row; 0 when none is due.
    oldest_ms: int = 0

    @property
    def messages(self) -> int:
        return self.waiting + self.later


@dataclass(frozen=True)
class QueueTenants:
    """One queue's top tenants by rows, most first, and what the rest hold together."""

    queue: str
    top: list[TenantRows]
    rest_tenants: int = 0
    rest_messages: int = 0
    #: ms since the epoch of the rest's oldest due row; 0 when none is due.
    rest_oldest_ms: int = 0


def rank(rows: list[dict], n: int) -> dict[str, QueueTenants]:
    """`SUMMARY`'s rows as each queue's top `n` tenants by rows (due or later), ties by tenant id."""
    by_queue: dict[str, list[TenantRows]] = {}
    for r in rows:
        by_queue.setdefault(r["queue"], []).append(
            TenantRows(r["tenant_id"], r["waiting"], r["later"], r["oldest_ms"] or 0))
    out: dict[str, QueueTenants] = {}
    for queue, group in sorted(by_queue.items()):
        group.sort(key=lambda t: (-t.messages, t.tenant_id))
        rest = group[n:]
        out[queue] = QueueTenants(queue, group[:n], len(rest), sum(t.messages for t in rest),
                                  min((t.oldest_ms for t in rest if t.oldest_ms), default=0))
    return out


def read(conn: psycopg.Connection) -> list[dict]:
    """`SUMMARY` now: one row per queue and tenant with anything in the outbox."""
    return conn.execute(SUMMARY).fetchall()


def names(conn: psycopg.Connection, tenant_ids: list[str]) -> dict[str, str]:
    """The names of those of `tenant_ids` that are tenants (the rest, '' or any other text, are not looked up)."""
    known = [t for t in tenant_ids if ids.is_uuid(t)]
    if not known:
        return {}
    return {r["id"]: r["name"] for r in conn.execute(
        "SELECT id::text AS id, name FROM tenants WHERE id = ANY(%s::uuid[])", (known,)).fetchall()}


def top_names(conn: psycopg.Connection, ranked: dict[str, QueueTenants]) -> dict[str, str]:
    """The names of the tenants a ranking shows (its top ones; the rest are summed, never named)."""
    return names(conn, sorted({t.tenant_id for q in ranked.values() for t in q.top}))


def top(conn: psycopg.Connection, n: int = TOP) -> tuple[dict[str, QueueTenants], dict[str, str]]:
    """(each queue's top `n` tenants, the names of those that are tenants): one reading, as shown to people."""
    ranked = rank(read(conn), n)
    return ranked, top_names(conn, ranked)


def shown_name(tenant_id: str, name: str | None) -> str:
    """How a page or a command names an outbox row's tenant: its name, else a bounded copy of the id as
    written (payload text, quoted so that it reads as data), else "(no tenant)"."""
    if name is not None:
        return name
    return f"(unknown tenant {tenant_id[:SHOWN_ID_CHARS]!r})" if tenant_id else "(no tenant)"


def _age_seconds(oldest_ms: int, now_ms: int) -> float:
    return round(max(0, now_ms - oldest_ms) / 1000, 3) if oldest_ms else 0.0


def as_json(ranked: QueueTenants | None, names: dict[str, str], now_ms: int) -> dict:
    """One queue's ranking as JSON-ready data: `top_tenants` (id, name or null, waiting, later, the oldest
    due row's age in seconds, 0 when none is due) and `other_tenants` (how many, their rows, their oldest)."""
    ranked = ranked or QueueTenants("", [])
    return {"top_tenants": [{"tenant_id": t.tenant_id[:SHOWN_ID_CHARS], "name": names.get(t.tenant_id),
                             "waiting": t.waiting, "later": t.later,
                             "oldest_waiting_age_seconds": _age_seconds(t.oldest_ms, now_ms)} for t in ranked.top],
            "other_tenants": {"tenants": ranked.rest_tenants, "messages": ranked.rest_messages,
                              "oldest_waiting_age_seconds": _age_seconds(ranked.rest_oldest_ms, now_ms)}}


class SharedReading:
    """Who fills the queues, read at most once per `ttl` seconds by this process, whoever asks.

    It is one aggregate over the whole outbox (tens of ms at 20,000 rows a queue,
    bench/fair_turn.py), and every open queues page, API poll or command asks: with
    this, any number of them cost one reading per `ttl` per process.  Callers that
    arrive while it is being read wait for that reading rather than start their own.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._key = ""
        self._value: tuple[dict[str, QueueTenants], dict[str, str]] = ({}, {})

    def get(self, settings: Settings, conn: psycopg.Connection | None = None,
            ) -> tuple[dict[str, QueueTenants], dict[str, str]]:
        """(each queue's top tenants, their names), at most `ttl` seconds old.

        A reading is made on `conn` when the caller has one (the API's request connection, from
        its own bounded pool: an API process must not open booking_core's pool beside it), else
        on a connection of booking_core's pool.
        """
        with self._lock:
            if self._key != settings.database_url or time.monotonic() - self._at >= self.ttl:
                if conn is not None:
                    reading = top(conn)
                else:
                    with db.pool(settings.database_url, autocommit=True).connection() as c:
                        reading = top(c)
                self._at, self._key, self._value = time.monotonic(), settings.database_url, reading
            return self._value
