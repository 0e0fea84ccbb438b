"""What the relays' backlog report costs Postgres, two relays at once: each reading every second, or one per interval.

Embedded Postgres and Redis.  The outbox holds `--rows` due rows in each of the
email, invoice and audit queues, spread over `--tenants` real tenants, as an
import leaves it, vacuumed and analysed.  Two relays (threads, each on its own
connection, as two replicas) report for `--seconds`, in each mode, the modes
alternated within each round:

- `every_relay`: how the relay reported before: each relay reads the backlog
  (`outbox_relay.backlog.read`) and writes the autoscalers' copy every
  `REPORT_SECONDS`;
- `one_per_interval`: the relay's `report` as it is now (`report_turn`): the
  shared reading in Redis while fresh, else a try-lock and a read, the
  interval backed off when the read is slow.

Each relay looks every `POLL_SECONDS` (the relay's loop polls that often while
rows wait).  It reports, per mode, the two relays' time in reporting per second
of wall time (client side: the read, or the look at Redis and the try-lock),
Postgres's own `active_time` (pg_stat_database: time its backends spent
executing statements, all of which are the relays' here) per second, and the
readings taken.  Medians over `--rounds`; ratios before over after.

    .venv/bin/python bench/backlog_report.py [--rows 20000] [--tenants 50] [--rounds 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import loadgen
import report  # bench/report.py: a script's own folder is on sys.path
from fair_turn import load

from booking_core import db
from booking_core.config import Settings
from booking_core.messaging.contracts import QUEUES
from booking_core.model import tenants
from booking_scaling.outboxmirror import REPORT_SECONDS
from outbox_relay import backlog, report_turn
from outbox_relay.relay import POLL_SECONDS, Relay


def every_relay(relay: Relay, conn, stop: threading.Event, spent: list[float], reads: list[int]) -> None:
    """The relay's report as it was: read and mirror every REPORT_SECONDS, whatever the other relays do."""
    last = 0.0
    while not stop.wait(POLL_SECONDS):
        if time.monotonic() - last >= REPORT_SECONDS:
            start = time.monotonic()
            rep = backlog.read(conn, relay.depths.snapshot(QUEUES), QUEUES)
            backlog.mirror(relay.broker.client, relay.settings.redis_namespace, rep)
            spent.append(time.monotonic() - start)
            reads.append(1)
            last = time.monotonic()


def one_per_interval(relay: Relay, conn, stop: threading.Event, spent: list[float], reads: list[int]) -> None:
    """The relay's report as it is: `Relay.report` whenever its turn is due."""
    while not stop.wait(POLL_SECONDS):
        if relay.turn.due():
            start = time.monotonic()
            turn = relay.report(conn)
            spent.append(time.monotonic() - start)
            if turn.read_seconds is not None:
                reads.append(1)


def active_ms(conn) -> float:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return float(conn.execute("SELECT active_time FROM pg_stat_database WHERE datname = current_database()")
                 .fetchone()["active_time"])


def run_mode(settings: Settings, mode, seconds: float, stats) -> dict:
    relays = [Relay(settings) for _ in range(2)]
    relays[0].broker.client.delete(report_turn.key(settings.redis_namespace))
    stop = threading.Event()
    spent: list[float] = []
    reads: list[int] = []
    conns = [db.connect(settings.database_url, autocommit=True) for _ in relays]
    threads = [threading.Thread(target=mode, args=(r, c, stop, spent, reads)) for r, c in zip(relays, conns,
                                                                                             strict=True)]
    stats.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(1.1)  # let the last mode's statistics land: Postgres flushes them at most once a second
    before = active_ms(stats)
    start = time.monotonic()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    for c in conns:
        c.execute("SELECT pg_stat_force_next_flush()")
        c.close()
    time.sleep(1.1)
    after = active_ms(stats)
    for r in relays:
        r.broker.close()
    return {"client_ms_per_s": sum(spent) * 1000 / wall, "postgres_active_ms_per_s": (after - before) / wall,
            "readings_per_s": len(reads) / wall}


def measure(settings: Settings, rows: int, tenant_count: int, rounds: int, seconds: float) -> dict:
    modes = {"every_relay": every_relay, "one_per_interval": one_per_interval}
    got: dict[str, list[dict]] = {m: [] for m in modes}
    with db.connect(settings.database_url, autocommit=True) as conn:
        ids = [tenants.ensure_tenant(conn, f"bench-{i}")["id"] for i in range(tenant_count)]
        load(conn, rows, ids)
        for r in range(rounds):
            for mode in (modes if r % 2 == 0 else list(reversed(modes))):
                got[mode].append(run_mode(settings, modes[mode], seconds, conn))
                print(r, mode, got[mode][-1], flush=True)
    medians = {m: {k: round(statistics.median(x[k] for x in v), 3) for k in v[0]} for m, v in got.items()}
    ratios = {k: round(medians["every_relay"][k] / medians["one_per_interval"][k], 2)
              for k in ("client_ms_per_s", "postgres_active_ms_per_s")}
    return {"due_rows_per_queue": rows, "tenants": tenant_count, "relays": 2, "seconds_per_mode": seconds,
            "medians": medians, "every_relay_over_one_per_interval": ratios, "rounds": got}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "backlog_report.json")
    args = ap.parse_args()
    load_before = os.getloadavg()
    with loadgen.embedded_settings() as settings:
        result = measure(settings, args.rows, args.tenants, args.rounds, args.seconds)
    report.write({"command": report.command(), "load_average_before": load_before,
                  "load_average_after": os.getloadavg(), **result}, args.out)


if __name__ == "__main__":
    sys.exit(main())
