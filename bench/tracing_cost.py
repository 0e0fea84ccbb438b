"""Cost of tracing on the POST's latency: two local platforms, one traced, measured in turns.

Platform A runs with tracing off (the default), platform B with the OTLP
exporter on (always_on sampler) sending to a local receiver.  Requests
alternate A, B, A, B… on keep-alive connections, so both see the same machine
noise; the workers are stopped first so only the request path is measured.
Medians and the B/A ratio are printed and written as JSON.

    .venv/bin/python bench/tracing_cost.py [--posts 1000] [--out bench/results/tracing_cost.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import report  # bench/report.py: a script's own folder is on sys.path
from otlp_receiver import OtlpReceiver  # noqa: E402
from pipeline import BODY, summary, timed  # noqa: E402

from booking_embedded import free_port  # noqa: E402
from bookingctl.platform import Platform, PlatformConfig  # noqa: E402


def start(tmp: str, name: str, env: dict) -> Platform:
    platform = Platform(PlatformConfig(data_dir=Path(tmp) / name, port=free_port(),
                                       env={**os.environ, **loadgen.UNLIMITED_PLAN, **env}))
    platform.start()
    return platform


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("bench/results/tracing_cost.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, OtlpReceiver() as receiver:
        plain = start(tmp, "plain", {})
        traced = start(tmp, "traced", {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                                       "OTEL_TRACES_SAMPLER": "always_on"})
        try:
            # The workers' PDF rendering would compete for the two cores: measure the accept path alone.
            for p in (plain, traced):
                for name in [n for n in p.children if "-worker-" in n]:
                    p.stop_component(name)
            clients = []
            for p in (plain, traced):
                conn = http.client.HTTPConnection("127.0.0.1", p.config.port, timeout=30)
                headers = {"Authorization": f"Bearer {p.admin_token}", "Content-Type": "application/json"}
                clients.append((conn, headers))
            body = json.dumps(BODY)
            for _ in range(50):
                for conn, headers in clients:
                    timed(conn, "POST", "/api/v1/bookings", headers, body)
            times: list[list[float]] = [[], []]
            for _ in range(args.posts):
                for i, (conn, headers) in enumerate(clients):
                    times[i].append(timed(conn, "POST", "/api/v1/bookings", headers, body)[0])
            spans = len(receiver.spans)
        finally:
            traced.stop()
            plain.stop()
    result = {
        "post_tracing_off": summary(times[0]),
        "post_tracing_on": summary(times[1]),
        "on_over_off_median": round(statistics.median(times[1]) / statistics.median(times[0]), 3),
        "spans_received": spans,
        "command": report.command(),
    }
    report.write(result, args.out)


if __name__ == "__main__":
    main()
