"""What waits, reported each second or so: the outbox's backlog per queue (for the autoscalers) and per tenant.

Under the fair ordering a backlog waits mostly in the outbox, where Redis's
depth cannot see it.  Every `outboxmirror.REPORT_SECONDS` or so one relay
(whose turn, and how often: `report_turn`) counts the outbox by queue and
tenant (`booking_core.queues.tenant_backlog`, one grouped query, which the ops
console's queues page reads too) and

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

from booking_core.queues import tenant_backlog
from booking_scaling import outboxmirror
from booking_scaling.depth import QueueDepth
from booking_scaling.outboxmirror import OutboxBacklog

#: Tenants named per queue in the per-tenant gauges; the rest are summed as `other`.
TOP_TENANTS = 10
OTHER = "other"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


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


def top_tenants(rows: list[dict], names: dict[str, str], n: int = TOP_TENANTS) -> list[TenantBacklog]:
    """Per queue, the `n` tenants with the most rows (due or later) by label, then `other` for the rest."""
    return _labelled(tenant_backlog.rank(rows, n), names)


def _labelled(ranking: dict[str, tenant_backlog.QueueTenants], names: dict[str, str]) -> list[TenantBacklog]:
    out: list[TenantBacklog] = []
    for queue, ranked in ranking.items():
        named: dict[str, TenantBacklog] = {}
        for t in ranked.top:
            label = tenant_label(names.get(t.tenant_id), t.tenant_id)
            if label == OTHER or label in named:  # two names that reduce alike: keep them apart
                label = f"{label}~{t.tenant_id[:8]}"
            named[label] = TenantBacklog(queue, label, t.messages, t.oldest_ms)
        out += named.values()
        if ranked.rest_tenants:
            out.append(TenantBacklog(queue, OTHER, ranked.rest_messages, ranked.rest_oldest_ms))
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
    rows = tenant_backlog.read(conn)
    now_ms = int(time.time() * 1000)
    totals = queue_totals(rows, queues)
    ready_age = {d.queue: d.oldest_ready_age_ms for d in depths}
    oldest = {b.queue: max(b.oldest_age_ms(now_ms), ready_age.get(b.queue, 0)) for b in totals}
    ranking = tenant_backlog.rank(rows, TOP_TENANTS)  # once: it sorts every tenant of every queue
    return Report(now_ms, totals, oldest, _labelled(ranking, tenant_backlog.top_names(conn, ranking)))


def mirror(client: redis.Redis, namespace: str, report: Report, ttl_ms: int = outboxmirror.TTL_MS) -> None:
    """Write the per-queue totals to Redis for the autoscalers."""
    outboxmirror.write(client, namespace, report.queues, ttl_ms)
