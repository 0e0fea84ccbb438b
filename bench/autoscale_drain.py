"""Drain time of a burst of invoices: local autoscaling (1-4 processes) vs one fixed process.

For each mode, in one run: start a local platform, POST `--bookings` bookings as
fast as one client can, and time from the first POST until every invoice task is
done; with autoscaling, also the time from the first POST to the first scale-up
of the invoice pool (the reaction time).  Reports both and their ratio.

    .venv/bin/python bench/autoscale_drain.py [--bookings 200] [--out bench/results/autoscale_drain.json]
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

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path
import report  # bench/report.py: a script's own folder is on sys.path
from pipeline import BODY, timed

from booking_embedded import free_port
from booking_scaling.policy import Policy
from bookingctl.autoscale import DEFAULT_POLICIES
from bookingctl.platform import Platform, PlatformConfig


def run(tmp: str, name: str, bookings: int, autoscale: dict[str, Policy] | None) -> dict:
    platform = Platform(PlatformConfig(data_dir=Path(tmp) / name, port=free_port(),
                                       env={**os.environ, **loadgen.UNLIMITED_PLAN},
                                       autoscale=autoscale))
    platform.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", platform.config.port, timeout=30)
        auth = {"Authorization": f"Bearer {platform.admin_token}"}
        headers = {**auth, "Content-Type": "application/json"}
        body = json.dumps(BODY)
        start = time.perf_counter()
        first_scale_up = None
        ids = []
        for _ in range(bookings):
            ids.append(timed(conn, "POST", "/api/v1/bookings", headers, body)[1]["id"])
            if first_scale_up is None and len(platform.pool("invoice")) > 1:
                first_scale_up = time.perf_counter() - start
        posted = time.perf_counter() - start
        peak = len(platform.pool("invoice"))
        pending = set(ids)
        while pending:
            if first_scale_up is None and len(platform.pool("invoice")) > 1:
                first_scale_up = time.perf_counter() - start
            peak = max(peak, len(platform.pool("invoice")))
            _, page = timed(conn, "GET", "/api/v1/bookings?limit=100&state=done&task=invoice", auth)
            done = {b["id"] for b in page["items"]}
            cursor = page["next_cursor"]
            while cursor:
                _, page = timed(conn, "GET", f"/api/v1/bookings?limit=100&state=done&task=invoice&cursor={cursor}",
                                auth)
                done |= {b["id"] for b in page["items"]}
                cursor = page["next_cursor"]
            pending -= done
            time.sleep(0.2)
        drained = time.perf_counter() - start
    finally:
        platform.stop()
    return {"bookings": bookings, "post_seconds": round(posted, 2), "drain_seconds": round(drained, 2),
            "first_scale_up_seconds": None if first_scale_up is None else round(first_scale_up, 2),
            "peak_invoice_processes": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bookings", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("bench/results/autoscale_drain.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fixed = run(tmp, "fixed", args.bookings, None)
        scaled = run(tmp, "autoscaled", args.bookings, DEFAULT_POLICIES)
    result = {"fixed_one_invoice_process": fixed, "autoscaled_1_to_4": scaled,
              "drain_ratio_autoscaled_over_fixed": round(scaled["drain_seconds"] / fixed["drain_seconds"], 2),
              "command": " ".join(["python", *sys.argv])}
    report.write(result, args.out)


if __name__ == "__main__":
    main()
