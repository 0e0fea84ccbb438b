"""One shared poller that reads new booking events and fans them out to open streams.

Two hundred open streams cost one query per interval, not two hundred: each
stream registers an in-memory queue for its booking, and the poller asks
Postgres once for `id > last_seen`.  No LISTEN/NOTIFY: NOTIFY takes a global
lock at commit, which the accept path must not pay for a progress bar.

Ids are drawn before commit, so across bookings a smaller id can commit after
a larger one was read.  The ids skipped that way are kept as *gaps* and asked
for again for `gap_grace` seconds (a rolled-back transaction leaves a gap that
never fills).  Within one booking ids commit in order (see migration 0004).

With no stream open, the poller asks only every `idle_interval` seconds (2 s)
and wakes at once when a stream subscribes.  Why: every poll is a Postgres
transaction the workers' commits and the accept path share the server with,
and an idle progress service polling 7 times a second cost more commits than
the booking itself.  It still polls when idle, to keep its high-water mark
fresh, so a first subscriber gets one small read, not hours of events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from booking_events import eventlog

log = logging.getLogger("booking_events.poller")

POLL_SECONDS = Histogram("booking_events_poll_seconds", "Duration of the shared poller's query.")
DELIVERED = Counter("booking_events_delivered_total", "Events handed to open streams.")
SUBSCRIBERS = Gauge("booking_events_open_streams", "Streams waiting for events.")


def advance(last_id: int, gaps: dict[int, float], ids: list[int], now: float,
            grace: float) -> tuple[int, dict[int, float]]:
    """The new high-water mark and gaps after reading `ids` (sorted); pure."""
    gaps = {g: t for g, t in gaps.items() if g not in ids and now - t < grace}
    for i in ids:
        if i > last_id:
            gaps.update({missing: now for missing in range(last_id + 1, i)})
            last_id = i
    return last_id, gaps


class Poller:
    """Reads the event log every `interval` seconds and puts each event on its booking's queues."""

    def __init__(self, database_url: str, *, interval: float = 0.15, idle_interval: float = 2.0,
                 gap_grace: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.database_url = database_url
        self.interval = interval
        self.idle_interval = idle_interval
        self.gap_grace = gap_grace
        self.clock = clock
        self.last_id = 0
        self.gaps: dict[int, float] = {}
        self._subscribers: dict[str, set[asyncio.Queue]] = {}
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Begin after the newest event: streams read their history themselves."""
        self.last_id = await asyncio.to_thread(eventlog.newest_id, self.database_url)
        self._task = asyncio.create_task(self._run(), name="booking-events-poller")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def subscribe(self, booking_id: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.setdefault(booking_id, set()).add(queue)
        SUBSCRIBERS.inc()
        self._wake.set()
        return queue

    def unsubscribe(self, booking_id: str, queue: asyncio.Queue) -> None:
        found = self._subscribers.get(booking_id)
        if found and queue in found:
            found.discard(queue)
            SUBSCRIBERS.dec()
            if not found:
                del self._subscribers[booking_id]

    async def poll_once(self) -> int:
        """One query; returns how many events were read."""
        with POLL_SECONDS.time():
            rows = await asyncio.to_thread(eventlog.since, self.database_url, self.last_id, sorted(self.gaps))
        self.last_id, self.gaps = advance(self.last_id, self.gaps, [r["id"] for r in rows], self.clock(),
                                          self.gap_grace)
        for row in rows:
            for queue in self._subscribers.get(row["booking_id"], ()):
                queue.put_nowait(row)
                DELIVERED.inc()
        return len(rows)

    async def _run(self) -> None:
        while True:
            try:
                full = await self.poll_once() >= 1000
            except Exception:  # a Postgres outage must not end the poller: log and try again
                log.exception("polling booking_events failed")
                full = False
            if full:
                continue
            if self._subscribers:
                await asyncio.sleep(self.interval)
            else:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_interval)
                except TimeoutError:
                    pass
