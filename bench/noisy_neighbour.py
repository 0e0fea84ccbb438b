"""Noisy neighbour (issue 20): a quiet tenant's time to done while another tenant floods, FIFO vs fair.

For each run, one local platform (what `bookingctl up` starts: one worker process per
queue), in one invocation:

- `fifo-shared`: `BOOKING_RELAY_ORDER=fifo` (the old order). A noisy tenant POSTs
  `--noisy` bookings over `--connections` keep-alive connections; from its first POST,
  `--quiet` quiet tenants each confirm one booking every `--interval` seconds until the
  noisy tenant's work is done (or `--max-seconds`);
- `fair-shared`: the same with the fair order (the default);
- `fair-alone`: the fair order, the noisy tenant alone (its drain rate alone).

Latency is read from Postgres, not polled: a quiet booking's POST -> done for each task
is its task's `done` write (`booking_tasks.updated_at`) minus the booking's `created_at`.
Each quiet booking is also tagged with the noisy tenant's backlog (tasks not done) at its
POST, so the issue's targets can be read "while the noisy backlog exceeds
`--backlog-over` tasks". The noisy drain rate is its invoices done per second from its
first POST to its last invoice (the invoice worker is the bottleneck on 2 cores).

    .venv/bin/python bench/noisy_neighbour.py [--noisy 3000] [--quiet 5] [--interval 2]
        [--runs fifo-shared,fair-shared,fair-alone] [--out bench/results/noisy_neighbour.json]

Writes the JSON and a PNG beside it: per run, the noisy tenant's tasks left over time
and every quiet task's POST -> done latency at its POST time.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import report  # bench/report.py: a script's own folder is on sys.path
from pipeline import BODY, timed
from psycopg.rows import dict_row

from booking_core.model import tenants
from booking_embedded import free_port
from bookingctl.platform import Platform, PlatformConfig

TASKS = ("email", "invoice", "audit")


class PatientPlatform(Platform):
    """A platform that waits up to `--ready-seconds` for its processes: on a machine shared with other
    loads the workers, at the idle scheduling class, can take minutes to serve their metrics.  With
    `--worker-class normal` they run at nice 10 only: at SCHED_IDLE a worker gets no CPU at all while
    other loads keep both cores busy, and the order between tenants does not depend on it."""

    ready_seconds = 180.0
    idle_workers = True

    def _wait_ready(self, timeout: float | None = None) -> None:
        super()._wait_ready(self.ready_seconds if timeout is None else timeout)

    def _spawn(self, spec):
        return super()._spawn(spec if self.idle_workers else dataclasses.replace(spec, cpu_idle=False))


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 2)


def tenant_token(conn: psycopg.Connection, name: str) -> tuple[str, str]:
    tenant = tenants.ensure_tenant(conn, f"{name}-{uuid.uuid4().hex[:6]}")
    return tenant["id"], tenants.create_token(conn, tenant["id"], label="bench")["token"]


def post(port: int, token: str, conn: list) -> str:
    """POST one booking on the keep-alive connection `conn[0]`; a refused or lost one is sent again."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    while True:
        try:
            return timed(conn[0], "POST", "/api/v1/bookings", headers, json.dumps(BODY))[1]["id"]
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            print(f"POST failed ({e}); again", flush=True)
            conn[0].close()
            conn[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            time.sleep(0.5)


def post_bookings(port: int, token: str, count: int, out: list[str]) -> None:
    conn = [http.client.HTTPConnection("127.0.0.1", port, timeout=60)]
    for _ in range(count):
        out.append(post(port, token, conn))


def noisy_left(db: psycopg.Connection, tenant_id: str) -> int:
    return db.execute("SELECT count(*) AS n FROM booking_tasks t JOIN bookings b ON b.id = t.booking_id"
                      " WHERE b.tenant_id = %s AND t.state <> 'done'", (tenant_id,)).fetchone()["n"]


def run(tmp: str, name: str, args) -> dict:
    order, mode = name.split("-")
    env = {**os.environ, "BOOKING_RELAY_ORDER": order}
    platform = PatientPlatform(PlatformConfig(data_dir=Path(tmp) / name, port=free_port(), env=env))
    platform.start()
    try:
        db = psycopg.connect(platform.urls["DATABASE_URL"], row_factory=dict_row, autocommit=True)
        noisy_id, noisy_token = tenant_token(db, "noisy-import")
        quiet = [tenant_token(db, f"quiet-hotel-{i}") for i in range(args.quiet if mode == "shared" else 0)]
        noisy_ids: list[str] = []
        per = [args.noisy // args.connections + (i < args.noisy % args.connections) for i in range(args.connections)]
        posters = [threading.Thread(target=post_bookings, args=(platform.config.port, noisy_token, n, noisy_ids))
                   for n in per]
        stop = threading.Event()
        quiet_posts: list[dict] = []
        backlog_now = [0]

        def quiet_tenant(token: str, offset: float) -> None:
            conn = [http.client.HTTPConnection("127.0.0.1", platform.config.port, timeout=60)]
            if stop.wait(offset):
                return
            while not stop.is_set():
                next_at = time.monotonic() + args.interval
                booking_id = post(platform.config.port, token, conn)
                quiet_posts.append({"id": booking_id, "noisy_backlog": backlog_now[0],
                                    "at": time.monotonic() - start})
                stop.wait(max(0.0, next_at - time.monotonic()))

        start = time.monotonic()
        for t in posters:
            t.start()
        quiet_threads = [threading.Thread(target=quiet_tenant, args=(tok, i * args.interval / max(1, len(quiet))))
                         for i, (_, tok) in enumerate(quiet)]
        for t in quiet_threads:
            t.start()
        timeline = []
        posted_at = None
        while time.monotonic() - start < args.max_seconds:
            posting = any(t.is_alive() for t in posters)
            if not posting and posted_at is None:
                posted_at = time.monotonic() - start
            left = noisy_left(db, noisy_id) + (args.noisy - len(noisy_ids)) * len(TASKS)
            backlog_now[0] = left
            timeline.append((round(time.monotonic() - start, 2), left))
            if not posting and left == 0:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - start
        stop.set()
        for t in (*posters, *quiet_threads):
            t.join(60)
        last_invoice = db.execute(
            "SELECT extract(epoch FROM max(t.updated_at) - min(b.created_at)) AS s, count(*) FILTER"
            " (WHERE t.state = 'done') AS done FROM booking_tasks t JOIN bookings b ON b.id = t.booking_id"
            " WHERE b.tenant_id = %s AND t.task = 'invoice'", (noisy_id,)).fetchone()
        # Quiet bookings: POST -> done per task, from Postgres' own timestamps; undone ones are left out
        # and counted (the run ended before they finished).
        rows = db.execute(
            "SELECT t.booking_id::text AS id, t.task, t.state,"
            " extract(epoch FROM t.updated_at - b.created_at) AS s FROM booking_tasks t JOIN bookings b"
            " ON b.id = t.booking_id WHERE t.booking_id = ANY(%s::uuid[])",
            ([p["id"] for p in quiet_posts],)).fetchall()
        db.close()
    finally:
        platform.stop()
    tag = {p["id"]: p for p in quiet_posts}
    latency: dict[str, dict] = {}
    points = []
    for task in TASKS:
        done = [r for r in rows if r["task"] == task and r["state"] == "done"]
        during = [float(r["s"]) for r in done if tag[r["id"]]["noisy_backlog"] > args.backlog_over]
        every = [float(r["s"]) for r in done]
        latency[task] = {
            "while_backlog_over": {"n": len(during), "p50": pct(during, 0.5), "p99": pct(during, 0.99),
                                   "max": pct(during, 1.0)},
            "all": {"n": len(every), "p50": pct(every, 0.5), "p99": pct(every, 0.99), "max": pct(every, 1.0)},
            "not_done_at_end": sum(1 for r in rows if r["task"] == task and r["state"] != "done"),
        }
        points += [(tag[r["id"]]["at"], float(r["s"]), task) for r in done]
    invoices = int(last_invoice["done"] or 0)
    seconds = float(last_invoice["s"] or 0)
    return {
        "order": order, "quiet_tenants": len(quiet), "noisy_bookings": args.noisy,
        "noisy_post_seconds": round(posted_at or elapsed, 1), "elapsed_seconds": round(elapsed, 1),
        "noisy_drained": timeline[-1][1] == 0 if timeline else False,
        "noisy_invoices_done": invoices,
        "noisy_invoices_per_second": round(invoices / seconds, 2) if seconds else None,
        "quiet_bookings": len(quiet_posts),
        "quiet_post_to_done_seconds": latency,
        "_timeline": timeline, "_points": points,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 7), squeeze=False)
    for col, name in enumerate(names):
        r = results[name]
        t, left = zip(*r["_timeline"], strict=True) if r["_timeline"] else ((), ())
        axes[0][col].plot(t, left)
        axes[0][col].set_title(f"{name}: noisy tenant's tasks left")
        axes[0][col].set_xlabel("s since the first POST")
        for task, colour in zip(TASKS, ("tab:blue", "tab:orange", "tab:green"), strict=True):
            pts = [(a, s) for a, s, k in r["_points"] if k == task]
            if pts:
                xs, ys = zip(*pts, strict=True)
                axes[1][col].scatter(xs, ys, s=8, label=task, color=colour)
        axes[1][col].set_title(f"{name}: quiet tenants' POST -> done")
        axes[1][col].set_xlabel("POST at (s)")
        axes[1][col].set_ylabel("s")
        axes[1][col].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--noisy", type=int, default=3000, help="bookings the noisy tenant POSTs")
    ap.add_argument("--quiet", type=int, default=5, help="quiet tenants")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between a quiet tenant's bookings")
    ap.add_argument("--connections", type=int, default=8, help="the noisy tenant's connections")
    ap.add_argument("--backlog-over", type=int, default=None,
                    help="report quiet latency while the noisy backlog (tasks) exceeds this (default: half of all)")
    ap.add_argument("--max-seconds", type=float, default=1800)
    ap.add_argument("--ready-seconds", type=float, default=180, help="how long a platform may take to start")
    ap.add_argument("--worker-class", choices=("idle", "normal"), default="idle",
                    help="the workers' CPU scheduling class: idle (as `bookingctl up`) or normal (nice 10 only)")
    ap.add_argument("--runs", default="fifo-shared,fair-shared,fair-alone")
    ap.add_argument("--out", type=Path, default=Path("bench/results/noisy_neighbour.json"))
    args = ap.parse_args()
    PatientPlatform.ready_seconds = args.ready_seconds
    PatientPlatform.idle_workers = args.worker_class == "idle"
    if args.backlog_over is None:
        args.backlog_over = args.noisy * len(TASKS) // 2
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runs.split(","):
            results[name] = run(tmp, name, args)
    png = args.out.with_suffix(".png")
    plot(results, png)
    summary = {}
    shared, alone = results.get("fair-shared"), results.get("fair-alone")
    if shared and alone and alone["noisy_invoices_per_second"]:
        summary["fair_noisy_drain_shared_over_alone"] = round(
            shared["noisy_invoices_per_second"] / alone["noisy_invoices_per_second"], 3)
    fifo = results.get("fifo-shared")
    if fifo and shared:
        for task in TASKS:
            a = fifo["quiet_post_to_done_seconds"][task]["while_backlog_over"]["p50"]
            b = shared["quiet_post_to_done_seconds"][task]["while_backlog_over"]["p50"]
            if a and b:
                summary[f"quiet_{task}_p50_fifo_over_fair"] = round(a / b, 1)
    report.write({"command": report.command(), "backlog_over_tasks": args.backlog_over, "summary": summary,
                  "plot": str(png), "runs": {k: {f: v for f, v in r.items() if not f.startswith("_")}
                                              for k, r in results.items()}}, args.out)


if __name__ == "__main__":
    main()
