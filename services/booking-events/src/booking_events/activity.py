"""What the queues are doing lately: throughput from Postgres, live workers from Dramatiq's Redis keys.

Throughput is counted from the booking event log (migration 0004): each task
that turned `done` left a row with the time it committed, so "done per minute
over the last 5 and 15 minutes" is one indexed count (migration 0006's partial
index), the same for every worker, local or in Kubernetes.

Workers are counted from what Dramatiq itself writes to Redis, so the number
is the same whoever scaled them (`bookingctl up`'s autoscaler, the kopf
operator, a human): every broker that talks to Redis stamps itself in
`ns:__heartbeats__` (a consuming worker does so at least once per fetch
timeout, about a second), and Dramatiq treats one not heard from within the
heartbeat timeout as dead.  The heartbeats do not say which queue a worker
consumes; a worker holding a queue's messages does show in that queue's
`ns:__acks__.<worker>.<queue>` set (booking_scaling.layout names these keys;
`activity.lua`, beside this module, reads them).  So per queue we report the worker
processes *consuming* it (each stamps itself, booking_core.queues.presence), those
*busy* with it, and overall the live Dramatiq processes (a process that only
publishes, such as the relay, stamps a heartbeat too while it publishes).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import psycopg
import redis

from booking_core.messaging.contracts import TASKS, WEBHOOK
from booking_core.queues import presence
from booking_scaling.layout import Layout

#: The script, beside this module; read at import, so a package built without it fails at once.
_WORKERS_LUA = resources.files(__package__).joinpath("activity.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Workers:
    """Live Dramatiq processes, and per queue those holding its messages right now."""

    live: int
    busy: dict[str, int]
    #: Worker processes consuming each queue (stamped within presence.TTL_MS), busy or idle.
    consuming: dict[str, int]


def workers(client: redis.Redis, namespace: str, queues: tuple[str, ...] | list[str],
            heartbeat_timeout_ms: int) -> Workers:
    """Read the heartbeats and ack sets in one script (a consistent instant)."""
    consumers = presence.key(namespace.replace("%", "%%"), "%s")
    row = client.eval(_WORKERS_LUA, 0, *Layout(namespace).lua_args(), consumers, str(heartbeat_timeout_ms),
                      str(presence.TTL_MS), *queues)
    n = len(queues)
    return Workers(live=int(row[0]), busy={q: int(v) for q, v in zip(queues, row[1:1 + n], strict=True)},
                   consuming={q: int(v) for q, v in zip(queues, row[1 + n:], strict=True)})


def throughput(conn: psycopg.Connection) -> dict[str, dict[str, float]]:
    """Tasks finished per minute, per task (webhook: deliveries delivered): {'email': {'per_min_5m': …}, …}."""
    rows = conn.execute(
        "SELECT task, count(*) FILTER (WHERE at > now() - interval '5 minutes') AS n5,"
        " count(*) AS n15 FROM booking_events"
        " WHERE state = 'done' AND at > now() - interval '15 minutes' GROUP BY task").fetchall()
    found = {r["task"]: r for r in rows}
    # Webhook deliveries are no booking task: their own table says when each was delivered.
    found[WEBHOOK.task] = conn.execute(
        "SELECT count(*) FILTER (WHERE delivered_at > now() - interval '5 minutes') AS n5, count(*) AS n15"
        " FROM webhook_deliveries WHERE state = 'delivered' AND delivered_at > now() - interval '15 minutes'"
    ).fetchone()
    return {t: {"per_min_5m": round(found[t]["n5"] / 5, 1) if t in found else 0.0,
                "per_min_15m": round(found[t]["n15"] / 15, 1) if t in found else 0.0} for t in (*TASKS, WEBHOOK.task)}
