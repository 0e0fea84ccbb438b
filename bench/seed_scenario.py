"""The article's scenario as a benchmark: does the accept path stay free while the workers work?

One run, one machine, one local platform started as `bookingctl up` starts it
(embedded Postgres, Redis and SMTP sink, relay, autoscaled workers, gunicorn),
plus the synchronous baseline app (`bench/sync_app.py`) on the same servers:

  (a) sync baseline: 50 users confirm at the same instant on an app that sends
      the email, renders the PDF and writes the audit row inside the request;
      the dashboard (GET /api/v1/bookings?limit=20) is used meanwhile;
  (b) the async platform on the same burst (three bursts; the one with the median max is reported),
      dashboard used while the work completes;
  (c) capacity at 50 connections (wrk): workers stopped, then workers draining
      a backlog of at least --backlog bookings, the dashboard used throughout;
      then light use (the idle measurement again) while the backlog still drains;
  (d) the pgbench ceiling for the same rows, same Postgres;
  (e) Postgres commits and WAL bytes per booking: accept path vs everything after;
  (f) RSS of every process.

Prints and writes JSON (bench/results/seed_scenario.json) and a plot (PNG).

    .venv/bin/python bench/seed_scenario.py [--seconds 20] [--backlog 5000] [--connections 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))

import beside  # noqa: E402
import loadgen  # noqa: E402
import pgstats  # noqa: E402
import report  # noqa: E402

from booking_embedded import free_port  # noqa: E402
from bookingctl.autoscale import load_policies  # noqa: E402
from bookingctl.platform import Platform, PlatformConfig  # noqa: E402


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def workers(platform: Platform) -> list[str]:
    return [n for n in list(platform.children) if "-worker-" in n]


def running_workers(platform: Platform) -> int:
    """How many worker processes run now (those stopped on purpose not counted)."""
    return len([n for n in workers(platform) if n not in platform.held])


def stop_workers(platform: Platform) -> None:
    """Stop every worker process and keep the local autoscaler from replacing them."""
    with platform._control:
        platform.paused_autoscaler = getattr(platform, "paused_autoscaler", None) or platform.autoscaler
        platform.autoscaler = None
    for name in workers(platform):
        try:
            platform.stop_component(name)
        except KeyError:  # retired by the autoscaler meanwhile
            pass


def start_workers(platform: Platform) -> None:
    """Start the stopped workers again and hand the pools back to the autoscaler."""
    for name in workers(platform):
        if name in platform.held:
            platform.start_component(name)
    with platform._control:
        platform.autoscaler = getattr(platform, "paused_autoscaler", None) or platform.autoscaler
        platform.paused_autoscaler = None


def unfinished(url: str) -> dict[str, int]:
    """Tasks not yet done, per task (dead ones count as finished)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT task, count(*) FROM booking_tasks WHERE state NOT IN ('done', 'dead')"
                            " GROUP BY task").fetchall()
    return {t: n for t, n in rows}


def done_count(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT task, count(*) FROM booking_tasks WHERE state = 'done' GROUP BY task").fetchall()
    return {t: n for t, n in rows}


def done_per_second(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    """Tasks finished per second, per task, between two `done_count` readings."""
    return {t: round((after.get(t, 0) - before.get(t, 0)) / seconds, 1) for t in after}


def wait_done(url: str, ids: list[str], timeout: float) -> float | None:
    """Seconds until every task of `ids` is done, or None after `timeout`."""
    start = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - start < timeout:
            n = conn.execute("SELECT count(*) FROM booking_tasks WHERE booking_id = ANY(%s::uuid[])"
                             " AND state = 'done'", (ids,)).fetchone()[0]
            if n == 3 * len(ids):
                return round(time.monotonic() - start, 2)
            time.sleep(0.1)
    return None


def wait_drained(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not unfinished(url):
            return True
        time.sleep(0.5)
    return False


def sequential_posts(base: str, token: str, n: int) -> tuple[list[float], list[str]]:
    client = loadgen.Client(base, token)
    ms, ids = [], []
    try:
        for _ in range(n):
            t, status, body = client.request("POST", "/api/v1/bookings", loadgen.BODY)
            if status != 201:
                raise RuntimeError(f"POST: {status} {body[:200]!r}")
            ms.append(t)
            ids.append(json.loads(body)["id"])
    finally:
        client.close()
    return ms, ids


def measure_burst(base: str, token: str, users: int, db_url: str, path: str, *, wait_work: bool) -> dict:
    """`users` POST at once; then the dashboard is used until their work is done (or for 5 s)."""
    with loadgen.Background(base, token, loadgen.dashboard_path()) as dash:
        ms, statuses, ids = loadgen.burst(base, token, users, path)
        work = wait_done(db_url, [i for i in ids if i], 300) if wait_work else None
        if not wait_work:
            time.sleep(1)
    return {"post": loadgen.summary(ms), "statuses": sorted(set(statuses)),
            "all_201": all(s == 201 for s in statuses), "work_done_s": work,
            "dashboard_during": loadgen.summary(dash.result)}


def median_run(runs: list[dict]) -> dict:
    """The burst whose slowest answer is the median of the runs': one burst is 50 samples, and noisy."""
    return sorted(runs, key=lambda r: r["post"]["max_ms"])[len(runs) // 2]


def measure_load(base: str, token: str, connections: int, seconds: float) -> dict:
    """wrk POSTs from `connections` connections; the dashboard is used on one more."""
    with loadgen.Background(base, token, loadgen.dashboard_path(), pause=0.05) as dash:
        post = loadgen.wrk_post(base, token, connections=connections, seconds=seconds)
    return {"post": post, "dashboard_during": loadgen.summary(dash.result)}


def rss_report(platform: Platform) -> dict:
    # A copy: the local autoscaler may start or stop a worker meanwhile.
    out = {name: pgstats.rss_mib(child.pid) for name, child in list(platform.children.items()) if child.alive()}
    for name, server in list(platform.servers.items()):
        if server.child is not None and server.child.alive():
            out[name] = pgstats.rss_mib(server.child.pid)
    return out


def run(args) -> dict:
    result: dict = {"command": report.command(), "cpus": os.cpu_count(),
                    "connections": args.connections, "burst_users": args.users}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
        platform = Platform(PlatformConfig(data_dir=Path(tmp) / "data", port=free_port(),
                                           env=env | loadgen.UNLIMITED_PLAN,
                                           autoscale=load_policies(None)))
        platform.start()
        sync = None
        try:
            base, token, db_url = platform.api_url, platform.admin_token, platform.urls["DATABASE_URL"]
            tenant_id = pgstats.demo_tenant(db_url)
            # Warm up every path (imports, pools, WeasyPrint fonts), then let it drain.
            sequential_posts(base, token, 30)
            loadgen.loop_get(base, token, loadgen.dashboard_path(), count=100)
            wait_drained(db_url, 120)

            print("idle latencies …", file=sys.stderr)
            result["idle"] = {
                "dashboard": loadgen.summary(loadgen.loop_get(base, token, loadgen.dashboard_path(), count=500)),
                "post": loadgen.summary(sequential_posts(base, token, 300)[0]),
            }
            wait_drained(db_url, 120)

            print("(e) commits and WAL per booking …", file=sys.stderr)
            stop_workers(platform)
            platform.stop_component("relay")
            c0 = pgstats.counters(db_url)
            _, ids = sequential_posts(base, token, 100)
            c1 = pgstats.counters(db_url)
            platform.start_component("relay")
            start_workers(platform)
            wait_done(db_url, ids, 300)
            time.sleep(1)
            c2 = pgstats.counters(db_url)
            pgdata = platform.data_dir / "postgres" if "DATABASE_URL" not in os.environ else None
            result["cost_per_booking"] = {"accept_path": pgstats.per_booking(c0, c1, 100, pgdata),
                                          "after_accept": pgstats.per_booking(c1, c2, 100, pgdata)}

            print("(b) async burst …", file=sys.stderr)
            runs = []
            for _ in range(args.bursts):
                runs.append(measure_burst(base, token, args.users, db_url, "/api/v1/bookings", wait_work=True))
                wait_drained(db_url, 120)
            result["async_burst"] = median_run(runs)
            result["async_burst_runs"] = [{"post": r["post"], "dashboard_p99_ms": r["dashboard_during"].get("p99_ms")}
                                          for r in runs]

            print("(c) capacity, workers stopped …", file=sys.stderr)
            stop_workers(platform)
            result["workers_stopped"] = measure_load(base, token, args.connections, args.seconds)
            while sum(unfinished(db_url).values()) < 3 * args.backlog:
                loadgen.wrk_post(base, token, connections=args.connections, seconds=5)
            backlog = unfinished(db_url)
            print(f"(c) capacity, workers draining a backlog of {backlog} tasks …", file=sys.stderr)
            start_workers(platform)
            time.sleep(5)  # the autoscaler sees the backlog and starts its processes
            d0, t0 = done_count(db_url), time.monotonic()
            draining = measure_load(base, token, args.connections, args.seconds)
            d1, t1 = done_count(db_url), time.monotonic()
            draining["backlog_tasks_at_start"] = backlog
            draining["tasks_done_per_s"] = done_per_second(d0, d1, t1 - t0)
            draining["worker_processes"] = running_workers(platform)
            result["workers_draining"] = draining
            result["rss_mib_while_draining"] = rss_report(platform)
            # Users clicking while the backlog drains (the article's "everything keeps
            # responding normally"): the idle measurement again, now beside the workers.
            # The workers' pace meanwhile shows the backlog drains once the load is light.
            print("(c) light use while the workers drain …", file=sys.stderr)
            d0, t0 = done_count(db_url), time.monotonic()
            light = {
                "dashboard": loadgen.summary(loadgen.loop_get(base, token, loadgen.dashboard_path(), count=500)),
                "post": loadgen.summary(sequential_posts(base, token, 300)[0]),
            }
            d1, t1 = done_count(db_url), time.monotonic()
            light["tasks_done_per_s"] = done_per_second(d0, d1, t1 - t0)
            light["backlog_tasks_left"] = unfinished(db_url)
            light["worker_processes"] = running_workers(platform)
            result["light_use_while_draining"] = light

            print("(d) pgbench ceiling …", file=sys.stderr)
            stop_workers(platform)
            result["pgbench"] = [pgstats.pgbench_ceiling(db_url, tenant_id, clients=c, seconds=10) for c in (8, 50)]

            print("(a) synchronous baseline …", file=sys.stderr)
            sync_port = free_port()
            sync = beside.serve(platform, sync_port, "sync_app:app", "sync")
            sync_base = f"http://127.0.0.1:{sync_port}"
            client = loadgen.Client(sync_base, token)
            for _ in range(5):
                _, status, body = client.request("POST", "/api/v1/sync/bookings", loadgen.BODY)
                if status != 201:
                    raise RuntimeError(f"sync app: POST {status} {body[:300]!r}; see {platform.log_dir}/sync.log")
            client.close()
            client = loadgen.Client(sync_base, token)
            result["sync_idle_post"] = loadgen.summary(
                [client.request("POST", "/api/v1/sync/bookings", loadgen.BODY)[0] for _ in range(30)])
            client.close()
            result["sync_burst"] = measure_burst(sync_base, token, args.users, db_url, "/api/v1/sync/bookings",
                                                 wait_work=False)
        finally:
            beside.stop(sync)
            platform.stop()
    return result


def verdict(r: dict) -> dict:
    """The issue's targets, each with its measured ratio."""
    stopped, draining, idle = r["workers_stopped"], r["workers_draining"], r["idle"]
    ceiling = max(p["tps"] for p in r["pgbench"])
    return {
        "draining_capacity_over_stopped": ratio(draining["post"]["rps"], stopped["post"]["rps"]),
        "draining_post_p99_over_stopped": ratio(draining["post"]["p99_ms"], stopped["post"]["p99_ms"]),
        "draining_dashboard_p99_over_idle": ratio(draining["dashboard_during"]["p99_ms"], idle["dashboard"]["p99_ms"]),
        "light_use_draining_post_p99_over_idle": ratio(r["light_use_while_draining"]["post"]["p99_ms"],
                                                       r["idle"]["post"]["p99_ms"]),
        "light_use_draining_dashboard_p99_over_idle": ratio(r["light_use_while_draining"]["dashboard"]["p99_ms"],
                                                            r["idle"]["dashboard"]["p99_ms"]),
        "draining_dashboard_p99_over_stopped": ratio(draining["dashboard_during"]["p99_ms"],
                                                     stopped["dashboard_during"]["p99_ms"]),
        "burst_all_201": r["async_burst"]["all_201"],
        "burst_post_max_ms": r["async_burst"]["post"]["max_ms"],
        "burst_dashboard_p99_over_idle": ratio(r["async_burst"]["dashboard_during"]["p99_ms"],
                                               idle["dashboard"]["p99_ms"]),
        "capacity_workers_stopped_rps": stopped["post"]["rps"],
        "capacity_over_pgbench_ceiling": ratio(stopped["post"]["rps"], ceiling),
        "commits_per_booking_after_accept": r["cost_per_booking"]["after_accept"]["commits"],
        "write_commits_per_booking_after_accept": r["cost_per_booking"]["after_accept"].get("write_commits"),
        "sync_over_async_burst_post_p50": ratio(r["sync_burst"]["post"]["p50_ms"], r["async_burst"]["post"]["p50_ms"]),
        "sync_over_async_burst_dashboard_p99": ratio(r["sync_burst"]["dashboard_during"]["p99_ms"],
                                                     r["async_burst"]["dashboard_during"]["p99_ms"]),
    }


def plot(r: dict, path: Path) -> None:
    """Three panels: the burst (sync vs async), the dashboard's p99, and throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.6))
    labels = ["p50", "p99", "max"]
    x = range(len(labels))
    sync = [r["sync_burst"]["post"][k] for k in ("p50_ms", "p99_ms", "max_ms")]
    asyn = [r["async_burst"]["post"][k] for k in ("p50_ms", "p99_ms", "max_ms")]
    a.bar([i - 0.2 for i in x], sync, 0.4, label="synchronous (work in the request)", color="#c0504d")
    a.bar([i + 0.2 for i in x], asyn, 0.4, label="async platform", color="#4f81bd")
    a.set_xticks(list(x), labels)
    a.set_yscale("log")
    a.set_ylabel("ms (log)")
    a.set_title(f"POST latency, {r['burst_users']} users confirm at once")
    a.legend(fontsize=8)

    dash = {"idle": r["idle"]["dashboard"]["p99_ms"],
            "async burst": r["async_burst"]["dashboard_during"]["p99_ms"],
            "sync burst": r["sync_burst"]["dashboard_during"].get("p99_ms", 0),
            f"{r['connections']} conns,\nstopped": r["workers_stopped"]["dashboard_during"]["p99_ms"],
            f"{r['connections']} conns,\ndraining": r["workers_draining"]["dashboard_during"]["p99_ms"],
            "light use,\ndraining": r["light_use_while_draining"]["dashboard"]["p99_ms"]}
    b.bar(list(dash), list(dash.values()),
          color=["#9bbb59", "#4f81bd", "#c0504d", "#8064a2", "#f79646", "#4bacc6"])
    b.set_yscale("log")
    b.set_ylabel("ms (log)")
    b.set_title("Dashboard GET p99 (1 connection)")
    b.tick_params(axis="x", labelsize=7)

    tput = {"workers\nstopped": r["workers_stopped"]["post"]["rps"],
            "workers\ndraining": r["workers_draining"]["post"]["rps"],
            "pgbench\nceiling": max(p["tps"] for p in r["pgbench"])}
    c.bar(list(tput), list(tput.values()), color=["#8064a2", "#f79646", "#7f7f7f"])
    c.set_ylabel("bookings/s")
    c.set_title(f"Accept capacity at {r['connections']} connections")
    for i, v in enumerate(tput.values()):
        c.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"Seed scenario on {r['cpus']} cores (bench/seed_scenario.py)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20, help="length of each wrk run")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--users", type=int, default=50, help="users in the burst")
    ap.add_argument("--bursts", type=int, default=3, help="async bursts; the one with the median max is reported")
    ap.add_argument("--backlog", type=int, default=5000, help="bookings queued before the draining run")
    ap.add_argument("--out", type=Path, default=Path("bench/results/seed_scenario.json"))
    ap.add_argument("--plot", type=Path, default=Path("bench/results/seed_scenario.png"))
    args = ap.parse_args()
    loadgen.require_wrk()
    result = run(args)
    result["targets"] = verdict(result)
    plot(result, args.plot)
    report.write(result, args.out)


if __name__ == "__main__":
    main()
