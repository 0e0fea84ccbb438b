"""Readings: the backlog through booking_scaling's QueueReader (the one Redis snapshot),
and the API's latency histogram (the text of its /metrics, or Prometheus' /federate).

One Redis client per URL is shared by every QueueScaler pointing at it.  A
failed read becomes `Backlog.unreadable(...)`, never zeros, so the decision
core holds (or falls back) instead of scaling a pool away on a guess.  A
failed latency read holds nothing (booking_scaling.pressure.LatencyWatch).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import redis

from booking_scaling import completions, outboxmirror, pausemirror, podload
from booking_scaling.backlog import Backlog
from booking_scaling.depth import QueueDepth, QueueReader
from booking_scaling.pressure import AcceptPath, LatencyWatch


class BacklogSource:
    """Cached QueueReaders keyed by (Redis URL, Dramatiq namespace)."""

    def __init__(self, *, timeout: float = 2.0):
        self._timeout = timeout
        self._clients: dict[str, redis.Redis] = {}
        self._readers: dict[tuple[str, str], QueueReader] = {}

    def _client(self, url: str) -> redis.Redis:
        if url not in self._clients:
            self._clients[url] = redis.Redis.from_url(
                url, socket_connect_timeout=self._timeout, socket_timeout=self._timeout)
        return self._clients[url]

    def _reader(self, url: str, namespace: str) -> QueueReader:
        key = (url, namespace)
        if key not in self._readers:
            self._readers[key] = QueueReader(self._client(url), namespace)
        return self._readers[key]

    async def read(self, url: str, namespace: str, queues: tuple[str, ...], *,
                   delayed_lead_seconds: float | None = None) -> tuple[Backlog, list[QueueDepth]]:
        """The summed backlog and per-queue depths, or an unreadable Backlog on any Redis failure.

        The backlog adds what waits in the outbox (the relay's copy, `booking_scaling.outboxmirror`).

        With `delayed_lead_seconds` (the policy's delayedLeadSeconds) only the delayed messages
        due within that time count as due; without it, every delayed message does.
        """
        lead_ms = None if delayed_lead_seconds is None else delayed_lead_seconds * 1000
        try:
            reader = self._reader(url, namespace)
            depths = await asyncio.to_thread(reader.snapshot, queues, lead_ms)
            outbox = await asyncio.to_thread(outboxmirror.read, self._client(url), namespace, queues)
        except (redis.RedisError, OSError, ValueError) as e:
            return Backlog.unreadable(f"{type(e).__name__}: {e}"), []
        return Backlog.from_depths(depths, outbox=outbox.values()), depths

    async def completed(self, url: str, namespace: str, queues: tuple[str, ...]) -> int | None:
        """Tasks the pool's workers have finished (booking_scaling.completions); None when unreadable."""
        try:
            return await asyncio.to_thread(completions.read, self._client(url), namespace, queues)
        except (redis.RedisError, OSError, ValueError):
            return None

    async def pod_loads(self, url: str, namespace: str, queues: tuple[str, ...]) -> dict[str, podload.PodLoad]:
        """Each pod's in-flight messages and last work (booking_scaling.podload); raises redis.RedisError."""
        return await asyncio.to_thread(podload.read, self._client(url), namespace, queues, int(time.time() * 1000))

    async def paused(self, url: str, namespace: str, queues: tuple[str, ...]) -> frozenset[str]:
        """The queues whose workers report them paused (booking_scaling.pausemirror); none when unreadable.

        Unreadable reads as running: the operator then scales as it would without the copy.
        """
        try:
            return await asyncio.to_thread(pausemirror.read, self._client(url), namespace, queues)
        except (redis.RedisError, OSError, ValueError):
            return frozenset()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._readers.clear()


class LatencySource:
    """One aiohttp session for every QueueScaler's latency reads (timeout: one Redis timeout)."""

    def __init__(self, *, timeout: float = 2.0):
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def judge(self, watch: LatencyWatch, now: float) -> AcceptPath | None:
        """GET the watch's metricsUrl and judge it (None: no URL, no signal)."""
        url = watch.budget.metrics_url
        if url is None:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url) as resp:
                resp.raise_for_status()
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as e:
            return watch.unreadable(e)
        return watch.observe(text, now)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
