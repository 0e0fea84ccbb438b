"""A worker's task completion with the booking_tasks webhook trigger as in 0013, as in 0015, and off.

    .venv/bin/python bench/webhooks_task_done.py [--bookings 300] [--rounds 5] [--connections 4]

The statement a worker's commit ends with (`taskstate.mark_done`: the UPDATE of one
`booking_tasks` row to `done`), for every task of fresh bookings (email, invoice,
audit, each in its own transaction as the three workers commit them, with the
booking's `email_sends` and `invoices` rows in place), on `--connections`
connections at once to an embedded Postgres with the migrations applied. Modes,
taken in turns `--rounds` times (each round starting one mode later), the trigger function swapped between them with
`CREATE OR REPLACE` from the migration files themselves:

- `disabled`: the webhook trigger off (the code before webhooks): the baseline;
- `t0013` / `t0015`: a tenant with no endpoint (most tenants) under 0013's function,
  which takes the lock and builds each event's data before `webhook_emit` drops it,
  and under 0015's, which skips the tenant's rows in the loop's query;
- `t0013_endpoint` / `t0015_endpoint`: a tenant with one endpoint, under each: the
  events are recorded and fanned out in both; 0015 adds one probe per row.

Times the UPDATE alone (executed in an open transaction; the commit is timed apart
and reported as `commit_median_ms`), median per mode and ratios to `disabled`; and,
measured by Postgres itself (`track_functions = 'pl'` in every mode), the webhook
trigger's own time per completion beside the 0004 event-log trigger's, which fires
on the same statement: the client's clock on a shared machine is noisier than the
difference. No relay or
worker runs: it isolates what the trigger adds to each completion. The outbox and
webhook rows are emptied between rounds.
"""

from __future__ import annotations

import argparse
import re
import statistics
import threading
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path
import report
from webhooks_accept import two_tenants

from booking_core import db
from booking_core.model import bookings
from booking_core.tasks import taskstate

MIGRATIONS = Path(__file__).resolve().parents[1] / "libs/booking-core/src/booking_core/db/migrations"
BOOKING = bookings.NewBooking("Bench Mark", "bench@example.com", "Sea-view room", date(2027, 3, 1),
                              date(2027, 3, 4), Decimal("360.00"), "EUR")
TASKS = ("email", "invoice", "audit")
MODES = ("disabled", "t0013", "t0015", "t0013_endpoint", "t0015_endpoint")
#: Per completion: the UPDATE (client clock), the commit, and inside Postgres the webhook
#: trigger's time and, for scale, the 0004 event-log trigger's on the same statement.
SERIES = ("stmt", "commit", "webhook_trigger", "log_trigger")


def trigger_function(migration_glob: str) -> str:
    """`webhook_events_from_tasks()` as the migration defines it, as a CREATE OR REPLACE."""
    [path] = MIGRATIONS.glob(migration_glob)
    m = re.search(r"CREATE (?:OR REPLACE )?FUNCTION webhook_events_from_tasks\(\).*?END \$\$;",
                  path.read_text(), re.DOTALL)
    assert m, f"no webhook_events_from_tasks in {path.name}"
    return re.sub(r"^CREATE (OR REPLACE )?FUNCTION", "CREATE OR REPLACE FUNCTION", m.group(0))


def seed(conn, tenant_id: str, n: int) -> list[str]:
    """`n` bookings with their email sent and invoice issued rows, tasks still pending."""
    ids = []
    for _ in range(n):
        booking_id = str(bookings.create(conn, tenant_id=tenant_id, booking=BOOKING, actor="bench")["id"])
        conn.execute("INSERT INTO email_sends (booking_id, message_id, recipient) VALUES (%s, %s, %s)",
                     (booking_id, f"<{booking_id}@bench>", BOOKING.customer_email))
        conn.execute("INSERT INTO invoices (booking_id, tenant_id, number, issued_at)"
                     " VALUES (%s, %s, %s, now())", (booking_id, tenant_id, f"B-{booking_id}"))
        ids.append(booking_id)
    return ids


def complete(url: str, booking_ids: list[str], out: dict[str, list[float]]) -> None:
    """Each task of each booking done, one transaction each, as the workers commit them.

    Besides the client's clock, Postgres's own: the trigger functions' time in the
    transaction (`pg_stat_xact_user_functions`, read around the UPDATE, untimed).
    """
    with db.connect(url) as conn:
        conn.execute("SET track_functions = 'pl'")
        conn.commit()
        for task in TASKS:
            for booking_id in booking_ids:
                before = _trigger_times(conn)  # opens the transaction, untimed
                start = time.perf_counter()
                taskstate.mark_done(conn, booking_id, task)
                mid = time.perf_counter()
                after = _trigger_times(conn)
                before_commit = time.perf_counter()
                conn.commit()
                out["stmt"].append((mid - start) * 1000)
                out["commit"].append((time.perf_counter() - before_commit) * 1000)
                out["webhook_trigger"].append(after[0] - before[0])
                out["log_trigger"].append(after[1] - before[1])


def _trigger_times(conn) -> tuple[float, float]:
    """The two triggers' time (ms) this backend has not yet flushed to the shared statistics.

    Postgres keeps it per backend until it reports (at most once a second, between
    transactions), so only a difference within one transaction is that transaction's.
    """
    row = conn.execute(
        "SELECT coalesce(sum(total_time) FILTER (WHERE funcname = 'webhook_events_from_tasks'), 0) AS w,"
        " coalesce(sum(total_time) FILTER (WHERE funcname = 'booking_events_from_update'), 0) AS l"
        " FROM pg_stat_xact_user_functions").fetchone()
    return row["w"], row["l"]


def run_mode(url: str, booking_ids: list[str], connections: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in SERIES}
    threads = [threading.Thread(target=complete, args=(url, booking_ids[i::connections], out))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def set_mode(conn, mode: str, functions: dict[str, str]) -> None:
    if mode == "disabled":
        conn.execute("ALTER TABLE booking_tasks DISABLE TRIGGER booking_tasks_webhook_events")
        return
    conn.execute("ALTER TABLE booking_tasks ENABLE TRIGGER booking_tasks_webhook_events")
    conn.execute(functions[mode.split("_")[0]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bookings", type=int, default=300, help="bookings per mode per round (3 completions each)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("bench/results/webhooks_task_done.json"))
    args = ap.parse_args()
    functions = {"t0013": trigger_function("0013_*.sql"), "t0015": trigger_function("0015_*.sql")}
    got: dict[str, dict[str, list[float]]] = {m: {k: [] for k in SERIES} for m in MODES}
    with loadgen.embedded_settings() as settings:  # Postgres (and a Redis, unused), migrated
        url = settings.database_url
        with db.connect(url, autocommit=True) as conn:
            without, with_ = two_tenants(conn, 1)
            set_mode(conn, "t0015", functions)
            run_mode(url, seed(conn, without, 60), args.connections)  # warm-up
            for r in range(args.rounds):
                for mode in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:  # each first in turn
                    ids = seed(conn, with_ if mode.endswith("_endpoint") else without, args.bookings)
                    set_mode(conn, mode, functions)
                    for k, v in run_mode(url, ids, args.connections).items():
                        got[mode][k] += v
                conn.execute("DELETE FROM outbox")
                conn.execute("DELETE FROM webhook_events")
                conn.execute("VACUUM ANALYZE booking_tasks, booking_events, outbox")
    med = {k: {m: round(statistics.median(got[m][k]), 4) for m in MODES} for k in SERIES}
    stmt = med["stmt"]
    report.write({
        "median_ms": stmt,
        "p90_ms": {m: round(statistics.quantiles(got[m]["stmt"], n=10)[-1], 4) for m in MODES},
        "commit_median_ms": med["commit"],
        "ratio_to_disabled": {m: round(stmt[m] / stmt["disabled"], 3) for m in MODES},
        "t0015_over_t0013": round(stmt["t0015"] / stmt["t0013"], 3),
        "t0015_endpoint_over_t0013_endpoint": round(stmt["t0015_endpoint"] / stmt["t0013_endpoint"], 3),
        "in_postgres_median_ms": {"webhook_trigger": med["webhook_trigger"], "log_trigger": med["log_trigger"]},
        "webhook_trigger_t0015_over_t0013": round(med["webhook_trigger"]["t0015"] / med["webhook_trigger"]["t0013"], 3),
        "completions_per_mode": len(got["disabled"]["stmt"]), "connections": args.connections,
        "command": report.command()}, args.out)

if __name__ == "__main__":
    main()
