"""A soak: the local platform under mixed load for --minutes, watched for deadlocks and growing processes.

One platform as `bookingctl up --no-autoscale` runs it (one Dramatiq process per
queue, 4 threads each: the same processes from start to end, so their memory can
be compared; `--autoscale` uses bookingctl's default policies instead), and for
--minutes (default 10; use 1 or 2 for a quick check):
  * POST /api/v1/bookings at a changing rate: a 60 s cycle of 30 s at --rate,
    10 s at 2.5x (a burst) and 20 s at half, Poisson arrivals, from 6 client
    threads; two tenants (3 in 4 for `demo`); a third carry an Idempotency-Key
    and one in ten of those is sent again (a replay); one in 25 is for a
    recipient the SMTP sink refuses (550: the email is dead-lettered at once);
  * an SMTP outage of 15 s every 150 s: those emails go `retrying`, then `done`;
  * an operator every 30 s: lists the dead letters and the queues, requeues the
    email queue's letters in bulk and retries one dead task by name (the
    recipients still refuse, so they die again: the next round has work too);
  * a reader every second: the dashboard list, one recent booking, and every
    fifth second that booking's invoice PDF and progress page.
Then it stops the load and waits (up to --drain-minutes) for the backlog to finish.

It reports: "deadlock detected" lines in the Postgres log and Postgres's own
deadlock counter (both must be 0); the RSS of every process when the platform is
ready, after the first 1,000 finished tasks, when the load stops and after the
drain (a Dramatiq worker process passes when its RSS after the drain is within
1.2x of its RSS after 1,000 tasks); tasks that went `retrying` or `dead`, by task
(from the event log); tracebacks per log; POST statuses and latency.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 2] [--out bench/results/soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path
import procs
import report
from loadgen import Client, pct

from booking_core import db
from booking_core.model import tenants
from booking_embedded import free_port
from bookingctl.autoscale import load_policies
from bookingctl.platform import Platform, PlatformConfig

REFUSED = "refused.soak.test"
#: The share of bookings whose email is refused, whose POST carries a key, and of keyed ones sent twice.
REFUSED_SHARE, KEYED_SHARE, REPLAY_SHARE = 1 / 25, 1 / 3, 1 / 10
TASKS_MILESTONE = 1000
MAX_GROWTH = 1.2


def rate_at(elapsed: float, base: float) -> float:
    """Bookings per second `elapsed` seconds into the run: 30 s at base, 10 s at 2.5x, 20 s at half."""
    phase = elapsed % 60
    return base if phase < 30 else base * 2.5 if phase < 40 else base / 2


def booking_body(i: int, rng: random.Random) -> dict:
    """The i-th booking: every field varies, some text is not ASCII, a few recipients are refused."""
    refused = rng.random() < REFUSED_SHARE
    nights, currency = 1 + i % 9, ("EUR", "GBP", "CHF", "JPY")[i % 4]
    amount = f"{8000 + i}" if currency == "JPY" else f"{80 + i % 500}.{i % 100:02d}"  # JPY has no minor unit
    return {"customer": {"name": f"Zoë Łukasiewicz {i}", "email": f"{'bounce' if refused else 'guest'}{i}@"
                         f"{REFUSED if refused else 'example.com'}"},
            "item": f"Room {i % 40} · sea view", "check_in": "2027-05-01", "check_out": f"2027-05-{1 + nights:02d}",
            "amount": amount, "currency": currency}


class Load:
    """The client side: bookers, operator, reader; each counts what it saw."""

    def __init__(self, platform: Platform, tokens: list[tuple[str, float]], rate: float, seed: int = 18):
        self.platform, self.tokens, self.rate = platform, tokens, rate
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.post_ms: list[float] = []
        self.keyed: list[tuple[str, str, dict]] = []
        self.recent: list[str] = []
        self.operator: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()
        self.outages = 0
        self._local = threading.local()

    def client(self, token: str, base: str | None = None) -> Client:
        """This thread's keep-alive connection for `token` (to the API unless `base` says otherwise)."""
        clients = self._local.__dict__.setdefault("clients", {})
        key = (token, base or self.platform.api_url)
        if key not in clients:
            clients[key] = Client(key[1], token)
        return clients[key]

    def post(self, i: int, token: str, body: dict, key: str | None) -> None:
        ms, status, raw = self.client(token).request("POST", "/api/v1/bookings", body,
                                                    headers={"Idempotency-Key": key} if key else None)
        with self.lock:
            self.statuses[f"{'replay' if i < 0 else 'post'} {status}"] += 1
            self.post_ms.append(ms)
            if status == 201 and i >= 0 and token == self.tokens[0][0]:  # the reader reads as that tenant
                self.recent = [json.loads(raw)["id"], *self.recent[:49]]

    def bookers(self, pool: ThreadPoolExecutor) -> None:
        start, i = time.monotonic(), 0
        while not self.stop.wait(self.rng.expovariate(rate_at(time.monotonic() - start, self.rate))):
            i += 1
            token = self.tokens[0][0] if self.rng.random() < self.tokens[0][1] else self.tokens[1][0]
            body, key = booking_body(i, self.rng), None
            if self.rng.random() < KEYED_SHARE:
                key = f"soak-{uuid.uuid4()}"
                with self.lock:
                    self.keyed = [(token, key, body), *self.keyed[:99]]
            pool.submit(self.post, i, token, body, key)
            if self.keyed and self.rng.random() < KEYED_SHARE * REPLAY_SHARE:
                token_r, key_r, body_r = self.rng.choice(self.keyed)
                pool.submit(self.post, -i, token_r, body_r, key_r)

    def operate(self, every: float = 30.0) -> None:
        admin = self.platform.admin_token
        while not self.stop.wait(every):
            c = self.client(admin)
            _, status, _ = c.request("GET", "/api/v1/ops/queues")
            self.operator[f"GET queues {status}"] += 1
            _, status, raw = c.request("GET", "/api/v1/ops/dead-letters?queue=email&limit=20")
            self.operator[f"GET dead-letters {status}"] += 1
            items = json.loads(raw)["items"] if status == 200 else []
            # The oldest letter's task retried by name, then the rest requeued in bulk, seconds apart.
            if items and items[0].get("booking_id"):
                _, status, _ = c.request("POST", f"/api/v1/ops/bookings/{items[0]['booking_id']}/tasks/email/retry")
                self.operator[f"POST task retry {status}"] += 1
            _, status, raw = c.request("POST", "/api/v1/ops/dead-letters/requeue", {"queue": "email"})
            self.operator[f"POST bulk requeue {status}"] += 1
            if status == 202:  # a bulk job, done by the relay's runner: counted by what it had matched
                self.operator["letters matched by bulk jobs"] += json.loads(raw)["counts"]["total"]

    def read(self, every: float = 1.0) -> None:
        token, n = self.tokens[0][0], 0
        while not self.stop.wait(every):
            n += 1
            c = self.client(token)
            _, status, _ = c.request("GET", "/api/v1/bookings?limit=20")
            self.reads[f"list {status}"] += 1
            with self.lock:
                recent = self.recent[len(self.recent) // 2] if self.recent else None
            if recent is None:
                continue
            _, status, raw = c.request("GET", f"/api/v1/bookings/{recent}")
            self.reads[f"booking {status}"] += 1
            if n % 5 == 0 and status == 200:
                _, status, _ = c.request("GET", f"/api/v1/bookings/{recent}/invoice")
                self.reads[f"invoice {status}"] += 1
                page = json.loads(raw)["links"].get("status_page")
                if page:
                    base, path = page.split("/status/", 1)
                    _, status, _ = self.client(token, base).request("GET", f"/status/{path}")
                    self.reads[f"status page {status}"] += 1

    def smtp_outages(self, every: float = 150.0, length: float = 15.0) -> None:
        while not self.stop.wait(every):
            self.platform.stop_component("smtp")
            self.outages += 1
            self.stop.wait(length)
            self.platform.start_component("smtp")


def task_counts(url: str) -> dict[str, int]:
    with db.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT state, count(*) AS n FROM booking_tasks GROUP BY state").fetchall()
    return {r["state"]: r["n"] for r in rows}


def went_through(url: str) -> dict[str, dict[str, int]]:
    """Per state of interest, how many tasks ever entered it, by task (the event log keeps every change)."""
    with db.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT state, task, count(DISTINCT booking_id) AS n FROM booking_events"
                            " WHERE state IN ('retrying', 'dead') GROUP BY state, task").fetchall()
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["state"], {})[r["task"]] = r["n"]
    return out


def pg_deadlocks(url: str) -> int:
    with db.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
                            ).fetchone()["deadlocks"]


def log_counts(log_dir: Path) -> dict[str, dict[str, int]]:
    """Per log file: lines saying "deadlock detected", and tracebacks."""
    out = {}
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(errors="replace")
        counts = {"deadlock_detected": len(re.findall(r"deadlock detected", text)),
                  "tracebacks": text.count("Traceback (most recent call last)")}
        if any(counts.values()):
            out[path.name] = counts
    return out


def growth(at_milestone: dict, last: dict) -> dict[str, dict]:
    """Each process's RSS after the milestone and at the end, their ratio, and whether it is the same pid."""
    out = {}
    for name, before in at_milestone.items():
        after = last.get(name)
        if after is None:
            out[name] = {"at_milestone_mb": before["rss_mb"], "end_mb": None, "ratio": None, "same_pid": False}
            continue
        out[name] = {"at_milestone_mb": before["rss_mb"], "end_mb": after["rss_mb"],
                     "ratio": round(after["rss_mb"] / before["rss_mb"], 3), "same_pid": after["pid"] == before["pid"]}
    return out


def machine_load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1_5_15": [round(one, 2), round(five, 2), round(fifteen, 2)], "cpus": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=2.0, help="bookings per second outside bursts and lulls")
    ap.add_argument("--drain-minutes", type=float, default=10.0)
    ap.add_argument("--autoscale", action="store_true", help="scale workers as `bookingctl up` does by default")
    ap.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(PlatformConfig(data_dir=Path(tmp), port=free_port(),
                                           env={**os.environ, **loadgen.UNLIMITED_PLAN},
                                           autoscale=load_policies(None) if args.autoscale else None,
                                           smtp_reject_recipients=re.escape(REFUSED)))
        platform.start()
        url = platform.urls["DATABASE_URL"]
        with db.connect(url, autocommit=True) as conn:
            other = tenants.ensure_tenant(conn, "soak-other")
            other_token = tenants.create_token(conn, other["id"], admin=False, label="soak")["token"]
        load = Load(platform, [(platform.admin_token, 0.75), (other_token, 0.25)], args.rate)
        rss = lambda: procs.snapshot({n: c.pid for n, c in platform.children.items()})  # noqa: E731
        samples = {"ready": rss()}
        started, deadlocks_before = datetime.now(UTC), pg_deadlocks(url)
        machine = {"at_start": machine_load()}
        pool = ThreadPoolExecutor(6, thread_name_prefix="booker")
        threads = [threading.Thread(target=t, daemon=True, name=t.__name__)
                   for t in (lambda: load.bookers(pool), load.operate, load.read, load.smtp_outages)]
        try:
            for t in threads:
                t.start()
            deadline, milestone_at = time.monotonic() + args.minutes * 60, None
            while time.monotonic() < deadline:
                time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
                counts = task_counts(url)
                done = counts.get("done", 0)
                if milestone_at is None and done >= TASKS_MILESTONE:
                    samples["after_1000_tasks"], milestone_at = rss(), time.monotonic()
                inv = rss().get("invoice-worker-1/worker", {}).get("rss_mb")
                print(f"{(args.minutes * 60 - (deadline - time.monotonic())) / 60:5.1f} min  tasks {counts}"
                      f"  invoice worker {inv} MB  load {os.getloadavg()[0]:.1f}", flush=True)
            load.stop.set()
            for t in threads:
                t.join(timeout=60)
            pool.shutdown(wait=True)
            machine["at_load_end"] = machine_load()
            samples["load_end"] = rss()
            drain_deadline = time.monotonic() + args.drain_minutes * 60
            while time.monotonic() < drain_deadline:
                counts = task_counts(url)
                if not set(counts) - {"done", "dead"}:
                    break
                time.sleep(5)
            samples["drained"] = rss()
            counts = task_counts(url)
            through = went_through(url)
            deadlock_counter = pg_deadlocks(url) - deadlocks_before
        finally:
            load.stop.set()
            platform.stop()
        logs = log_counts(platform.log_dir)

    last = samples["drained"]
    base = samples.get("after_1000_tasks")
    grown = growth(base, last) if base else {}
    workers = {n: g for n, g in grown.items() if re.fullmatch(r"[a-z]+-worker-\d+/worker", n)}
    pg_log = logs.get("postgres.log", {}).get("deadlock_detected", 0)
    result = {
        "command": report.command(),
        "started": started.isoformat(timespec="seconds"),
        "minutes": args.minutes, "rate": args.rate, "machine": machine,
        "posts": dict(load.statuses), "post_latency_ms": {
            "n": len(load.post_ms), "median": round(statistics.median(load.post_ms), 1) if load.post_ms else None,
            "p99": round(pct(load.post_ms, 0.99), 1) if load.post_ms else None},
        "operator": dict(load.operator), "reads": dict(load.reads), "smtp_outages": load.outages,
        "tasks_final": counts, "tasks_that_went": through,
        "deadlocks": {"postgres_log": pg_log, "pg_stat_database": deadlock_counter},
        "logs": logs,
        "rss_mb": {phase: {n: s["rss_mb"] for n, s in snap.items()} for phase, snap in samples.items()},
        "growth_after_1000_tasks": grown,
        "verdict": {
            "zero_deadlocks": pg_log == 0 and deadlock_counter == 0,
            "milestone_reached": base is not None,
            "workers_within_1_2x": bool(workers) and all(
                g["ratio"] is not None and g["same_pid"] and g["ratio"] <= MAX_GROWTH for g in workers.values()),
            "drained": not set(counts) - {"done", "dead"},
        },
    }
    report.write(result, args.out)


if __name__ == "__main__":
    main()
