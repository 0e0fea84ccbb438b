"""A burst of bookings on the local platform: the oldest email's age, autoscaled on its promise vs one process.

Issue 23's local figure: a burst of `--bookings` (2,000) with `maxAge` 20 s for email
keeps the oldest email at or under 20 s, the local runner deciding with the operator's
core (`bookingctl up`'s default policies: email `maxAge` 20 s, 1-4 processes).  For each
mode, in one invocation, one local platform (the real API, relay, workers, Postgres,
Redis and the SMTP sink, which accepts at once), the tenant's plan unlimited:

- `autoscaled`: `bookingctl.autoscale.DEFAULT_POLICIES`, as `bookingctl up` runs them (the CPU yield on);
- `fixed`: no autoscaler, one process per queue (the baseline);
- `autoscaled-no-yield`: autoscaled, without the CPU yield (booking_scaling.yielding): every pool
  keeps working through the burst, as before the yield;
- `email-only`: autoscaled, with the invoice, audit and webhook queues paused (the operators'
  pause) from before the first POST until the last email is done: the email path alone on the
  machine, the least the oldest email's age can be here whatever the policy (then resumed).

`--connections` clients POST the bookings as fast as the API takes them; then the run
waits until every email is done (invoices and audit go on meanwhile, as in a real
burst).  Each email's age when done is its task's `done` write minus its booking's
`created_at`, read from Postgres.  Reported per mode: the time to POST, the email ages'
p50 / p99 / max, the share within `maxAge`, and the most email processes seen.

    .venv/bin/python bench/email_burst.py [--bookings 2000] [--connections 8] \
        [--modes autoscaled,autoscaled-no-yield,fixed,email-only]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path
import psycopg
import report  # bench/report.py: a script's own folder is on sys.path

from booking_core.queues import pauses
from booking_embedded import free_port
from bookingctl.autoscale import DEFAULT_POLICIES
from bookingctl.platform import Platform, PlatformConfig

MAX_AGE = DEFAULT_POLICIES["email"].max_age
#: What `email-only` pauses: every queue but email's.
OTHER_QUEUES = ("invoice", "audit", "webhook")


def post_all(platform: Platform, bookings: int, connections: int) -> float:
    """POST `bookings` bookings over `connections` keep-alive clients; the seconds it took."""
    base = f"http://127.0.0.1:{platform.config.port}"
    left = iter(range(bookings))
    lock = threading.Lock()
    failed: list[int] = []

    def client() -> None:
        c = loadgen.Client(base, platform.admin_token)
        try:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                _, status, _ = c.request("POST", "/api/v1/bookings", loadgen.BODY)
                if status != 201:
                    failed.append(status)
        finally:
            c.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise SystemExit(f"{len(failed)} POSTs failed, e.g. status {failed[0]}")
    return time.perf_counter() - start


def ages_when_done(db: psycopg.Connection, task: str, bookings: int, deadline: float, mode: str) -> list[float]:
    """Once all `bookings` tasks of `task` are done: each one's age when done (its `done` write minus its
    booking's `created_at`), sorted."""
    while db.execute("SELECT count(*) FROM booking_tasks WHERE task = %s AND state = 'done'",
                     (task,)).fetchone()[0] < bookings:
        if time.monotonic() > deadline:
            raise SystemExit(f"{mode}: the {task} tasks were not all done in time")
        time.sleep(0.5)
    return sorted(row[0] for row in db.execute(
        "SELECT extract(epoch FROM t.updated_at - b.created_at)::float FROM booking_tasks t"
        " JOIN bookings b ON b.id = t.booking_id WHERE t.task = %s", (task,)))


def run(tmp: str, mode: str, bookings: int, connections: int, timeout: float,
        hold: tuple[str, ...] = OTHER_QUEUES, index: int = 0, wait_invoices: bool = False) -> dict:
    autoscale = DEFAULT_POLICIES if mode in ("autoscaled", "autoscaled-no-yield", "email-only") else None
    held = hold if mode == "email-only" else ()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
    platform = Platform(PlatformConfig(data_dir=Path(tmp) / f"{index}-{mode}", port=free_port(),
                                       env=env | loadgen.UNLIMITED_PLAN, autoscale=autoscale,
                                       cpu_yield=mode != "autoscaled-no-yield"))
    platform.start()
    peak, stop = [1], threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], len(platform.pool("email")))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with psycopg.connect(platform.urls["DATABASE_URL"], autocommit=True) as db:
            for queue in held:
                pauses.pause(db, queue, actor="email_burst", reason="the email path alone")
        posted = post_all(platform, bookings, connections)
        with psycopg.connect(platform.urls["DATABASE_URL"], autocommit=True) as db:
            deadline = time.monotonic() + timeout
            ages = ages_when_done(db, "email", bookings, deadline, mode)
            # What else ran while the emails waited (the CPU they competed with): tasks done by the last email.
            beside = dict(db.execute(
                "SELECT task, count(*) FROM booking_tasks WHERE task <> 'email' AND state = 'done' AND updated_at <="
                " (SELECT max(updated_at) FROM booking_tasks WHERE task = 'email') GROUP BY task").fetchall())
            for queue in held:
                pauses.resume(db, queue, actor="email_burst")
            invoices = None
            if wait_invoices:  # what the yield cost the looser promise: every invoice's age when done
                invoices = ages_when_done(db, "invoice", bookings, deadline, mode)
    finally:
        stop.set()
        watcher.join(5)
        platform.stop()
    return {"mode": mode, "held": list(held), "bookings": bookings, "post_seconds": round(posted, 2),
            "email_age_p50_s": round(loadgen.pct(ages, 0.5), 2), "email_age_p99_s": round(loadgen.pct(ages, 0.99), 2),
            "email_age_max_s": round(ages[-1], 2),
            "within_max_age": round(sum(a <= MAX_AGE for a in ages) / len(ages), 4),
            "peak_email_processes": peak[0],
            "done_before_the_last_email": {t: beside.get(t, 0) for t in ("invoice", "audit")},
            **({} if invoices is None else {"invoice_age_p50_s": round(loadgen.pct(invoices, 0.5), 2),
                                            "invoice_age_max_s": round(invoices[-1], 2)})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bookings", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--modes", default="autoscaled,fixed")
    ap.add_argument("--hold", default=",".join(OTHER_QUEUES),
                    help="the queues `email-only` pauses during the burst (default: every queue but email's)")
    ap.add_argument("--wait-invoices", action="store_true",
                    help="also wait for every invoice and report their ages (what the yield costs their promise)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a mode may take to send every email")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "email_burst.json")
    args = ap.parse_args()
    load = [os.getloadavg()]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, mode in enumerate(args.modes.split(",")):
            # A data dir per run: a mode named twice must not read the first run's emails.
            runs.append(run(tmp, mode, args.bookings, args.connections, args.timeout, tuple(args.hold.split(",")),
                            index, args.wait_invoices))
            load.append(os.getloadavg())
            print(runs[-1], flush=True)
    report.write({"command": report.command(), "max_age_s": MAX_AGE, "runs": runs,
                  "load_average_1_5_15": [[round(x, 1) for x in la] for la in load]}, args.out)


if __name__ == "__main__":
    main()
