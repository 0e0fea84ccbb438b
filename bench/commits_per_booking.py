"""Count Postgres commits per booking across the whole pipeline (issue 9: fewer commits per task).

Starts a local platform (embedded Postgres, Redis, SMTP sink; API, relay, one
process per worker), then, reading `pg_stat_database.xact_commit` of the
platform's database before and after each phase:

  * idle: nothing posted, for `--idle` seconds, to learn the background rate
    (relay sweeps, readiness checks), which is subtracted from the phases below;
  * accept: workers stopped, N bookings POSTed, until the relay has published them;
  * work: workers started, until every booking's three tasks are done, its three
    audit entries (booking.created, email.sent, invoice.issued) are recorded and
    the outbox is empty.

    .venv/bin/python bench/commits_per_booking.py [--bookings 200]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import time
from pathlib import Path

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path

from booking_core import db
from booking_embedded import free_port
from bookingctl.platform import Platform, PlatformConfig

BODY = {"customer": {"name": "Bench Mark", "email": "bench@example.com"}, "item": "Room 7",
        "check_in": "2027-05-01", "check_out": "2027-05-03", "amount": "240.00", "currency": "EUR"}
WORKERS = ("email-worker-1", "invoice-worker-1", "audit-worker-1")


def commits(url: str) -> int:
    """Committed transactions of the current database so far (stats flushed first)."""
    time.sleep(12)  # an idle backend flushes its counters within 10 s (PGSTAT_IDLE_INTERVAL)
    with db.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT xact_commit FROM pg_stat_database"
                            " WHERE datname = current_database()").fetchone()["xact_commit"]


def wait_until(url: str, sql: str, params: tuple, timeout: float = 600) -> int:
    """Poll `sql` once a second until it says ok; the number of polls (each one commit)."""
    deadline, polls = time.monotonic() + timeout, 0
    with db.connect(url, autocommit=True) as conn:
        while True:
            polls += 1
            if conn.execute(sql, params).fetchone()["ok"]:
                return polls
            if time.monotonic() > deadline:
                raise TimeoutError(sql)
            time.sleep(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bookings", type=int, default=200)
    ap.add_argument("--idle", type=float, default=20.0)
    args = ap.parse_args()
    n = args.bookings
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(PlatformConfig(data_dir=Path(tmp), port=free_port(),
                                           env={**os.environ, **loadgen.UNLIMITED_PLAN}))
        platform.start()
        try:
            url = platform.urls["DATABASE_URL"]
            start, t0 = commits(url), time.monotonic()
            time.sleep(args.idle)
            idle_rate = (commits(url) - start) / (time.monotonic() - t0)

            for name in WORKERS:
                platform.stop_component(name)
            conn = http.client.HTTPConnection("127.0.0.1", platform.config.port, timeout=30)
            headers = {"Authorization": f"Bearer {platform.admin_token}",
                       "Content-Type": "application/json"}
            before, t0 = commits(url), time.monotonic()
            ids = []
            for _ in range(n):
                conn.request("POST", "/api/v1/bookings", body=json.dumps(BODY), headers=headers)
                resp = conn.getresponse()
                ids.append(json.loads(resp.read())["id"])
                assert resp.status == 201, resp.status
            polls = wait_until(url, "SELECT NOT EXISTS (SELECT 1 FROM outbox) AS ok", ())
            accept = commits(url) - before - polls - idle_rate * (time.monotonic() - t0)

            before, t0 = commits(url), time.monotonic()
            for name in WORKERS:
                platform.start_component(name)
            polls = wait_until(url, "SELECT (SELECT count(*) FROM booking_tasks WHERE booking_id = ANY(%s::uuid[])"
                            " AND state = 'done') = 3 * cardinality(%s::uuid[])"
                            " AND (SELECT count(*) FROM audit_log WHERE booking_id = ANY(%s::uuid[]))"
                            " = 3 * cardinality(%s::uuid[])"
                            " AND NOT EXISTS (SELECT 1 FROM outbox) AS ok", (ids, ids, ids, ids))
            work = commits(url) - before - polls - idle_rate * (time.monotonic() - t0)
        finally:
            platform.stop()
    print(json.dumps({"bookings": n, "idle_commits_per_s": round(idle_rate, 2),
                      "accept_commits_per_booking": round(accept / n, 2),
                      "work_commits_per_booking": round(work / n, 2),
                      "total_commits_per_booking": round((accept + work) / n, 2)}))


if __name__ == "__main__":
    main()
