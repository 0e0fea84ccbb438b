"""Benchmark: does one client flooding its own progress link slow another customer's page?

The attack of issue 18: one customer opens thousands of streams on their own
progress link.  Here, on the real `booking-events` process (embedded Postgres
and Redis, no other service):
  * a victim loads another booking's progress page (`GET /status/{token}`,
    one Postgres read) in sequence from 127.0.0.2 for `--seconds`, first with
    nothing else going on ("idle"), then from the moment a flooder on
    127.0.0.1 (a process of its own) starts opening `--flood` streams at once
    on one link and holding every one it gets ("flood"); the phase is longer
    than the 15 s heartbeat, so it also sees every held stream's heartbeat;
  * phases alternate for `--rounds` rounds; the flood is closed between rounds.
Prints the victim's p50/p90/p99 per phase, their ratios, and how many of the
flood's streams were accepted and refused (429).

`--baseline DIR` also runs the events service from another checkout's sources
(e.g. a `git worktree` of the commit before a change), side by side, phases
alternated between the two, so before and after are measured in one run on the
same busy machine:

    .venv/bin/python bench/stream_flood.py [--flood 3000] [--seconds 20] [--rounds 3] [--baseline DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

import aiohttp
import report  # bench/report.py: a script's own folder is on sys.path
from pipeline import summary

from booking_core import db
from booking_core.db.migrate import migrate
from booking_core.model import bookings, status_links, tenants
from booking_embedded import Child, EmbeddedPostgres, EmbeddedRedis, free_port, wait_for_port

SECRET = "bench-secret-" + "x" * 20
PACKAGES = ("services/booking-events/src", "libs/booking-core/src", "libs/booking-embedded/src")


class Flood:
    """`n` streams opened at once on one URL from 127.0.0.1, each held open until `close`.

    In a process of its own (this script with `--flood-child`): in the measuring
    process, its event loop would take the interpreter lock from the victim's
    timer and the victim's times would show the benchmark, not the service.
    """

    def __init__(self, url: str, n: int):
        self.proc = subprocess.Popen([sys.executable, __file__, "--flood-child", url, str(n)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.statuses: Counter[int] = Counter()
        self.answered = threading.Event()

    def wait_started(self) -> None:
        """Until the child is about to open its streams (its interpreter start is not the attack)."""
        if self.proc.stdout.readline().strip() != "go":
            raise RuntimeError("the flood process did not start")
        threading.Thread(target=self._read_statuses, daemon=True).start()

    def _read_statuses(self) -> None:
        """Once every stream has been answered: how many got each status (0: no answer)."""
        line = self.proc.stdout.readline()
        if line:
            self.statuses.update({int(k): v for k, v in json.loads(line).items()})
        self.answered.set()

    def close(self) -> None:
        self.proc.stdin.close()  # the child closes its streams and exits
        self.proc.wait(60)


def flood_child(url: str, n: int) -> None:
    """The flood process: open `n` streams, report the statuses, hold them until stdin closes."""
    statuses: Counter[int] = Counter()
    answered = asyncio.Event()

    async def one(session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(url) as resp:
                statuses[resp.status] += 1
                if sum(statuses.values()) == n:
                    answered.set()
                async for _ in resp.content:  # a refused one ends here; an accepted one reads until closed
                    pass
        except aiohttp.ClientError:
            statuses[0] += 1
            if sum(statuses.values()) == n:
                answered.set()

    async def run() -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as s:
            print("go", flush=True)
            streams = asyncio.gather(*(one(s) for _ in range(n)), return_exceptions=True)
            await answered.wait()
            print(json.dumps(statuses), flush=True)
            await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
            streams.cancel()
            await asyncio.gather(streams, return_exceptions=True)

    asyncio.run(run())


def page_times(port: int, path: str, seconds: float, until: threading.Event | None = None) -> list[float]:
    """Sequential page loads from 127.0.0.2 (another client address) for `seconds` (or until `until`), in ms."""
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and until.is_set()):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=("127.0.0.2", 0))
        start = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        times.append((time.perf_counter() - start) * 1000)
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"the victim's page answered {resp.status}")
    return times


class Service:
    """One booking-events process under test (this checkout's, or a baseline's) and what it measured."""

    def __init__(self, name: str, env: dict[str, str], sources: Path | None, logs: Path):
        self.port = free_port()
        env = {**env, "BOOKING_EVENTS_HOST": "127.0.0.1", "BOOKING_EVENTS_PORT": str(self.port)}
        if sources:
            env["PYTHONPATH"] = os.pathsep.join(str(sources.resolve() / p) for p in PACKAGES)
        self.log = logs / f"events-{name}.log"
        self.child = Child(f"events-{name}", [sys.executable, "-c", "from booking_events.server import main; main()"],
                           log_path=self.log, env=env)
        self.child.start()
        wait_for_port(self.port, child=self.child)
        self.idle: list[float] = []
        self.opening: list[float] = []
        self.holding: list[float] = []
        self.statuses: Counter[int] = Counter()

    def round(self, victim_page: str, flood_path: str, n: int, seconds: float) -> None:
        """Idle, then a flood opening, then the flood held; then wait until the service let go of it."""
        self.idle += page_times(self.port, victim_page, seconds)
        flood = Flood(f"http://127.0.0.1:{self.port}{flood_path}", n)
        flood.wait_started()
        self.opening += page_times(self.port, victim_page, 120, until=flood.answered)
        flood.answered.wait()
        self.holding += page_times(self.port, victim_page, seconds)
        self.statuses += flood.statuses
        flood.close()
        # A service that frees a dropped stream only when its heartbeat fails does so up to 15 s
        # later: the next phase, this service's or the other's, must not pay for it.
        deadline = time.monotonic() + 60
        while open_streams(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def result(self, n: int, seconds: float, rounds: int) -> dict:
        idle, opening, holding = phase(self.idle), phase(self.opening), phase(self.holding)
        return {
            "victim_page_idle": idle,
            f"victim_page_while_{n}_streams_open": opening,
            f"victim_page_while_they_are_held_{seconds:g}s": holding,
            "opening_p50_ratio": round(opening["median_ms"] / idle["median_ms"], 2),
            "opening_p99_ratio": round(opening["p99_ms"] / idle["p99_ms"], 2),
            "opening_max_ratio": round(opening["max_ms"] / idle["max_ms"], 2),
            "holding_p99_ratio": round(holding["p99_ms"] / idle["p99_ms"], 2),
            "flood_answers_per_round": {str(k): v // rounds for k, v in sorted(self.statuses.items())},
            "events_log_error_lines": self.log.read_text(errors="replace").count(" ERROR "),
        }


def open_streams(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith("booking_events_open_streams ")))


def phase(ms: list[float]) -> dict:
    return summary(ms) | {"max_ms": round(max(ms), 3)}


def main() -> None:
    if sys.argv[1:2] == ["--flood-child"]:
        flood_child(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flood", type=int, default=3000, help="streams the flooder opens at once")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="also measure booking-events from this checkout's sources")
    ap.add_argument("--out", type=Path, default=Path("bench/results/stream_flood.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pg = EmbeddedPostgres(tmp, free_port(), tmp / "logs")
        rd = EmbeddedRedis(tmp, free_port(), tmp / "logs")
        pg.start()
        rd.start()
        services: dict[str, Service] = {}
        try:
            migrate(pg.url)
            with db.connect(pg.url, autocommit=True) as conn:
                tenant = tenants.ensure_tenant(conn, "bench")
                nb = bookings.NewBooking("Ada", "ada@example.com", "Room", date(2027, 3, 1), date(2027, 3, 4),
                                         Decimal("360.00"), "EUR")
                victim, flooder = (bookings.create(conn, tenant_id=tenant["id"], booking=nb, actor="bench")["id"]
                                   for _ in range(2))
            expires = int(time.time()) + 3600
            victim_page = f"/status/{status_links.sign(SECRET, victim, expires)}"
            flood_path = f"/status/{status_links.sign(SECRET, flooder, expires)}/events"
            env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": pg.url, "REDIS_URL": rd.url,
                   "BOOKING_STATUS_SECRET": SECRET, "BOOKING_EVENTS_HEARTBEAT_MS": "15000"}
            services["this checkout"] = Service("this checkout", env, None, tmp / "logs")
            if args.baseline:
                services[f"baseline {args.baseline}"] = Service("baseline", env, args.baseline, tmp / "logs")
            for service in services.values():
                page_times(service.port, victim_page, 1.0)  # warm up
            for _ in range(args.rounds):
                for service in services.values():  # alternated, so both see the same machine
                    service.round(victim_page, flood_path, args.flood, args.seconds)
        finally:
            for service in services.values():
                service.child.stop()
            rd.stop()
            pg.stop()
        result = {name: service.result(args.flood, args.seconds, args.rounds) for name, service in services.items()}
    result["command"] = report.command()
    report.write(result, args.out)


if __name__ == "__main__":
    main()
