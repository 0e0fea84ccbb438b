"""One booking's progress as a Server-Sent Events response: history, live events, `complete`, close.

Shared by the API's bearer-authenticated stream and the progress page's
token-authenticated one; they differ only in how an event row is shown and in
what may end the stream early (the API's: its token revoked, `tokenwatch`).
Both count against the caps of `admission` before any work is done for them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime

from aiohttp import web
from prometheus_client import Counter

from booking_events import eventlog, sse
from booking_events.admission import StreamsFull, client_address
from booking_events.keys import HEARTBEAT_SECONDS, LIMITS, POLLER, SETTINGS, SETUPS
from booking_events.poller import Poller
from booking_events.problems import problem
from booking_events.tokenwatch import REVOKED

STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx (the Ingress) must pass each event on at once
}

REFUSED = Counter("booking_events_streams_refused_total", "Streams refused because a cap was reached.",
                  ["scope"])

#: What may end a stream before `complete`: given the stream's queue, a context manager that
#: puts `tokenwatch.REVOKED` on it when the stream must end (None: nothing does).
Guard = Callable[[asyncio.Queue], AbstractContextManager] | None


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


def client_of(request: web.Request) -> str:
    """The client address the caps count this request against (see `admission.client_address`)."""
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", []),
                          request.app[LIMITS].forwarded_for_hops)


def too_many(request: web.Request, full: StreamsFull) -> web.Response:
    """429 for a stream over a cap, saying which and when to try again."""
    REFUSED.labels(full.scope).inc()
    what = "this link" if full.scope == "link" else "your address"
    return problem(429, "too-many-streams",
                   f"{full.cap} streams are already open for {what}; close one, or try again later.",
                   headers={"Retry-After": str(request.app[LIMITS].retry_after_seconds)})


def api_event(row: dict) -> dict:
    """An event as the API's stream sends it (the fields of issue 11)."""
    at = row["at"]
    return {"task": row["task"], "state": row["state"], "attempts": row["attempts"],
            "last_error": row["last_error"], "at": at.isoformat() if isinstance(at, datetime) else at}


async def stream(request: web.Request, booking_id: str, last_event_id: int,
                 show: Callable[[dict], dict] = api_event, guard: Guard = None) -> web.StreamResponse:
    """Send what the client missed after `last_event_id`, then each new event, until complete."""
    app = request.app
    poller: Poller = app[POLLER]
    heartbeat: float = app[HEARTBEAT_SECONDS]
    queue = poller.subscribe(booking_id)  # before reading history, so nothing falls between the two
    try:
        with guard(queue) if guard else contextlib.nullcontext():
            async with app[SETUPS]:
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
    """History after `last_event_id`, then live events, until the booking's work is complete (or REVOKED)."""
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
        if row is REVOKED:
            await resp.write_eof()  # a reconnect is then refused: 401
            return
        if row["id"] <= sent:
            continue  # already in the history read above
        states[row["task"]] = row["state"]
        await resp.write(sse.frame("task", show(row), row["id"]))
        sent = row["id"]
    await resp.write(sse.frame("complete", {"tasks": states}))
    await resp.write_eof()
