"""Accept-path capacity alone: POST /api/v1/bookings at N connections with the workers stopped.

Small and quick (one platform, one wrk run), so two checkouts can be compared in
turns on the same machine, e.g. before and after a change:

    .venv/bin/python bench/capacity.py [--connections 50] [--seconds 10]

Also measures, on the same platform, the floors a confirm cannot beat:
sequential POST and GET /healthz latency on one connection, and at the same
connection count GET /healthz (gunicorn and Flask with no work: the HTTP
floor) and GET of one booking (the token check and one read).  The ratio of
POST to those ceilings says how much of the budget is the booking itself.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import loadgen
import report

from booking_embedded import free_port
from bookingctl.platform import Platform, PlatformConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("bench/results/capacity.json"))
    args = ap.parse_args()
    loadgen.require_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "data", port=free_port(), env=env))
        platform.start()
        try:
            for name in [n for n in platform.children if "-worker-" in n]:
                platform.stop_component(name)
            client = loadgen.Client(platform.api_url, platform.admin_token)
            posts = [client.request("POST", "/api/v1/bookings", loadgen.BODY) for _ in range(300)]
            floor = [client.request("GET", "/healthz")[0] for _ in range(300)]
            client.close()
            one = f"{platform.api_url}/api/v1/bookings/{json.loads(posts[-1][2])['id']}"
            wrk = {"connections": args.connections, "seconds": args.seconds}
            load = loadgen.wrk_post(platform.api_url, platform.admin_token, **wrk)
            healthz = loadgen.wrk_get(platform.api_url + "/healthz", platform.admin_token, **wrk)
            read = loadgen.wrk_get(one, platform.admin_token, **wrk)
        finally:
            platform.stop()
    report.write({"sequential_post": loadgen.summary([p[0] for p in posts]),
                  "sequential_healthz": loadgen.summary(floor),
                  "wrk_post_workers_stopped": load, "wrk_get_healthz": healthz, "wrk_get_one_booking": read,
                  "post_over_healthz_rps": round(load["rps"] / healthz["rps"], 2),
                  "post_over_get_one_booking_rps": round(load["rps"] / read["rps"], 2),
                  "command": report.command()}, args.out)


if __name__ == "__main__":
    main()
