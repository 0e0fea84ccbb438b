"""Record each task's service time on the local platform, for bench/autoscale_sim.py's model.

Starts the platform as `bookingctl up` runs it (embedded Postgres, Redis, SMTP sink, API, relay), with the
email, invoice and audit workers started here instead: the same `dramatiq` command and environment
(bookingctl.services.worker), one process of `--threads` threads per queue (1: no two tasks of a process
share its interpreter lock, as the simulation's invoice replica runs one render at a time), plus
`task_clock` (bench/task_clock.py), which times each message in the thread that runs it.  It posts bookings
at a steady pace so the workers are busy but the queues stay short, and waits until the booking event log
(migration 0004) shows every task done.

What a task's service time is: the simulation's replica has a CPU of its own, and this machine is shared
(other sessions' tests and benchmarks; the workers at nice 10 and SCHED_IDLE under `bookingctl up`), so the
wall time from `running` to `done` is mostly waiting for the CPU.  `task_clock` reads the thread's run-queue
wait from the kernel and keeps `wall - runqueue`: the task's CPU plus its waits on Postgres, Redis and SMTP.
Those servers are still contended, so the service time is an upper bound that shrinks on a quieter machine;
the load average over the run is recorded beside it.  The recording workers and their Postgres backends run
at normal priority (`--async-priority`: as bookingctl runs them) to keep that residue small.

Writes bench/data/service_times.json: `seconds` (the service times, which the simulation draws from) and,
per task kind, `cpu_seconds`, `wall_seconds` and the event log's `running -> done` (`event_log_seconds`, what
the first recording used).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
from pipeline import BODY, timed

from booking_embedded import Child, free_port
from bookingctl import services
from bookingctl.platform import Platform, PlatformConfig

HERE = Path(__file__).resolve().parent
QUEUES = ("email", "invoice", "audit")


def recording_worker(platform: Platform, queue: str, clock_dir: Path, threads: int,
                     async_priority: bool) -> tuple[Child, str]:
    """`queue`'s worker as bookingctl starts it, with task_clock loaded (and, by default, at normal priority)."""
    spec = services.worker(queue, 1, free_port(), platform.data_dir / "run", threads=threads)
    argv = [*spec.argv[:3], "task_clock", *spec.argv[3:], "--path", str(HERE)]
    env = {**platform.child_env(), **spec.env, "BENCH_TASK_CLOCK_DIR": str(clock_dir)}
    if not async_priority:
        env.pop("BOOKING_DB_BACKEND_NICE", None)
    child = Child(spec.name, argv, log_path=platform.log_dir / f"{spec.name}.log", env=env,
                  stop_timeout=spec.stop_timeout, nice=spec.nice if async_priority else 0,
                  cpu_idle=spec.cpu_idle and async_priority)
    child.start()
    assert spec.metrics_url is not None
    return child, spec.metrics_url


def wait_serving(workers: list[tuple[Child, str]], timeout: float = 300.0) -> None:
    """Until each worker serves its metrics (its modules, WeasyPrint included, are loaded)."""
    deadline = time.monotonic() + timeout
    pending = list(workers)
    while pending and time.monotonic() < deadline:
        for child, url in list(pending):
            if not child.alive():
                raise RuntimeError(f"{child.name} exited at start; see {child.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        pending.remove((child, url))
            except OSError:
                pass
        time.sleep(0.2)
    if pending:
        raise TimeoutError(f"not serving within {timeout}s: {', '.join(c.name for c, _ in pending)}")


def read_clock(clock_dir: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(clock_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]


def stats(values: list[float]) -> dict:
    v = sorted(values)
    return {"n": len(v), "median": v[len(v) // 2], "p90": v[int(len(v) * 0.9)],
            "p99": v[min(len(v) - 1, int(len(v) * 0.99))], "mean": round(statistics.fmean(v), 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bookings", type=int, default=600)
    ap.add_argument("--rate", type=float, default=3.0, help="bookings per second")
    ap.add_argument("--threads", type=int, default=1, help="threads of each recording worker process")
    ap.add_argument("--async-priority", action="store_true",
                    help="run the recording workers at nice 10 and SCHED_IDLE, as bookingctl does")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for every task to finish")
    ap.add_argument("--out", type=Path, default=HERE / "data/service_times.json")
    args = ap.parse_args()
    load: list[tuple[float, float, float]] = []
    query = ("SELECT r.task, extract(epoch FROM d.at - r.at) AS s FROM booking_events r"
             " JOIN booking_events d ON d.booking_id = r.booking_id AND d.task = r.task AND d.state = 'done'"
             " WHERE r.state = 'running'")
    with tempfile.TemporaryDirectory() as tmp:
        clock_dir = Path(tmp) / "clock"
        clock_dir.mkdir()
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "p", port=free_port(), env=dict(os.environ),
                                           workers={"email": 0, "invoice": 0, "audit": 0, "webhook": 0}))
        platform.start()
        workers: list[tuple[Child, str]] = []
        try:
            for q in QUEUES:
                workers.append(recording_worker(platform, q, clock_dir, args.threads, args.async_priority))
            wait_serving(workers)
            load.append(os.getloadavg())
            conn = http.client.HTTPConnection("127.0.0.1", platform.config.port, timeout=30)
            headers = {"Authorization": f"Bearer {platform.admin_token}", "Content-Type": "application/json"}
            body = json.dumps(BODY)
            start = time.monotonic()
            for i in range(args.bookings):
                time.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                timed(conn, "POST", "/api/v1/bookings", headers, body)
                if i % 30 == 0:
                    load.append(os.getloadavg())
            with psycopg.connect(platform.urls["DATABASE_URL"]) as db:
                deadline = time.monotonic() + args.timeout
                while time.monotonic() < deadline:
                    rows = db.execute(query).fetchall()
                    if len(rows) >= len(QUEUES) * args.bookings:
                        break
                    load.append(os.getloadavg())
                    time.sleep(1)
            load.append(os.getloadavg())
        finally:
            for child, _ in workers:
                child.stop()
            platform.stop()
        clock = read_clock(clock_dir)
    by_queue = {q: [c for c in clock if c["queue"] == q and c["ok"]] for q in QUEUES}
    event_log: dict[str, list[float]] = {}
    for task, seconds in rows:
        event_log.setdefault(task, []).append(round(float(seconds), 5))

    def measure(key: str) -> dict[str, list[float]]:
        return {q: sorted(c[key] for c in by_queue[q]) for q in QUEUES}

    one_minute = [avg[0] for avg in load]
    out = {"recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": " ".join(["python", *sys.argv]),
           "how": (f"service = wall - run-queue wait of the worker thread (bench/task_clock.py), one worker process "
                   f"of {args.threads} thread(s) per queue"
                   f"{' at nice 10 and SCHED_IDLE' if args.async_priority else ' at normal priority'}, "
                   f"{os.cpu_count()} shared cores"),
           "load_average_1m": {"median": round(statistics.median(one_minute), 2), "max": round(max(one_minute), 2)},
           "seconds": measure("service"),
           "cpu_seconds": measure("cpu"),
           "wall_seconds": measure("wall"),
           "event_log_seconds": {t: sorted(v) for t, v in sorted(event_log.items())}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print("load average (1 min) over the run:", out["load_average_1m"])
    for q in QUEUES:
        print(q, {k: stats(out[k][q]) for k in ("seconds", "cpu_seconds", "wall_seconds")})


if __name__ == "__main__":
    main()
