"""Record each task's service time on the local platform, for bench/autoscale_sim.py's model.

Starts the platform as `bookingctl up` runs it (embedded Postgres, Redis, SMTP sink; one
worker process per queue, no autoscaling), posts bookings at a steady pace so the
workers are busy but the queues stay short, and reads from the booking event log
(migration 0004: one row per task state change, with the time it committed) how long
each task took from `running` to `done`.  Writes the samples, in seconds, per task,
to bench/data/service_times.json: the simulation draws its service times from them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from pipeline import BODY, timed

from booking_embedded import free_port
from bookingctl.platform import Platform, PlatformConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bookings", type=int, default=300)
    ap.add_argument("--rate", type=float, default=3.0, help="bookings per second")
    ap.add_argument("--out", type=Path, default=Path("bench/data/service_times.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "p", port=free_port(), env=dict(os.environ)))
        platform.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", platform.config.port, timeout=30)
            headers = {"Authorization": f"Bearer {platform.admin_token}", "Content-Type": "application/json"}
            body = json.dumps(BODY)
            start = time.monotonic()
            for i in range(args.bookings):
                time.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                timed(conn, "POST", "/api/v1/bookings", headers, body)
            query = ("SELECT r.task, extract(epoch FROM d.at - r.at) AS s FROM booking_events r"
                     " JOIN booking_events d ON d.booking_id = r.booking_id AND d.task = r.task AND d.state = 'done'"
                     " WHERE r.state = 'running'")
            with psycopg.connect(platform.urls["DATABASE_URL"]) as db:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    rows = db.execute(query).fetchall()
                    if len(rows) >= 3 * args.bookings:
                        break
                    time.sleep(1)
        finally:
            platform.stop()
    samples: dict[str, list[float]] = {}
    for task, seconds in rows:
        samples.setdefault(task, []).append(round(float(seconds), 5))
    out = {"recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": " ".join(["python", *sys.argv]),
           "how": "running -> done in booking_events, one worker process per queue, 2 shared cores",
           "seconds": {t: sorted(v) for t, v in sorted(samples.items())}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for task, values in sorted(samples.items()):
        values.sort()
        print(task, len(values), "median", values[len(values) // 2], "p90", values[int(len(values) * 0.9)])


if __name__ == "__main__":
    main()
