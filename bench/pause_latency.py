"""How fast a queue pause and resume take effect in a worker (issue 11).

Embedded Postgres and Redis, one in-process Dramatiq worker on the `email`
queue with the platform's own worker broker (`make_broker(track_tasks=True)`:
the pause middleware, default poll `--poll-ms`), and a sender putting a
message on the queue every 20 ms.  Each round pauses the queue and measures
the time from the pause's commit to the last message start (after that,
nothing starts) and to the worker confirming it (`Worker.pause()` returned:
every thread idle), then resumes and measures the time to the first start.

    .venv/bin/python bench/pause_latency.py [--rounds 10] [--poll-ms 1000] [--out bench/results/pause_latency.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import dramatiq
import loadgen
import report  # bench/report.py: a script's own folder is on sys.path

from booking_core import db
from booking_core.config import Settings
from booking_core.queues import pauses
from booking_core.queues.pausewatch import QueuePauseMiddleware
from booking_core.worker.broker import make_broker

QUIET_SECONDS = 3.0  # no start for this long after a pause: it has taken effect


def measure(settings: Settings, rounds: int) -> dict:
    broker = make_broker(settings, track_tasks=True)
    watch = next(m for m in broker.middleware if isinstance(m, QueuePauseMiddleware))
    starts: list[float] = []
    actor = dramatiq.actor(lambda: starts.append(time.monotonic()), broker=broker, queue_name="email",
                           actor_name="bench_noop")
    worker = dramatiq.Worker(broker, queues={"email"}, worker_threads=4)
    worker.start()
    stop = threading.Event()

    def send() -> None:
        while not stop.wait(0.02):
            actor.send()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    out = {"last_start_after_pause_s": [], "pause_confirmed_s": [], "first_start_after_resume_s": []}
    conn = db.connect(settings.database_url, autocommit=True)
    try:
        time.sleep(2)
        for _ in range(rounds):
            pauses.pause(conn, "email", actor="bench")
            t0 = time.monotonic()
            while not watch.applied.whole:
                time.sleep(0.002)
            out["pause_confirmed_s"].append(time.monotonic() - t0)
            time.sleep(QUIET_SECONDS)
            out["last_start_after_pause_s"].append(max(0.0, max(starts) - t0))
            pauses.resume(conn, "email", actor="bench")
            t1, seen = time.monotonic(), len(starts)
            while len(starts) == seen:
                time.sleep(0.002)
            out["first_start_after_resume_s"].append(starts[seen] - t1)
            time.sleep(1)
    finally:
        stop.set()
        sender.join()
        worker.stop()
        broker.close()
        conn.close()
    return {k: {"median": round(statistics.median(v), 3), "max": round(max(v), 3), "n": len(v)}
            for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--poll-ms", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pause_latency.json")
    args = ap.parse_args()
    with loadgen.embedded_settings({"BOOKING_PAUSE_POLL_MS": str(args.poll_ms)}) as settings:
        result = {"poll_ms": args.poll_ms, **measure(settings, args.rounds)}
    report.write({"command": report.command(), **result}, args.out)


if __name__ == "__main__":
    sys.exit(main())
