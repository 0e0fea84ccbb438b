"""Signed webhooks under load: healthy endpoints' delivery latency beside a black hole, and the accept path's cost.

    .venv/bin/python bench/webhooks.py [--bookings 2000] [--rate 40] [--endpoints 10] [--sleep 20]
                                       [--connections 50] [--seconds 10] [--rounds 3]

One platform as `bookingctl up` runs it (one webhook worker process, 16 threads).
The email, invoice and audit workers are stopped, so each booking makes one event
(`booking.created`) and one delivery per endpoint; the receivers run in this process
on 127.0.0.1, one HTTP server per endpoint.

1. **Delivery latency** (receive time minus the event's own timestamp, i.e. from the
   booking's commit): `--bookings` bookings posted at `--rate` per second to
   `--endpoints` endpoints, one of which sleeps `--sleep` s on every request (past the
   worker's 15 s timeout), then the same without that endpoint (it is disabled), in
   turns for `--rounds` rounds.  Reported per run: p50/p99 of the healthy endpoints and
   deliveries per second; and the ratios of the medians over the rounds, with the
   black hole over without.  The worker keeps its breaker state between rounds, as a
   running worker would.
2. **Accept-path capacity** with webhooks on (10 enabled endpoints: 10 deliveries and
   outbox rows written with each booking) and off (no endpoint: one index probe),
   wrk at `--connections` for `--seconds`, the webhook worker stopped, `--rounds`
   rounds in turns; the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import loadgen
import report

from booking_embedded import free_port
from bookingctl.platform import Platform, PlatformConfig

#: A percentile of no delivery: the ratio of the two runs is then NaN too, not an error.
NAN = float("nan")


class Receiver:
    """One endpoint's server: records each first delivery's latency; `sleep` holds every request."""

    def __init__(self, sleep: float = 0.0):
        self.sleep = sleep
        self.lock = threading.Lock()
        self.latencies: dict[str, float] = {}  # webhook-id -> seconds since the event
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the worker pools its connections

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                if receiver.sleep:
                    time.sleep(receiver.sleep)
                else:
                    event = json.loads(body)
                    at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
                    with receiver.lock:
                        receiver.latencies.setdefault(self.headers["webhook-id"], now - at)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.latencies)


def post_at_rate(client: loadgen.Client, n: int, rate: float) -> float:
    """Post `n` bookings, one every 1/rate s (sequential, one connection); returns the seconds it took."""
    start = time.perf_counter()
    for i in range(n):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        ms, status, body = client.request("POST", "/api/v1/bookings", loadgen.BODY)
        assert status == 201, body
    return time.perf_counter() - start


def latency_run(platform: Platform, client: loadgen.Client, healthy: list[Receiver], n: int, rate: float,
                timeout: float) -> dict:
    before = [r.count() for r in healthy]
    started = time.perf_counter()
    posting = post_at_rate(client, n, rate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(r.count() - b < n for r, b in zip(healthy, before, strict=True)):
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    got = [r.count() - b for r, b in zip(healthy, before, strict=True)]
    lat = []
    for r, b in zip(healthy, before, strict=True):
        with r.lock:
            lat += list(r.latencies.values())[b:]
    return {"bookings": n, "rate": rate, "posting_s": round(posting, 1), "healthy_endpoints": len(healthy),
            "delivered_to_healthy": sum(got), "expected": n * len(healthy),
            "p50_ms": round(loadgen.pct(lat, 0.5) * 1000, 1) if lat else NAN,
            "p99_ms": round(loadgen.pct(lat, 0.99) * 1000, 1) if lat else NAN,
            "max_ms": round(max(lat) * 1000, 1) if lat else None,
            "deliveries_per_s": round(sum(got) / elapsed, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bookings", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=40.0, help="bookings per second while measuring latency")
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--sleep", type=float, default=20.0, help="the bad endpoint's sleep per request")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/webhooks.json"))
    args = ap.parse_args()
    loadgen.require_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
        # No admission limit (wrk would be answered 429), and only the webhook worker runs.
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "data", port=free_port(),
                                           env=env | loadgen.UNLIMITED_PLAN,
                                           workers={"email": 0, "invoice": 0, "audit": 0, "webhook": 1}))
        platform.start()
        try:
            base, token = platform.api_url, platform.admin_token
            client = loadgen.Client(base, token)
            bad = Receiver(sleep=args.sleep)
            healthy = [Receiver() for _ in range(args.endpoints - 1)]
            ids = []
            for r in [bad, *healthy]:
                ms, status, body = client.request("POST", "/api/v1/webhooks/endpoints", {"url": r.url})
                assert status == 201, body
                ids.append(json.loads(body)["id"])
            timeout = 120 + args.bookings / args.rate * 3
            latency = {"with": [], "without": []}
            for _ in range(args.rounds):
                for mode in ("with", "without"):
                    client.request("PATCH", f"/api/v1/webhooks/endpoints/{ids[0]}", {"enabled": mode == "with"})
                    latency[mode].append(latency_run(platform, client, healthy, args.bookings, args.rate, timeout))
                    print(mode, "black hole:", latency[mode][-1], flush=True)

            platform.stop_component("webhook-worker-1")
            rounds = {"on": [], "off": []}
            for _ in range(args.rounds):
                for mode in ("off", "on"):
                    for i in ids:
                        client.request("PATCH", f"/api/v1/webhooks/endpoints/{i}", {"enabled": mode == "on"})
                    rounds[mode].append(loadgen.wrk_post(base, token, connections=args.connections,
                                                         seconds=args.seconds))
            client.close()
        finally:
            platform.stop()
    on = statistics.median(r["rps"] for r in rounds["on"])
    off = statistics.median(r["rps"] for r in rounds["off"])
    med = {mode: {q: statistics.median(r[q] for r in runs) for q in ("p50_ms", "p99_ms")}
           for mode, runs in latency.items()}
    report.write({
        "latency_with_black_hole": latency["with"], "latency_without": latency["without"],
        "healthy_medians_ms": med, "healthy_p50_ratio": round(med["with"]["p50_ms"] / med["without"]["p50_ms"], 2),
        "healthy_p99_ratio": round(med["with"]["p99_ms"] / med["without"]["p99_ms"], 2),
        "accept_rps_webhooks_off": [r["rps"] for r in rounds["off"]],
        "accept_rps_webhooks_on": [r["rps"] for r in rounds["on"]],
        "accept_on_over_off": round(on / off, 3),
        "accept_p99_ms_on_median": statistics.median(r["p99_ms"] for r in rounds["on"]),
        "accept_p99_ms_off_median": statistics.median(r["p99_ms"] for r in rounds["off"]),
        "cpus": os.cpu_count(), "command": report.command()}, args.out)


if __name__ == "__main__":
    main()
