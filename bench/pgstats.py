"""What the benchmarks read from Postgres and /proc: commits, WAL, the pgbench ceiling, RSS.

* Commits, write transactions and WAL bytes come from `pg_stat_database.xact_commit`,
  the next transaction id and `pg_current_wal_lsn()` before and after a known number of bookings: the
  cost per booking of the accept path alone, and of everything after it.  The exact
  count of commits that wrote (each a WAL flush the accept path may queue behind)
  is the number of COMMIT records `pg_waldump` finds between the two WAL
  positions: `xact_commit` also counts read-only transactions (polls, health
  checks), and transaction ids also count savepoints.
* The pgbench ceiling runs a booking-shaped transaction (1 booking row, 3 task
  rows, 3 outbox rows) on copies of those tables in the same Postgres, so the
  relay and the workers never see its rows.
* RSS and CPU time are read from /proc for every process of the platform, children included.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import psycopg

#: One statement, like the API's own write: booking, 3 tasks and 3 outbox rows in one round trip.
PGBENCH_ONE_STATEMENT = """
WITH b AS (
  INSERT INTO bench_bookings (id, tenant_id, customer_name, customer_email, item, check_in, check_out,
                              amount, currency)
  VALUES (gen_random_uuid(), :tenant, 'Bench Mark', 'bench@example.com', 'Sea-view room',
          '2027-05-01', '2027-05-03', 240.00, 'EUR')
  RETURNING id
), t AS (
  INSERT INTO bench_tasks (booking_id, task) SELECT b.id, x FROM b, unnest(ARRAY['email','invoice','audit']) x
)
INSERT INTO bench_outbox (message_id, queue, actor, payload, options)
  SELECT gen_random_uuid(), q, 'a', jsonb_build_object('booking_id', b.id), '{}'::jsonb
  FROM b, unnest(ARRAY['email','invoice','audit']) q;
"""


def counters(url: str) -> dict:
    """This database's commit count and the WAL position (bytes)."""
    with psycopg.connect(url, autocommit=True) as conn:
        commits, lsn, xid, lsn_text = conn.execute(
            "SELECT xact_commit, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,"
            " pg_snapshot_xmax(pg_current_snapshot())::text::bigint, pg_current_wal_lsn()::text"
            " FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return {"commits": int(commits), "wal_bytes": int(lsn), "write_transactions": int(xid), "lsn": lsn_text}


def commit_records(pgdata: Path, start_lsn: str, end_lsn: str) -> int:
    """COMMIT records in the WAL between two positions: the transactions that wrote and committed (all databases)."""
    wal = pgdata / "pg_wal"
    out = subprocess.run([str(pgbench_bin().parent / "pg_waldump"), "--path", str(wal), "--start", start_lsn,
                          "--end", end_lsn, "--rmgr", "Transaction"], capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if "desc: COMMIT" in line)


def per_booking(before: dict, after: dict, bookings: int, pgdata: Path | None = None) -> dict:
    """Commits, transaction ids and WAL bytes per booking between two readings; with `pgdata`, write commits too.

    `commits` (xact_commit) also counts read-only transactions (a poll, a health
    check), which cost no WAL flush; `write_transactions` counts transaction
    ids, which savepoints also take; `write_commits` (COMMIT records in the WAL)
    is the exact number of commits that wrote.
    """
    out = {k: round((after[k] - before[k]) / bookings, 2) for k in ("commits", "write_transactions", "wal_bytes")}
    if pgdata is not None:
        out["write_commits"] = round(commit_records(pgdata, before["lsn"], after["lsn"]) / bookings, 2)
    return out


def demo_tenant(url: str) -> str:
    """The id of the `demo` tenant the local platform creates (the benchmarks' bookings are its)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return str(conn.execute("SELECT id FROM tenants WHERE name = 'demo'").fetchone()[0])


def pgbench_bin() -> Path:
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"


def pgbench_ceiling(url: str, tenant_id: str, *, clients: int, seconds: int) -> dict:
    """Transactions per second of the booking-shaped write on scratch copies of the tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table, src in (("bench_bookings", "bookings"), ("bench_tasks", "booking_tasks"),
                           ("bench_outbox", "outbox")):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            # Same columns, defaults, indexes and constraints but no foreign keys or triggers.
            conn.execute(f"CREATE TABLE {table} (LIKE {src} INCLUDING DEFAULTS INCLUDING INDEXES"
                         " INCLUDING CONSTRAINTS INCLUDING IDENTITY)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "booking.sql"
        script.write_text(PGBENCH_ONE_STATEMENT)
        env = dict(os.environ, PGCONNECT_TIMEOUT="10")
        out = subprocess.run(
            [str(pgbench_bin()), "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-D", f"tenant='{tenant_id}'",
             "-f", str(script), url],
            capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"pgbench failed: {out.stderr.strip()[-800:]}")
    out = out.stdout
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
    lat = re.search(r"latency average = ([0-9.]+) ms", out)
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("bench_bookings", "bench_tasks", "bench_outbox"):
            conn.execute(f"DROP TABLE {table}")
    return {"clients": clients, "seconds": seconds, "tps": round(tps, 1),
            "latency_avg_ms": float(lat.group(1)) if lat else None}


def _children(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` and its descendants, MiB."""
    total = 0
    for p in _children(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) so far of `pid` and its live descendants, seconds.

    A descendant that exits between two readings takes its time with it; the
    benchmarks read around a steady load, where the processes stay put.
    """
    total = 0
    for p in _children(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")
