"""One booking's progress as a Server-Sent Events response: history, live events, `complete`, close.

Shared by the API's bearer-authenticated stream and the progress page's
token-authenticated one; they differ only in how an event row is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime

from aiohttp import web

from booking_events import eventlog, sse
from booking_events.keys import HEARTBEAT_SECONDS, POLLER, SETTINGS
from booking_events.poller import Poller

STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx (the Ingress) must pass each event on at once
}


@contextlib.contextmanager
def ended_by_client() -> Iterator[None]:
    """Around a stream's writes: a client that went away ends the stream, with nothing to log.

    The handler is normally cancelled as the connection drops (`SERVER_OPTIONS`), but a
    write can still meet a transport that is closing and not yet closed; raised from the
    handler, that error would be logged by aiohttp as an ERROR with its traceback.
    """
    try:
        yield
    except ConnectionError:
        pass


def api_event(row: dict) -> dict:
    """An event as the API's stream sends it (the fields of issue 11)."""
    at = row["at"]
    return {"task": row["task"], "state": row["state"], "attempts": row["attempts"],
            "last_error": row["last_error"], "at": at.isoformat() if isinstance(at, datetime) else at}


async def stream(request: web.Request, booking_id: str, last_event_id: int,
                 show: Callable[[dict], dict] = api_event) -> web.StreamResponse:
    """Send what the client missed after `last_event_id`, then each new event, until complete."""
    app = request.app
    poller: Poller = app[POLLER]
    heartbeat: float = app[HEARTBEAT_SECONDS]
    queue = poller.subscribe(booking_id)  # before reading history, so nothing falls between the two
    try:
        rows = await asyncio.to_thread(eventlog.history, app[SETTINGS].database_url, booking_id)
        resp = web.StreamResponse(headers=STREAM_HEADERS)
        with ended_by_client():
            await resp.prepare(request)
            await _send(resp, queue, rows, last_event_id, show, heartbeat)
        return resp
    finally:
        poller.unsubscribe(booking_id, queue)


async def _send(resp: web.StreamResponse, queue: asyncio.Queue, rows: list[dict], last_event_id: int,
                show: Callable[[dict], dict], heartbeat: float) -> None:
    """History after `last_event_id`, then live events, until the booking's work is complete."""
    await resp.write(sse.retry_hint())
    states: dict[str, str] = {}
    sent = last_event_id
    for row in rows:
        states[row["task"]] = row["state"]
        if row["id"] > sent:
            await resp.write(sse.frame("task", show(row), row["id"]))
            sent = row["id"]
    sent = max([sent] + [r["id"] for r in rows])
    while not sse.is_complete(states):
        try:
            row = await asyncio.wait_for(queue.get(), timeout=heartbeat)
        except TimeoutError:
            await resp.write(sse.comment("heartbeat"))
            continue
        if row["id"] <= sent:
            continue  # already in the history read above
        states[row["task"]] = row["state"]
        await resp.write(sse.frame("task", show(row), row["id"]))
        sent = row["id"]
    await resp.write(sse.frame("complete", {"tasks": states}))
    await resp.write_eof()
