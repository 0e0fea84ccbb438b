"""What a quiet tenant's fair turn costs while another tenant's retries wait out their backoff in the outbox.

Embedded Postgres and Redis.  The quiet tenant has 1 due email row; the noisy
tenant has `--sizes` email rows not yet due (`available_at` an hour ahead, as
retries waiting out a backoff leave them; webhook retries back off up to 6 h).
For each size, in alternating order within each round, the real turn
(`outbox_relay.fair.publish_fair`: lock, weights, scheduler state, claim,
enqueue, delete, rolled back after each so every turn sees the same outbox) is
timed `--turns` times with:

- `before`: the index and queries as they were before migration 0014
  (`(queue, tenant_id, id)`, each tenant's rows in id order with
  `available_at <= clock_timestamp()` as a filter);
- `after`: as they are (`(queue, tenant_id, available_at, id)`, the bound an
  index condition, each tenant's rows in the order they became due).

The mode switches the index (dropped and built again, then `ANALYZE`) and the
two queries.  Reported per size and mode: the median turn over the rounds'
medians, the outbox tuples the turn read (table and indexes,
`pg_stat_get_xact_tuples_*`, the same in every turn), and before ÷ after.
The machine is shared: read the ratios, not the absolute figures.

    .venv/bin/python bench/fair_flood_turn.py [--sizes 0,20000,100000] [--rounds 5] [--turns 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path
import report  # bench/report.py: a script's own folder is on sys.path

from booking_core import db
from booking_core.config import Settings
from booking_core.model import tenants
from booking_core.worker.broker import make_broker
from outbox_relay import fair
from outbox_relay.publish import COLUMNS

QUEUE = "email"
#: The turn's two queries and the index before migration 0014 (the baseline).
BEFORE = {
    "index": "CREATE INDEX outbox_queue_tenant ON outbox (queue, tenant_id, id)",
    "drop": "DROP INDEX IF EXISTS outbox_queue_tenant_due",
    "waiting": """
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
          AND o.available_at <= clock_timestamp() ORDER BY o.id LIMIT %(budget)s) rows) due
WHERE t.tenant_id IS NOT NULL AND due.n > 0
""",
    # `due` constant: publish_fair's sort by (due, id) is then the id order it had.
    "claim": (f"SELECT o.* FROM unnest(%s::text[], %s::int[]) AS p(tenant_id, n) CROSS JOIN LATERAL"
              f" (SELECT {COLUMNS}, tenant_id, 0::float8 AS due FROM outbox WHERE queue = %s"
              f" AND outbox.tenant_id = p.tenant_id AND available_at <= clock_timestamp() ORDER BY id LIMIT p.n"
              f" FOR UPDATE SKIP LOCKED) o"),
}
AFTER = {
    "index": "CREATE INDEX outbox_queue_tenant_due ON outbox (queue, tenant_id, available_at, id)",
    "drop": "DROP INDEX IF EXISTS outbox_queue_tenant",
    "waiting": fair.WAITING,
    "claim": fair._CLAIM,
}
MODES = {"before": BEFORE, "after": AFTER}
#: Outbox tuples (table and indexes) this transaction has read so far.
READ_SO_FAR = ("SELECT sum(pg_stat_get_xact_tuples_returned(oid) + pg_stat_get_xact_tuples_fetched(oid))::int AS n"
               " FROM pg_class WHERE oid = 'outbox'::regclass"
               " OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'outbox'::regclass)")


def set_mode(conn, mode: dict) -> None:
    conn.execute(mode["drop"])
    if not conn.execute("SELECT 1 FROM pg_class WHERE relname = %s",
                        (mode["index"].split()[2],)).fetchone():
        conn.execute(mode["index"])
    conn.execute("ANALYZE outbox")
    fair.WAITING, fair._CLAIM = mode["waiting"], mode["claim"]


def turns(conn, broker, n: int) -> tuple[float, int]:
    """The median of `n` turns (each publishes the quiet tenant's 1 row, rolled back) and the tuples one read."""
    times, read = [], 0
    for _ in range(n):
        with conn.transaction(force_rollback=True):
            before = conn.execute(READ_SO_FAR).fetchone()["n"] or 0
            t0 = time.perf_counter()
            got = fair.publish_fair(conn, broker, QUEUE, 10, 1)
            times.append(time.perf_counter() - t0)
            read = (conn.execute(READ_SO_FAR).fetchone()["n"] or 0) - before
        assert got == 1, f"a turn published {got}, not the quiet tenant's 1 row"
        broker.flush(QUEUE)
    return statistics.median(times), read


def measure(settings: Settings, sizes: list[int], rounds: int, n: int) -> list[dict]:
    broker = make_broker(settings)
    broker.declare_queue(QUEUE)
    out = []
    with db.connect(settings.database_url, autocommit=True) as conn:
        noisy = tenants.ensure_tenant(conn, "noisy")["id"]
        quiet = tenants.ensure_tenant(conn, "quiet")["id"]
        conn.execute("INSERT INTO outbox (message_id, queue, actor, payload) VALUES"
                     " (gen_random_uuid(), %s, 'bench', jsonb_build_object('tenant_id', %s::text))", (QUEUE, quiet))
        have = 0
        for size in sorted(sizes):
            conn.execute("INSERT INTO outbox (message_id, queue, actor, payload, available_at)"
                         " SELECT gen_random_uuid(), %s, 'bench', jsonb_build_object('tenant_id', %s::text),"
                         " clock_timestamp() + interval '1 hour' FROM generate_series(1, %s)",
                         (QUEUE, noisy, size - have))
            have = size
            conn.execute("VACUUM ANALYZE outbox")
            got: dict[str, list[float]] = {m: [] for m in MODES}
            read: dict[str, int] = {}
            for r in range(rounds):
                for name in (MODES if r % 2 == 0 else reversed(MODES)):
                    set_mode(conn, MODES[name])
                    seconds, read[name] = turns(conn, broker, n)
                    got[name].append(seconds)
            row = {"noisy_rows_not_due": size,
                   **{f"{m}_ms": round(statistics.median(v) * 1000, 3) for m, v in got.items()},
                   **{f"{m}_tuples_read": t for m, t in read.items()}}
            row["before_over_after"] = round(row["before_ms"] / row["after_ms"], 2)
            out.append(row)
            print(row, flush=True)
        set_mode(conn, AFTER)
    broker.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0,20000,100000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fair_flood_turn.json")
    args = ap.parse_args()
    load_before = os.getloadavg()
    with loadgen.embedded_settings() as settings:
        results = measure(settings, [int(s) for s in args.sizes.split(",")], args.rounds, args.turns)
    report.write({"command": report.command(), "load_average_before": load_before,
                  "load_average_after": os.getloadavg(), "results": results}, args.out)


if __name__ == "__main__":
    sys.exit(main())
