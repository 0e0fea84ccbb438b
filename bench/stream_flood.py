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

`--src DIR` runs the events service from another checkout's sources (e.g. a
`git worktree` of the commit before a change), so before and after can be
measured in one session:

    .venv/bin/python bench/stream_flood.py [--flood 3000] [--seconds 20] [--rounds 3] [--src DIR] [--out FILE]
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

from booking_core import bookings, db, status_links, tenants
from booking_core.migrate import migrate
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
    ap.add_argument("--src", type=Path, help="run booking-events from this checkout's sources")
    ap.add_argument("--out", type=Path, default=Path("bench/results/stream_flood.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pg = EmbeddedPostgres(tmp, free_port(), tmp / "logs")
        rd = EmbeddedRedis(tmp, free_port(), tmp / "logs")
        pg.start()
        rd.start()
        events = None
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
            port = free_port()
            env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": pg.url, "REDIS_URL": rd.url,
                   "BOOKING_STATUS_SECRET": SECRET, "BOOKING_EVENTS_HOST": "127.0.0.1",
                   "BOOKING_EVENTS_PORT": str(port), "BOOKING_EVENTS_HEARTBEAT_MS": "15000"}
            if args.src:
                env["PYTHONPATH"] = os.pathsep.join(str(args.src.resolve() / p) for p in PACKAGES)
            events = Child("events", [sys.executable, "-c", "from booking_events.server import main; main()"],
                           log_path=tmp / "logs" / "events.log", env=env)
            events.start()
            wait_for_port(port, child=events)
            page_times(port, victim_page, 1.0)  # warm up
            idle, opening, holding, statuses = [], [], [], Counter()
            for _ in range(args.rounds):
                idle += page_times(port, victim_page, args.seconds)
                flood = Flood(f"http://127.0.0.1:{port}{flood_path}", args.flood)
                flood.wait_started()
                opening += page_times(port, victim_page, 120, until=flood.answered)
                flood.answered.wait()
                holding += page_times(port, victim_page, args.seconds)
                statuses += flood.statuses
                flood.close()
            log_errors = (tmp / "logs" / "events.log").read_text(errors="replace").count(" ERROR ")
        finally:
            if events:
                events.stop()
            rd.stop()
            pg.stop()

    result = {
        "events_sources": str(args.src) if args.src else "this checkout",
        "victim_page_idle": phase(idle),
        f"victim_page_while_{args.flood}_streams_open": phase(opening),
        f"victim_page_while_they_are_held_{args.seconds:g}s": phase(holding),
        "opening_p50_ratio": round(phase(opening)["median_ms"] / phase(idle)["median_ms"], 2),
        "opening_p99_ratio": round(phase(opening)["p99_ms"] / phase(idle)["p99_ms"], 2),
        "holding_p99_ratio": round(phase(holding)["p99_ms"] / phase(idle)["p99_ms"], 2),
        "flood_answers_per_round": {str(k): v // args.rounds for k, v in sorted(statuses.items())},
        "events_log_error_lines": log_errors,
        "command": report.command(),
    }
    report.write(result, args.out)


if __name__ == "__main__":
    main()
