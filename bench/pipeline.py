"""Benchmark the booking pipeline on a local platform (embedded Postgres, Redis, SMTP sink).

Measures, in one run on one platform:
  * POST /api/v1/bookings latency over N sequential requests on one keep-alive
    connection, against GET /healthz on the same connection (the HTTP floor:
    gunicorn + Flask, no database) as the baseline; once with the workers
    processing the backlog the POSTs create, once with the workers stopped;
  * time from POST to all three tasks done, for M bookings one after another.
Prints medians, p90/p99 and the POST/baseline ratio, and writes them as JSON.

    .venv/bin/python bench/pipeline.py [--posts 1000] [--flows 20] [--out bench/results/pipeline.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path
import report  # bench/report.py: a script's own folder is on sys.path

from booking_embedded import free_port
from bookingctl.platform import Platform, PlatformConfig

BODY = {"customer": {"name": "Bench Mark", "email": "bench@example.com"}, "item": "Room 7",
        "check_in": "2027-05-01", "check_out": "2027-05-03", "amount": "240.00", "currency": "EUR"}


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]


def timed(conn: http.client.HTTPConnection, method: str, path: str, headers: dict, body=None) -> tuple[float, dict]:
    start = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = (time.perf_counter() - start) * 1000
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:200]!r}")
    return elapsed, json.loads(data)


def summary(ms: list[float]) -> dict:
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 3), "p90_ms": round(pct(ms, 0.9), 3),
            "p99_ms": round(pct(ms, 0.99), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=1000)
    ap.add_argument("--flows", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("bench/results/pipeline.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(PlatformConfig(data_dir=Path(tmp), port=free_port(),
                                           env={**os.environ, **loadgen.UNLIMITED_PLAN}))
        platform.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", platform.config.port, timeout=30)
            auth = {"Authorization": f"Bearer {platform.admin_token}"}
            post_headers = {**auth, "Content-Type": "application/json"}
            body = json.dumps(BODY)
            # First, with the pipeline idle: the latency of one booking's whole flow.
            flows = []
            for _ in range(args.flows):
                start = time.perf_counter()
                _, booking = timed(conn, "POST", "/api/v1/bookings", post_headers, body)
                while True:
                    _, got = timed(conn, "GET", f"/api/v1/bookings/{booking['id']}", auth)
                    if all(t["state"] == "done" for t in got["tasks"].values()):
                        break
                    time.sleep(0.005)
                flows.append((time.perf_counter() - start) * 1000)
            # Then the accept latency (this leaves a backlog the workers drain after).
            for _ in range(50):  # warm up both paths
                timed(conn, "GET", "/healthz", auth)
                timed(conn, "POST", "/api/v1/bookings", post_headers, body)
            # Interleave so both see the same machine noise.
            posts, floor = [], []
            for _ in range(args.posts):
                floor.append(timed(conn, "GET", "/healthz", auth)[0])
                posts.append(timed(conn, "POST", "/api/v1/bookings", post_headers, body)[0])
            # Again with the workers stopped: the accept path alone, without the
            # workers' PDF rendering competing for the same two cores.
            for name in [n for n in platform.children if "-worker-" in n]:
                platform.stop_component(name)
            conn.close()  # gunicorn closed it while idle (keep-alive timeout)
            quiet_posts, quiet_floor = [], []
            for _ in range(args.posts):
                quiet_floor.append(timed(conn, "GET", "/healthz", auth)[0])
                quiet_posts.append(timed(conn, "POST", "/api/v1/bookings", post_headers, body)[0])

        finally:
            platform.stop()

    result = {
        "post": summary(posts),
        "healthz_baseline": summary(floor),
        "post_over_baseline_median": round(statistics.median(posts) / statistics.median(floor), 2),
        "post_workers_stopped": summary(quiet_posts),
        "healthz_baseline_workers_stopped": summary(quiet_floor),
        "post_over_baseline_median_workers_stopped": round(statistics.median(quiet_posts)
                                                           / statistics.median(quiet_floor), 2),
        "post_to_all_tasks_done": summary(flows),
        "command": report.command(),
    }
    report.write(result, args.out)


if __name__ == "__main__":
    main()
