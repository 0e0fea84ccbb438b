"""What the outbox's generated `tenant_id` column and its index cost the accept path, with and without, in turns.

    .venv/bin/python bench/outbox_tenant_column.py [--compare column|index] [--rounds 5] [--warmup-rounds 1]
        [--seconds 8] [--connections 50]

Migration 0012 (the fair order) added to the outbox `tenant_id`, a stored
column generated from the payload, and an index on (queue, tenant_id, id);
migration 0014 keyed that index (queue, tenant_id, available_at, id), so a
fair turn reads only due rows: every confirm's three outbox rows compute the
column and insert three index entries more.  One platform, its workers and its
relay stopped (the accept path alone: the API and Postgres); each round serves
`wrk` POSTs at `--connections` for `--seconds` in both modes of the comparison,
in alternating order.  `--compare column` (the default):

- `with`: the schema as migrated;
- `without`: the index and the column dropped (`ALTER TABLE outbox DROP COLUMN
  tenant_id`; nothing on the accept path reads them).

`--compare index`:

- `with`: the schema as migrated (`outbox_queue_tenant_due`, 0014);
- `without`: that index replaced by 0012's `(queue, tenant_id, id)`.

Between runs the outbox is emptied (and vacuumed), so both modes insert into a
table of the same size, and the mode is switched with the API idle.  Reported:
per mode the medians of confirms/s, p99 and the CPU per confirm of the API
(its gunicorn and workers) and Postgres, and the paired ratios with ÷ without,
median over the rounds.  `--warmup-rounds` run first and are left out.  The
machine is shared: read the paired ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import loadgen
import pgstats
import report

from booking_core import db
from bookingctl.platform import Platform

DROP = "ALTER TABLE outbox DROP COLUMN tenant_id"
#: As migrations 0012 and 0014 leave them.
ADD = ("ALTER TABLE outbox ADD COLUMN tenant_id text"
       " GENERATED ALWAYS AS (coalesce(payload->>'tenant_id', '')) STORED;"
       " CREATE INDEX outbox_queue_tenant_due ON outbox (queue, tenant_id, available_at, id)")
#: The index as migration 0012 made it, instead of 0014's.
ID_INDEX = ("DROP INDEX IF EXISTS outbox_queue_tenant_due;"
            " CREATE INDEX IF NOT EXISTS outbox_queue_tenant ON outbox (queue, tenant_id, id)")
DUE_INDEX = ("DROP INDEX IF EXISTS outbox_queue_tenant;"
             " CREATE INDEX IF NOT EXISTS outbox_queue_tenant_due ON outbox (queue, tenant_id, available_at, id)")
MODES = ("with", "without")


def set_mode(db_url: str, mode: str, compare: str = "column") -> None:
    """Empty the outbox, then give it the column and index (`with`) or take them away (`without`);
    with `compare="index"`, give it 0014's index (`with`) or 0012's (`without`)."""
    with db.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox")
        if compare == "index":
            conn.execute(DUE_INDEX if mode == "with" else ID_INDEX)
        else:
            has = conn.execute("SELECT 1 FROM information_schema.columns"
                               " WHERE table_name = 'outbox' AND column_name = 'tenant_id'").fetchone()
            if mode == "with" and not has:
                conn.execute(ADD)
            elif mode == "without" and has:
                conn.execute(DROP)
        conn.execute("VACUUM ANALYZE outbox")


def run(platform: Platform, wrk: dict) -> dict:
    """One wrk POST run, with the API's and Postgres's CPU per confirm."""
    pids = {name: platform.component(name).pid for name in ("api", "postgres")}
    before = {name: pgstats.cpu_seconds(pid) for name, pid in pids.items()}
    result = loadgen.wrk_post(platform.api_url, platform.admin_token, **wrk)
    n = max(result["requests"] - result["non2xx"], 1)
    cpu = {name: (pgstats.cpu_seconds(pid) - before[name]) * 1000 / n for name, pid in pids.items()}
    return {"rps": result["rps"], "p99_ms": result["p99_ms"], "non2xx": result["non2xx"],
            "api_cpu_ms": round(cpu["api"], 3), "postgres_cpu_ms": round(cpu["postgres"], 3),
            "cpu_ms": round(cpu["api"] + cpu["postgres"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup-rounds", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--compare", choices=("column", "index"), default="column")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    out = args.out or Path(__file__).parent / "results" / (
        "outbox_tenant_column.json" if args.compare == "column" else "outbox_due_index.json")
    loadgen.require_wrk()
    wrk = {"connections": args.connections, "seconds": args.seconds}
    rounds: list[dict[str, dict]] = []
    load = [os.getloadavg()]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
    with loadgen.api_only_platform(env) as platform:
        platform.stop_component("relay")
        db_url = platform.urls["DATABASE_URL"]
        for r in range(args.warmup_rounds + args.rounds):
            got = {}
            for mode in (MODES if r % 2 == 0 else tuple(reversed(MODES))):
                set_mode(db_url, mode, args.compare)
                got[mode] = run(platform, wrk)
            print(r, got, flush=True)
            load.append(os.getloadavg())
            if r >= args.warmup_rounds:
                rounds.append(got)
        set_mode(db_url, "with", args.compare)

    def median(mode: str, key: str) -> float:
        return round(statistics.median(g[mode][key] for g in rounds), 3)

    def paired(key: str) -> float:
        return round(statistics.median(g["with"][key] / g["without"][key] for g in rounds), 3)

    keys = ("rps", "p99_ms", "api_cpu_ms", "postgres_cpu_ms", "cpu_ms")
    report.write({"command": report.command(), "compare": args.compare,
                  "connections": args.connections, "seconds": args.seconds,
                  "medians": {m: {k: median(m, k) for k in keys} for m in MODES},
                  "with_over_without": {k: paired(k) for k in keys},
                  "load_average_1_5_15": [[round(x, 1) for x in la] for la in load],
                  "rounds": rounds}, out)


if __name__ == "__main__":
    main()
