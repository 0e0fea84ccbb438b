"""Ends the API streams whose bearer token has been revoked, within `interval` seconds.

A stream authenticates once, when it opens, and then may stay open for hours
(a booking whose email keeps retrying).  Revoking the token must end it, as
revoking an operator's token ends the console's streams.  Asking Postgres per
stream every 2 s would be the query-per-stream the shared poller exists to
avoid, so one task asks about every watched token at once and puts `REVOKED`
on the queues of the streams whose token is no longer live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from booking_core import db
from booking_core.model import tenants

log = logging.getLogger("booking_events.tokenwatch")

#: Put on a stream's queue to end it at once, without `complete`.
REVOKED = {"revoked": True}


def _live(url: str, token_ids: list[str]) -> set[str]:
    with db.pool(url).connection() as conn:
        return tenants.live_token_ids(conn, token_ids)


class TokenWatch:
    """Every `interval` seconds, one query for all the tokens open streams were opened with."""

    def __init__(self, database_url: str, *, interval: float = 2.0):
        self.database_url = database_url
        self.interval = interval
        self._queues: dict[str, set[asyncio.Queue]] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="booking-events-tokenwatch")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def watching(self, token_id: str, queue: asyncio.Queue) -> Iterator[None]:
        """While the block runs, `queue` gets `REVOKED` once `token_id` is revoked."""
        self._queues.setdefault(token_id, set()).add(queue)
        try:
            yield
        finally:
            found = self._queues.get(token_id)
            if found is not None:
                found.discard(queue)
                if not found:
                    del self._queues[token_id]

    async def check_once(self) -> int:
        """One query; returns how many streams were told their token is gone."""
        if not self._queues:
            return 0
        asked = list(self._queues)  # streams that open while the query runs wait for the next one
        live = await asyncio.to_thread(_live, self.database_url, asked)
        ended = 0
        for token_id in asked:
            if token_id in live or token_id not in self._queues:
                continue
            for queue in self._queues.pop(token_id):
                queue.put_nowait(REVOKED)
                ended += 1
        return ended

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_once()
            except Exception:  # Postgres away: the streams get no events either; ask again next time
                log.exception("rechecking the open streams' tokens failed")
