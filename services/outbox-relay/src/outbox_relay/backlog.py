"""What waits, reported each second: the outbox's backlog per queue (for the autoscalers) and per tenant.

Under the fair ordering a backlog waits mostly in the outbox, where Redis's
depth cannot see it.  Every `outboxmirror.REPORT_SECONDS` the relay counts the
outbox by queue and tenant (one grouped query) and

- writes each queue's totals to Redis (`booking_scaling.outboxmirror`), which
  the kopf operator and the local runner add to the queue's own depth;
- publishes them as Prometheus gauges on its /metrics: the outbox backlog per
  queue, the age of each queue's oldest waiting task counting its time in the
  outbox, and the `TOP_TENANTS` tenants with the most waiting per queue, plus
  `other` for the rest, so the labels stay bounded whatever the tenant count.
  A tenant's label is its name reduced to `[A-Za-z0-9._-]` (64 characters at
  most; a name is tenant input and must not shape the exposition).

The ranking (`top_tenants`) and the label (`tenant_label`) are pure.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import psycopg
import redis

from booking_scaling import outboxmirror
from booking_scaling.depth import QueueDepth
from booking_scaling.outboxmirror import OutboxBacklog
from outbox_relay.fair import is_uuid

#: Tenants named per queue in the per-tenant gauges; the rest are summed as `other`.
TOP_TENANTS = 10
OTHER = "other"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

_SUMMARY = """
SELECT queue, tenant_id,
       count(*) FILTER (WHERE available_at <= clock_timestamp())::int AS waiting,
       count(*) FILTER (WHERE available_at > clock_timestamp())::int AS later,
       (extract(epoch FROM min(created_at) FILTER (WHERE available_at <= clock_timestamp())) * 1000)::bigint
           AS oldest_ms
FROM outbox GROUP BY queue, tenant_id
"""


@dataclass(frozen=True)
class TenantBacklog:
    """One tenant's rows of one queue in the outbox (`tenant` is a label, or `other`)."""

    queue: str
    tenant: str
    messages: int
    #: ms since the epoch of its oldest due row; 0 when none is due.
    oldest_ms: int = 0


def tenant_label(name: str | None, tenant_id: str) -> str:
    """A metric label for a tenant: its name with anything outside [A-Za-z0-9._-] made '_', else its id."""
    label = _UNSAFE.sub("_", name or "")[:64]
    return label if label.strip("_") else (_UNSAFE.sub("_", tenant_id)[:64] or "unknown")


def queue_totals(rows: list[dict], queues: tuple[str, ...]) -> list[OutboxBacklog]:
    """Each of `queues`' outbox totals from the grouped rows (zeros for a queue with none)."""
    out = {q: OutboxBacklog(q) for q in queues}
    for r in rows:
        b = out.get(r["queue"]) or OutboxBacklog(r["queue"])
        oldest = min((m for m in (b.oldest_ms, r["oldest_ms"] or 0) if m), default=0)
        out[r["queue"]] = OutboxBacklog(b.queue, b.waiting + r["waiting"], b.later + r["later"], oldest)
    return list(out.values())


def _ranked(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by queue, most rows (due or later) first, ties by tenant id."""
    by_queue: dict[str, list[dict]] = {}
    for r in rows:
        by_queue.setdefault(r["queue"], []).append(r)
    for group in by_queue.values():
        group.sort(key=lambda r: (-(r["waiting"] + r["later"]), r["tenant_id"]))
    return by_queue


def leaders(rows: list[dict], n: int = TOP_TENANTS) -> set[str]:
    """The tenant ids among some queue's top `n`: the only names a report needs."""
    return {r["tenant_id"] for group in _ranked(rows).values() for r in group[:n]}


def top_tenants(rows: list[dict], names: dict[str, str], n: int = TOP_TENANTS) -> list[TenantBacklog]:
    """Per queue, the `n` tenants with the most rows (due or later) by label, then `other` for the rest."""
    out: list[TenantBacklog] = []
    for queue, group in sorted(_ranked(rows).items()):
        named: dict[str, TenantBacklog] = {}
        for r in group[:n]:
            label = tenant_label(names.get(r["tenant_id"]), r["tenant_id"])
            if label == OTHER or label in named:  # two names that reduce alike: keep them apart
                label = f"{label}~{r['tenant_id'][:8]}"
            named[label] = TenantBacklog(queue, label, r["waiting"] + r["later"], r["oldest_ms"] or 0)
        out += named.values()
        rest = group[n:]
        if rest:
            oldest = min((r["oldest_ms"] for r in rest if r["oldest_ms"]), default=0)
            out.append(TenantBacklog(queue, OTHER, sum(r["waiting"] + r["later"] for r in rest), oldest))
    return out


@dataclass(frozen=True)
class Report:
    """One reading: per queue totals and oldest waiting age, per tenant the top ones."""

    at_ms: int
    queues: list[OutboxBacklog]
    #: Each queue's oldest waiting task's age (ms), in the outbox or ready in Redis.
    oldest_age_ms: dict[str, int]
    tenants: list[TenantBacklog]


def read(conn: psycopg.Connection, depths: list[QueueDepth], queues: tuple[str, ...]) -> Report:
    """Count the outbox and combine it with Redis's depth into one Report."""
    rows = conn.execute(_SUMMARY).fetchall()
    now_ms = int(time.time() * 1000)
    totals = queue_totals(rows, queues)
    ready_age = {d.queue: d.oldest_ready_age_ms for d in depths}
    oldest = {b.queue: max(b.oldest_age_ms(now_ms), ready_age.get(b.queue, 0)) for b in totals}
    ids = [t for t in leaders(rows) if is_uuid(t)]
    names = {r["id"]: r["name"] for r in conn.execute(
        "SELECT id::text AS id, name FROM tenants WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()} if ids else {}
    return Report(now_ms, totals, oldest, top_tenants(rows, names))


def mirror(client: redis.Redis, namespace: str, report: Report) -> None:
    """Write the per-queue totals to Redis for the autoscalers."""
    outboxmirror.write(client, namespace, report.queues)
