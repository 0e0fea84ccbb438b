"""Accept-path capacity alone, and where its CPU goes: POST /api/v1/bookings at N connections, workers stopped.

Small and quick (one platform), so two checkouts can be compared in turns on
the same machine, e.g. before and after a change:

    .venv/bin/python bench/capacity.py [--connections 50] [--seconds 10] [--target 1500]

Also measures, on the same platform, the floors a confirm cannot beat:
sequential POST and GET /healthz latency on one connection, and at the same
connection count GET /healthz (gunicorn and Flask with no work), GET of one
booking (the token check and one read), a bare WSGI app under the API's own
gunicorn settings (`floor_app.py`: the server with no Flask and no work), and
the pgbench ceiling for the same rows on the same Postgres.

Where the CPU goes: during each wrk run the CPU time of every process that
serves it (the API's gunicorn, Postgres, the relay, Redis, and wrk itself) is
read from /proc and divided by the requests answered.  On a machine that is
saturated, capacity is cores / (CPU per request), so the same figures say what
a target rate (`--target`) leaves the API per confirm once Postgres, the relay
and the load generator have had theirs, against what the server and Flask cost
before any work (`cpu_budget` below).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
from pathlib import Path

import beside
import loadgen
import pgstats
import report

from booking_embedded import free_port
from bookingctl.platform import Platform, PlatformConfig

#: The processes that serve a confirm, by the platform's component names.
SERVING = ("api", "postgres", "relay", "redis")


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(platform: Platform, run, *, extra_pids: dict[str, int] | None = None) -> dict:
    """`run()`'s wrk summary plus `cpu_ms_per_request` for each serving process (wrk included)."""
    pids = {name: platform.component(name).pid for name in SERVING}
    pids.update(extra_pids or {})
    before = {name: pgstats.cpu_seconds(pid) for name, pid in pids.items()}
    wrk_before = _children_cpu()
    result = run()
    after = {name: pgstats.cpu_seconds(pid) for name, pid in pids.items()}
    spent = {name: after[name] - before[name] for name in pids}
    spent["wrk"] = _children_cpu() - wrk_before
    result["cpu_ms_per_request"] = {name: round(s * 1000 / max(result["requests"], 1), 3) for name, s in spent.items()}
    return result


def cpu_budget(cpus: int, target_rps: float, confirm_cpu_ms: dict[str, float], api_floors: dict[str, float],
               *, burst_users: int = 50) -> dict:
    """What `target_rps` confirms a second leave the API per confirm, against the floors it cannot go under.

    At saturation every core is busy, so the rate is cpus / (CPU per confirm):
    the whole budget per confirm is `cpus * 1000 / target_rps` ms.  Postgres,
    the relay, Redis and the load generator take their measured share first;
    what is left is the API's.  `api_floors` are the API processes' own CPU per
    request for requests that do no booking work (an empty WSGI app, Flask's
    /healthz): a budget below them cannot be met by making the booking cheaper.
    The same arithmetic bounds a burst: `burst_users` confirms at one instant
    cannot all be answered sooner than their CPU spread over every core.
    """
    whole = cpus * 1000 / target_rps
    now = sum(confirm_cpu_ms.values())
    others = now - confirm_cpu_ms.get("api", 0.0)
    api_budget = whole - others
    return {
        "target_rps": target_rps, "cpus": cpus,
        "cpu_ms_per_confirm_at_target": round(whole, 3),
        "cpu_ms_per_confirm_now": round(now, 3),
        "others_ms_per_confirm": round(others, 3),
        "api_budget_ms_per_confirm": round(api_budget, 3),
        "api_ms_per_confirm_now": confirm_cpu_ms.get("api"),
        "api_floors_ms_per_request": api_floors,
        "api_budget_over_floors": {name: round(api_budget / ms, 2) for name, ms in api_floors.items() if ms > 0},
        "burst_users": burst_users,
        "burst_cpu_bound_ms": round(burst_users * now / cpus, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--target", type=float, default=1500.0, help="confirms per second to budget for (issue 9: 1,500)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/capacity.json"))
    args = ap.parse_args()
    loadgen.require_wrk()
    wrk = {"connections": args.connections, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "data", port=free_port(),
                                           env=env | loadgen.UNLIMITED_PLAN))
        platform.start()
        floor = None
        try:
            for name in [n for n in platform.children if "-worker-" in n]:
                platform.stop_component(name)
            base, token = platform.api_url, platform.admin_token
            client = loadgen.Client(base, token)
            posts = [client.request("POST", "/api/v1/bookings", loadgen.BODY) for _ in range(300)]
            sequential_healthz = [client.request("GET", "/healthz")[0] for _ in range(300)]
            client.close()
            one = f"{base}/api/v1/bookings/{json.loads(posts[-1][2])['id']}"
            load = measured(platform, lambda: loadgen.wrk_post(base, token, **wrk))
            healthz = measured(platform, lambda: loadgen.wrk_get(base + "/healthz", token, **wrk))
            read = measured(platform, lambda: loadgen.wrk_get(one, token, **wrk))
            floor_port = free_port()
            floor = beside.serve(platform, floor_port, "floor_app:app", "floor")
            bare = measured(platform, lambda: loadgen.wrk_post(f"http://127.0.0.1:{floor_port}", token, **wrk),
                            extra_pids={"floor": floor.pid})
            beside.stop(floor)
            floor = None
            db_url = platform.urls["DATABASE_URL"]
            pgbench = pgstats.pgbench_ceiling(db_url, pgstats.demo_tenant(db_url),
                                              clients=args.connections, seconds=args.seconds)
        finally:
            beside.stop(floor)
            platform.stop()
    floors = {"bare_wsgi_app": bare["cpu_ms_per_request"]["floor"],
              "flask_healthz": healthz["cpu_ms_per_request"]["api"]}
    cpus, spent = os.cpu_count() or 1, load["cpu_ms_per_request"]
    report.write({"sequential_post": loadgen.summary([p[0] for p in posts]),
                  "sequential_healthz": loadgen.summary(sequential_healthz),
                  "wrk_post_workers_stopped": load, "wrk_get_healthz": healthz, "wrk_get_one_booking": read,
                  "wrk_post_bare_wsgi_app": bare, "pgbench": pgbench,
                  "post_over_healthz_rps": round(load["rps"] / healthz["rps"], 2),
                  "post_over_get_one_booking_rps": round(load["rps"] / read["rps"], 2),
                  "post_over_pgbench": round(load["rps"] / pgbench["tps"], 3),
                  "budget": cpu_budget(cpus, args.target, spent, floors),
                  # Issue 9's other capacity target: a fifth of what Postgres does for the same rows.
                  "budget_at_a_fifth_of_pgbench": cpu_budget(cpus, pgbench["tps"] / 5, spent, floors),
                  "command": report.command()}, args.out)


if __name__ == "__main__":
    main()
