"""Benchmark: does a crowd of open progress streams slow the accept path?

On one local platform (what `bookingctl up` runs, workers stopped so that the
streams stay open and only the accept path and the streams compete):
  * 200 bookings are created; a writer thread changes one of their tasks every
    50 ms by SQL (as the workers' middleware would), in every phase alike;
  * POST /api/v1/bookings latency is measured in blocks of sequential requests
    on one keep-alive connection, alternating "no stream open" and "200 streams
    open" (each stream on one of the 200 bookings, on the booking-events service,
    read continuously by an aiohttp client in a thread of its own);
  * the streams' events received, and the events service's poller queries, are
    counted: one query per poll interval, however many streams are open.
Prints p50/p90/p99 per phase and writes JSON.

    .venv/bin/python bench/streams.py [--posts 600] [--streams 200] [--rounds 3] [--out bench/results/streams.json]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import http.client
import json
import os
import random
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import report  # bench/report.py: a script's own folder is on sys.path
from pipeline import BODY, summary, timed

from booking_core import db
from booking_embedded import free_port
from bookingctl.platform import Platform, PlatformConfig


class Streams:
    """`n` open SSE streams, read in a background event loop; counts what arrives."""

    def __init__(self, base: str, token: str, booking_ids: list[str]):
        self.base, self.token, self.ids = base, token, booking_ids
        self.events = 0
        self.connected = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self._run(), self.loop)

    async def _one(self, session: aiohttp.ClientSession, booking_id: str) -> None:
        async with session.get(f"{self.base}/api/v1/bookings/{booking_id}/events",
                               headers={"Authorization": f"Bearer {self.token}"}) as resp:
            assert resp.status == 200, resp.status
            self.connected += 1
            async for line in resp.content:
                if line.startswith(b"event: task"):
                    self.events += 1

    async def _run(self) -> None:
        self._inner = asyncio.current_task()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as s:
            await asyncio.gather(*(self._one(s, b) for b in self.ids), return_exceptions=True)

    def wait_connected(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.connected < len(self.ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.connected} of {len(self.ids)} streams connected")
            time.sleep(0.05)

    def close(self) -> None:
        """Cancel the readers (closing their connections), then stop the loop."""
        self.loop.call_soon_threadsafe(self._inner.cancel)
        try:
            self.task.result(10)
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def poller_queries(metrics_url: str) -> float:
    """The events service's poll count so far (its own Prometheus histogram)."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith("booking_events_poll_seconds_count")))


def writer(database_url: str, booking_ids: list[str], stop: threading.Event) -> None:
    """One task change every 50 ms on a random booking of the set, in every phase alike."""
    with db.connect(database_url, autocommit=True) as conn:
        n = 0
        while not stop.wait(0.05):
            n += 1
            conn.execute("UPDATE booking_tasks SET state = 'running', attempts = %s, updated_at = clock_timestamp()"
                         " WHERE booking_id = %s AND task = %s",
                         (n, random.choice(booking_ids), random.choice(("email", "invoice", "audit"))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=600, help="POSTs per phase, over all rounds")
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/streams.json"))
    args = ap.parse_args()
    per_block = args.posts // args.rounds

    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(PlatformConfig(data_dir=Path(tmp), port=free_port(), env=dict(os.environ)))
        platform.start()
        stop = threading.Event()
        try:
            for name in [n for n in platform.children if "-worker-" in n]:
                platform.stop_component(name)
            conn = http.client.HTTPConnection("127.0.0.1", platform.config.port, timeout=30)
            headers = {"Authorization": f"Bearer {platform.admin_token}", "Content-Type": "application/json"}
            body = json.dumps(BODY)
            ids, events_base = [], None
            for _ in range(args.streams):
                _, booking = timed(conn, "POST", "/api/v1/bookings", headers, body)
                ids.append(booking["id"])
                events_base = "{0.scheme}://{0.netloc}".format(urlsplit(booking["links"]["events"]))
            threading.Thread(target=writer, args=(platform.urls["DATABASE_URL"], ids, stop), daemon=True).start()
            for _ in range(50):  # warm up
                timed(conn, "POST", "/api/v1/bookings", headers, body)
            without, with_streams, received, polls = [], [], 0, []
            metrics = platform.metrics_urls["events"]
            for _ in range(args.rounds):
                without += [timed(conn, "POST", "/api/v1/bookings", headers, body)[0] for _ in range(per_block)]
                streams = Streams(events_base, platform.admin_token, ids)
                streams.wait_connected()
                q0, t0, e0 = poller_queries(metrics), time.monotonic(), streams.events
                with_streams += [timed(conn, "POST", "/api/v1/bookings", headers, body)[0] for _ in range(per_block)]
                polls.append((poller_queries(metrics) - q0) / (time.monotonic() - t0))
                received += streams.events - e0
                streams.close()
        finally:
            stop.set()
            platform.stop()

    result = {
        "post_no_streams": summary(without),
        f"post_{args.streams}_streams_open": summary(with_streams),
        "p50_ratio": round(summary(with_streams)["median_ms"] / summary(without)["median_ms"], 2),
        "p99_ratio": round(summary(with_streams)["p99_ms"] / summary(without)["p99_ms"], 2),
        "stream_events_received_while_measuring": received,
        "poller_queries_per_second_with_streams_open": round(sum(polls) / len(polls), 1),
        "command": report.command(),
    }
    report.write(result, args.out)


if __name__ == "__main__":
    main()
