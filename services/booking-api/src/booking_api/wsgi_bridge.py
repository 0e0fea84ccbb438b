"""Run the Flask (WSGI) app from an event loop, only once its whole request has arrived.

Why not a ready-made ASGI-to-WSGI adapter: those start the WSGI call at once
and let the request thread read the body from the event loop as it comes, so
a client that sends its body slowly holds a request thread for as long as it
likes, which is the outage this module exists to prevent.  Here the body is
read on the event loop first, bounded in size (`max_body`, the API's 64 KiB:
past it, 413) and in time (`body_timeout`: past it, 408), and only then does
a thread of the pool (`threads`, gunicorn's `--threads`) run the app, with
the body in memory.  The response is collected in that thread and written by
the event loop, so a client that reads slowly does not hold a thread either.

Each request crosses between the loop and a thread once each way, and every
crossing costs: the loop runs one turn per step of a request, and between
turns it has to win the GIL back from the request threads, which give it up
only every switch interval.  So the loop does as few turns per request as it
can (`bench/README.md`, "The API's server: the worker's rate"): the body is
awaited under `asyncio.timeout` (a timer, where `asyncio.wait_for` started a
task of its own and cost two more turns), and the call goes to `RequestThreads`,
which take it from one queue and hand the answer back with a single
`call_soon_threadsafe` (no executor, concurrent future or chained callbacks).

Every running call is recorded with its start time (`oldest_start`): the
worker stamps its heartbeat no later than that, so a request that hangs past
gunicorn's `--timeout` gets its worker restarted (`gunicorn_worker.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from io import BytesIO
from urllib.parse import unquote_to_bytes

from booking_api.gunicorn_errors import problem_body

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class BodyTooLarge(Exception):
    """The body went past the limit."""


class ClientGone(Exception):
    """The client closed (or the server refused the framing) before the body was complete."""


@dataclass(frozen=True)
class Running:
    """A call in a request thread: since when, and what (for the log line of a hung one)."""

    started: float
    method: str
    path: str


def wsgi_environ(scope: dict, body: bytes) -> dict:
    """The PEP 3333 environ for an ASGI HTTP `scope` whose body was read whole.

    PATH_INFO is the percent-decoded path as latin-1 text, as gunicorn's own WSGI
    workers give it.  The body is de-chunked, so CONTENT_LENGTH is its length and
    Transfer-Encoding (a hop-by-hop header of the connection) is not passed on.
    """
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    server = scope.get("server") or ("", 0)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", ""),
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue
        key = "HTTP_" + name
        if key in environ:  # repeated fields join with a comma (RFC 9110 5.3), cookies with "; "
            environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            environ[key] = value
    return environ


def call_app(app: WSGIApp, environ: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run one WSGI call to the end: (status, headers as bytes, whole body)."""
    started: list = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return chunks.append

    chunks: list[bytes] = []
    result = app(environ, start_response)
    try:
        chunks.extend(bytes(chunk) for chunk in result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the WSGI app returned without calling start_response")
    status, headers = started
    return (int(status.split(" ", 1)[0]),
            [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers], b"".join(chunks))


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def _settle(answer: asyncio.Future, result: Answer) -> None:
    """On the loop: hand a request thread's result to the request waiting for it (unless it gave up)."""
    if not answer.done():
        answer.set_result(result)


class RequestThreads:
    """`count` threads that run `run(environ)` for the event loop, each call handed over once each way.

    Why not `loop.run_in_executor`: it wraps every call in a concurrent future,
    an asyncio future and two chained callbacks, and the loop needs two turns
    to see a result.  Here a call is one item on a `SimpleQueue` and its result
    one `call_soon_threadsafe`.
    """

    def __init__(self, count: int, run: Callable[[dict], Answer]):
        self._run = run
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"request-{n}", daemon=True)
                         for n in range(count)]
        for thread in self._threads:
            thread.start()

    def submit(self, loop: asyncio.AbstractEventLoop, answer: asyncio.Future, environ: dict) -> None:
        """Run the call in a free thread; `answer` gets its result, on `loop`."""
        self._jobs.put((loop, answer, environ))

    def stop(self) -> None:
        """Let every thread finish the call it is running, then end them all (blocks)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, answer, environ = job
            result = self._run(environ)
            try:
                loop.call_soon_threadsafe(_settle, answer, result)
            except RuntimeError:  # the loop has closed: the worker is exiting and nobody waits
                pass


class WSGIBridge:
    """An ASGI app that serves a WSGI app from a pool of `threads`, once each request is whole."""

    def __init__(self, app: WSGIApp, *, threads: int, max_body: int, body_timeout: float):
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.threads = RequestThreads(threads, self._run)
        self.running: dict[int, Running] = {}
        self._ids = itertools.count()

    def oldest_start(self) -> Running | None:
        """The call that has run longest, if any is running."""
        calls = list(self.running.values())  # a copy: request threads add and remove meanwhile
        return min(calls, key=lambda r: r.started, default=None)

    def close(self) -> None:
        """Wait for the running calls, then end the request threads (blocks)."""
        self.threads.stop()

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        # anything else (a WebSocket) is not served: returning closes it

    async def _lifespan(self, receive, send) -> None:
        """Start at once; at shutdown (connections drained) let the request threads finish."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _body(self, receive) -> bytes:
        """The whole body, read on the event loop; BodyTooLarge past the limit, ClientGone on a close.

        A small body has usually arrived with the headers, and then `receive()`
        answers without waiting.
        """
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge
            parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _refuse(self, send, status: int) -> None:
        """A problem, announcing the close; the worker closes the connection, whose body is unread."""
        body = problem_body(status)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def _http(self, scope: dict, receive, send) -> None:
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await self._body(receive)
        except BodyTooLarge:
            await self._refuse(send, 413)
            return
        except TimeoutError:
            await self._refuse(send, 408)
            return
        except ClientGone:
            return
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self.threads.submit(loop, answer, wsgi_environ(scope, body))
        status, headers, content = await answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _run(self, environ: dict) -> Answer:
        """In a request thread: the app's answer, recorded as running meanwhile; a crash is a 500 problem."""
        key = next(self._ids)
        self.running[key] = Running(time.monotonic(), environ["REQUEST_METHOD"], environ["PATH_INFO"])
        try:
            return call_app(self.app, environ)
        except Exception:  # noqa: BLE001 - Flask answers its own errors; this is what escapes it
            log.exception("the WSGI app failed outside its error handlers")
            body = problem_body(500)
            return 500, [(b"content-type", b"application/problem+json"),
                         (b"content-length", str(len(body)).encode())], body
        finally:
            del self.running[key]
