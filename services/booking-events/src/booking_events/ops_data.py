"""The console's reads and actions: booking_core's own functions, run on a pooled connection.

No SQL of the console's own beyond glue: queue depth is `QueueReader.snapshot`
(as the API's /ops/queues and the autoscalers), dead letters are
`booking_core.tasks.deadletters` (as the API and `bookingctl dlq`), audit is
`booking_core.audit.chain`.  Everything here is blocking psycopg/redis; the async
handlers call it with `asyncio.to_thread`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from booking_core import db
from booking_core.audit import chain
from booking_core.config import Settings
from booking_core.messaging.contracts import CONTRACTS, QUEUES, WEBHOOK
from booking_core.model import bookings, tenants
from booking_core.ops import bulkjobs, filters
from booking_core.queues import pauses, tenant_backlog
from booking_core.tasks import deadletters
from booking_events import activity
from booking_events.ops_render import age
from booking_scaling.depth import QueueReader

#: Tenants shown per queue on the queues page, most rows first; the rest are one summed line.
TOP_TENANTS = tenant_backlog.TOP
SharedReading = tenant_backlog.SharedReading

#: Shared by the queues page and its streams; as old as their refresh at most.
WHO_FILLS = SharedReading(ttl=2.0)

#: The task each queue's messages do (one queue per task: docs/architecture.md, decision 1).
_TASK_OF_QUEUE = {c.queue: c.task for c in (*CONTRACTS.values(), WEBHOOK)}


def conn(settings: Settings):
    """A pooled autocommit connection: each booking_core action runs its own transactions."""
    return db.pool(settings.database_url, autocommit=True).connection()


def queue_fields(settings: Settings, client: redis.Redis) -> dict[str, str]:
    """Every figure of the queues page as display text, keyed `<queue>.<figure>` (the page and its stream)."""
    fields: dict[str, str] = {"read_at": datetime.now(UTC).strftime("%H:%M:%S UTC"), "redis_error": ""}
    with conn(settings) as c:
        rates = activity.throughput(c)
        dead = deadletters.open_by_queue(c)
        held = pauses.paused(c)
        backlog, names = WHO_FILLS.get(settings, c)  # on this connection: not a second one from the pool
    fields |= tenant_fields(backlog, names, int(datetime.now(UTC).timestamp() * 1000))
    for q in QUEUES:
        rate = rates[_TASK_OF_QUEUE[q]]
        fields |= {f"{q}.dead": str(dead[q]), f"{q}.per_min_5m": f"{rate['per_min_5m']:g}",
                   f"{q}.per_min_15m": f"{rate['per_min_15m']:g}", f"{q}.paused": paused_text(held.get(q))}
    try:
        depths = QueueReader(client, settings.redis_namespace).snapshot(QUEUES)
        workers = activity.workers(client, settings.redis_namespace, QUEUES, settings.heartbeat_timeout_ms)
    except redis.RedisError as e:
        fields["redis_error"] = f"Redis did not answer ({type(e).__name__}); depths and workers are unknown."
        for q in QUEUES:
            fields |= {f"{q}.{k}": "?" for k in ("ready", "in_flight", "delayed", "oldest", "busy", "workers")}
        fields["workers.live"] = "?"
        return fields
    for d in depths:
        fields |= {f"{d.queue}.ready": str(d.ready), f"{d.queue}.in_flight": str(d.in_flight),
                   f"{d.queue}.delayed": str(d.delayed),
                   f"{d.queue}.oldest": age(d.oldest_ready_age_ms) if d.ready else "–",
                   f"{d.queue}.busy": str(workers.busy[d.queue]),
                   f"{d.queue}.workers": str(workers.consuming[d.queue])}
    fields["workers.live"] = str(workers.live)
    return fields


def tenant_fields(backlog: dict[str, tenant_backlog.QueueTenants], names: dict[str, str], now_ms: int,
                  queues: tuple[str, ...] = QUEUES, n: int = TOP_TENANTS) -> dict[str, str]:
    """The queues page's "who is filling it" slots as display text: `<queue>.tenant<i>.<figure>` for i < n
    (an empty name hides the slot's row), `<queue>.tenants.rest` and `<queue>.tenants.none`."""
    fields: dict[str, str] = {}
    for q in queues:
        ranked = backlog.get(q) or tenant_backlog.QueueTenants(q, [])
        for i in range(n):
            t = ranked.top[i] if i < len(ranked.top) else None
            slot = f"{q}.tenant{i}"
            fields |= {f"{slot}.name": tenant_name(t.tenant_id, names) if t else "",
                       f"{slot}.waiting": str(t.waiting) if t else "",
                       f"{slot}.later": str(t.later) if t else "",
                       f"{slot}.oldest": _since(t.oldest_ms, now_ms) if t else ""}
        fields[f"{q}.tenants.rest"] = (
            f"and {ranked.rest_tenants} more tenant{'s' * (ranked.rest_tenants != 1)}: {ranked.rest_messages}"
            f" waiting or retrying later, the oldest waiting {_since(ranked.rest_oldest_ms, now_ms)}"
            if ranked.rest_tenants else "")
        fields[f"{q}.tenants.none"] = "" if ranked.top else "nothing waits in the outbox"
    return fields


def tenant_name(tenant_id: str, names: dict[str, str]) -> str:
    """How the page names an outbox row's tenant (tenant_backlog.shown_name, as `bookingctl queues` does)."""
    return tenant_backlog.shown_name(tenant_id, names.get(tenant_id))


def _since(oldest_ms: int, now_ms: int) -> str:
    return age(max(0, now_ms - oldest_ms)) if oldest_ms else "–"


def paused_text(p: pauses.Pause | None) -> str:
    """How the queues page says a queue's pause state (the page and its stream)."""
    if p is None:
        return "running"
    why = f": {p.reason}" if p.reason else ""
    return f"paused by {p.paused_by} at {p.paused_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC{why}"


def set_paused(settings: Settings, queue: str, paused: bool, actor: str, reason: str = "") -> bool:
    """Pause or resume `queue` through booking_core.queues.pauses (as the API and bookingctl); whether it changed."""
    with conn(settings) as c:
        if paused:
            return pauses.pause(c, queue, actor=actor, reason=reason)
        return pauses.resume(c, queue, actor=actor)


@dataclass(frozen=True)
class LetterPage:
    letters: list[deadletters.DeadLetter]
    total: int
    tenant_names: dict[str, str]


def letter_page(settings: Settings, f: deadletters.Filter, *, limit: int, offset: int) -> LetterPage:
    with conn(settings) as c:
        letters = deadletters.list_dead(c, f, limit=limit, offset=offset)
        names = {t["id"]: t["name"] for t in tenants.list_tenants(c)}
        return LetterPage(letters, deadletters.count(c, f), names)


def tenant_list(settings: Settings) -> list[dict]:
    with conn(settings) as c:
        return tenants.list_tenants(c)


def letter_detail(settings: Settings, dead_id: str) -> tuple[deadletters.DeadLetter, dict | None, str] | None:
    """(the open letter, its booking with tasks, its tenant's name), or None."""
    with conn(settings) as c:
        try:
            letter = deadletters.find(c, dead_id)
        except deadletters.DeadLetterError:
            return None
        booking = bookings.get(c, None, letter.booking_id) if letter.booking_id else None
        name = next((t["name"] for t in tenants.list_tenants(c) if t["id"] == letter.tenant_id), "")
        return letter, booking, name


_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def trace_id(letter: deadletters.DeadLetter, booking: dict | None) -> str | None:
    """The trace the message belongs to: the booking's, else the W3C traceparent it carried (hex only)."""
    candidates = [booking.get("trace_id") if booking else None]
    parts = str((letter.options.get("trace_context") or {}).get("traceparent", "")).split("-")
    candidates.append(parts[1] if len(parts) == 4 else None)
    return next((c for c in candidates if c and _TRACE_ID.fullmatch(c)), None)


def trace_link(template: str, trace: str | None) -> str | None:
    """The trace's URL from BOOKING_TRACE_URL_TEMPLATE, or None (then the id is shown as text)."""
    return template.replace("{trace_id}", trace) if template and trace else None


def act_on_one(settings: Settings, client: redis.Redis, dead_id: str, action: str, actor: str) -> str | None:
    """Requeue or discard one open letter (audited as `actor`); None when done, else why not."""
    with conn(settings) as c:
        try:
            letter = deadletters.find(c, dead_id)
            (deadletters.requeue if action == "requeue" else deadletters.discard)(
                c, client, settings.redis_namespace, letter, actor=actor)
        except deadletters.DeadLetterError:
            return "This dead letter is no longer open: someone requeued or discarded it already."
    return None


def dry_run(settings: Settings, f: deadletters.Filter) -> int:
    with conn(settings) as c:
        return deadletters.count(c, f)


def resolve_filter(settings: Settings, f: filters.DeadLetterFilter) -> deadletters.Filter:
    """The filter with its tenant name looked up (filters.resolve); InvalidFilter when no tenant is called so."""
    with conn(settings) as c:
        return filters.resolve(c, f)


def start_job(settings: Settings, action: str, f: deadletters.Filter, actor: str) -> str:
    """Queue a bulk job for the runners (booking_core.ops.bulkjobs, as the API does); its id."""
    with conn(settings) as c:
        return bulkjobs.start(c, action, f, actor=actor)


def job(settings: Settings, job_id: str) -> bulkjobs.Job | None:
    with conn(settings) as c:
        return bulkjobs.get(c, job_id, stale_seconds=settings.bulk_job_stale_ms / 1000)


def booking_audit(settings: Settings, booking_id: str) -> tuple[dict | None, list[dict]]:
    with conn(settings) as c:
        return bookings.get(c, None, booking_id), chain.entries_for_booking(c, booking_id)


def verify_tenant(settings: Settings, tid: str) -> chain.ChainReport | None:
    with conn(settings) as c:
        reports = chain.verify(c, tid, max_problems=50)
    return reports[0] if reports else None
