"""What one fair turn of the relay costs as the backlog grows, and what the console's "who is filling it" costs.

Embedded Postgres and Redis.  For each backlog size (`--sizes`, due rows per
queue: the email, invoice and audit queues each hold that many, as an import of
that many bookings leaves them) and tenant count (`--tenants`, the rows spread
evenly over real tenants), it times, in alternating order within each round:

- `group_by`: `outbox_relay.fair.publish_fair` with the turn's first query as it
  was, `GROUP BY tenant_id` over every due row of the queue (the baseline);
- `per_tenant`: the same turn with the query it has now, `fair.WAITING`
  (a skip scan of the tenants, then each one's due rows up to the budget);
- `group_by_query`, `per_tenant_query`: those two queries alone, as the turn plans them;
- `console`: the queues page's read, `tenant_backlog.read` + `rank` (every queue).

Each turn is the real one (advisory lock, weights, scheduler state, claim,
enqueue of `--budget` messages to Redis, delete) inside a transaction rolled
back afterwards, so every turn sees the same backlog; the Redis queue is
emptied between turns, outside the timing.  The outbox is vacuumed and analysed
after loading, as autovacuum keeps it.  Medians of `--turns` per mode and round,
then the median over `--rounds`; EXPLAIN ANALYZE of the three at the largest size.

    .venv/bin/python bench/fair_turn.py [--sizes 300,2000,20000] [--tenants 1,50] [--rounds 5] [--turns 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import loadgen
import report  # bench/report.py: a script's own folder is on sys.path

from booking_core import db
from booking_core.config import Settings
from booking_core.messaging.contracts import QUEUES
from booking_core.model import tenants
from booking_core.queues import tenant_backlog
from booking_core.worker.broker import make_broker
from outbox_relay import fair

#: The turn's first query before it read per tenant: every due row of the queue, grouped.
GROUP_BY = ("SELECT tenant_id, count(*)::int AS n, min(id) AS head FROM outbox"
            " WHERE queue = %(queue)s AND available_at <= clock_timestamp() GROUP BY tenant_id")
QUEUE = "email"


def load(conn, size: int, tenant_ids: list[str]) -> None:
    conn.execute("DELETE FROM outbox")
    conn.execute("DELETE FROM fair_share_tags")
    conn.execute("DELETE FROM fair_share_clocks")
    for queue in QUEUES:
        conn.execute(
            "INSERT INTO outbox (message_id, queue, actor, payload)"
            " SELECT gen_random_uuid(), %s, 'bench', jsonb_build_object('tenant_id', (%s::text[])[1 + i %% %s],"
            " 'booking_id', gen_random_uuid()::text, 'task', %s::text)"
            " FROM generate_series(0, %s - 1) AS i", (queue, tenant_ids, len(tenant_ids), queue, size))
    conn.execute("VACUUM ANALYZE outbox")


def turn_seconds(conn, broker, budget: int, waiting_sql: str, turns: int) -> float:
    fair.WAITING = waiting_sql
    times = []
    for _ in range(turns):
        with conn.transaction(force_rollback=True):
            t0 = time.perf_counter()
            n = fair.publish_fair(conn, broker, QUEUE, budget, 1)
            times.append(time.perf_counter() - t0)
        assert n == budget, f"a turn published {n}, not {budget}"
        broker.flush(QUEUE)
    return statistics.median(times)


def query_seconds(conn, sql: str, budget: int, turns: int) -> float:
    """The turn's first query alone, planned as in the turn."""
    times = []
    for _ in range(turns):
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL enable_bitmapscan = off")
            t0 = time.perf_counter()
            conn.execute(sql, {"queue": QUEUE, "budget": budget}).fetchall()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def console_seconds(conn, turns: int) -> float:
    times = []
    for _ in range(turns):
        t0 = time.perf_counter()
        tenant_backlog.rank(tenant_backlog.read(conn), 10)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def explain(conn, sql: str, params: dict | None = None) -> str:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params or {}).fetchall()
    return "\n".join(r["QUERY PLAN"] for r in rows)


def measure(settings: Settings, sizes: list[int], tenant_counts: list[int], rounds: int, turns: int,
            budget: int) -> dict:
    new_sql = fair.WAITING
    broker = make_broker(settings)
    broker.declare_queue(QUEUE)
    modes = {"group_by": lambda c: turn_seconds(c, broker, budget, GROUP_BY, turns),
             "per_tenant": lambda c: turn_seconds(c, broker, budget, new_sql, turns),
             "group_by_query": lambda c: query_seconds(c, GROUP_BY, budget, turns),
             "per_tenant_query": lambda c: query_seconds(c, new_sql, budget, turns),
             "console": lambda c: console_seconds(c, turns)}
    out: list[dict] = []
    plans: dict[str, str] = {}
    with db.connect(settings.database_url, autocommit=True) as conn:
        every = [tenants.ensure_tenant(conn, f"bench-{i}")["id"] for i in range(max(tenant_counts))]
        for size in sizes:
            for count in tenant_counts:
                load(conn, size, every[:count])
                got: dict[str, list[float]] = {m: [] for m in modes}
                for r in range(rounds):
                    order = list(modes) if r % 2 == 0 else list(reversed(modes))
                    for mode in order:
                        got[mode].append(modes[mode](conn))
                row = {"due_rows_per_queue": size, "tenants": count,
                       **{f"{m}_ms": round(statistics.median(v) * 1000, 3) for m, v in got.items()}}
                row["turn_group_by_over_per_tenant"] = round(row["group_by_ms"] / row["per_tenant_ms"], 2)
                row["query_group_by_over_per_tenant"] = round(row["group_by_query_ms"] / row["per_tenant_query_ms"], 2)
                out.append(row)
                print(row, flush=True)
                if size == max(sizes) and count == max(tenant_counts):
                    params = {"queue": QUEUE, "budget": budget}
                    with conn.transaction(force_rollback=True):  # as the turn plans it
                        conn.execute("SET LOCAL enable_bitmapscan = off")
                        per_tenant = explain(conn, new_sql, params)
                    plans = {"group_by": explain(conn, GROUP_BY, params), "per_tenant": per_tenant,
                             "console": explain(conn, tenant_backlog.SUMMARY)}
    fair.WAITING = new_sql
    broker.close()
    return {"budget": budget, "results": out, "explain_at_largest": plans}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="300,2000,20000")
    ap.add_argument("--tenants", default="1,50")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--budget", type=int, default=16, help="messages per turn (BOOKING_RELAY_AHEAD's default)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fair_turn.json")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(t) for t in args.tenants.split(",")]
    load_before = os.getloadavg()
    with loadgen.embedded_settings() as settings:
        result = measure(settings, sizes, counts, args.rounds, args.turns, args.budget)
    report.write({"command": report.command(), "load_average_before": load_before,
                  "load_average_after": os.getloadavg(), **result}, args.out)


if __name__ == "__main__":
    sys.exit(main())
