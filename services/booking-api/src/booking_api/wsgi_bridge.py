"""Run the Flask (WSGI) app in request threads, on requests the event loop has read whole.

Why not a ready-made ASGI-to-WSGI adapter: those start the WSGI call at once
and let the request thread read the body from the event loop as it comes, so
a client that sends its body slowly holds a request thread for as long as it
likes, which is the outage this module exists to prevent.  Here the worker's
connection (`http_connection.py`) reads the whole body first, bounded in size
and time, and only then does a thread of the pool (`threads`, gunicorn's
`--threads`) run the app, with the body in memory.

A request crosses from the loop to a thread once and its answer leaves from
that thread: `RequestThreads` take each call from one queue (no executor,
concurrent future or chained callbacks), because every hand-over costs a turn
of the event loop, and each turn waits for the GIL the request threads hold.

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


@dataclass(frozen=True)
class Running:
    """A call in a request thread: since when, and what (for the log line of a hung one)."""

    started: float
    method: str
    path: str


def wsgi_environ(scope: dict, body: bytes) -> dict:
    """The PEP 3333 environ for a request (described as an ASGI HTTP `scope`) whose body was read whole.

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
        "RAW_URI": raw_path.decode("latin-1") + ("?" + scope["query_string"].decode("latin-1")
                                                 if scope.get("query_string") else ""),
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
            [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers], b"".join(chunks))


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class RequestThreads:
    """`count` threads that run the calls the event loop hands them, from one queue.

    Why not `loop.run_in_executor`: it wraps every call in a concurrent future,
    an asyncio future and two chained callbacks, and the loop needs two turns
    to see a result.  Here a call is one item on a `SimpleQueue`, and the call
    itself tells the loop what it must know (`http_connection.Connection._serve`).
    """

    def __init__(self, count: int):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"request-{n}", daemon=True)
                         for n in range(count)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job()` in the first free thread."""
        self._jobs.put(job)

    def stop(self) -> None:
        """Let every thread finish the call it is running, then end them all (blocks)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # noqa: BLE001 - a thread that died would shrink the pool for good
                log.exception("a request thread's call failed")


class WSGIBridge:
    """The WSGI app, its request threads and the calls running in them; an ASGI app for the lifespan only."""

    def __init__(self, app: WSGIApp, *, threads: int):
        self.app = app
        self.threads = RequestThreads(threads)
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
        """gunicorn's asyncio worker runs the lifespan through here; requests never come this way."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)

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

    def run(self, environ: dict) -> Answer:
        """In a request thread: the app's answer, recorded as running meanwhile; a crash is a 500 problem."""
        key = next(self._ids)
        self.running[key] = Running(time.monotonic(), environ["REQUEST_METHOD"], environ["PATH_INFO"])
        try:
            return call_app(self.app, environ)
        except Exception:  # noqa: BLE001 - Flask answers its own errors; this is what escapes it
            log.exception("the WSGI app failed outside its error handlers")
            body = problem_body(500)
            return 500, [(b"Content-Type", b"application/problem+json"),
                         (b"Content-Length", str(len(body)).encode())], body
        finally:
            del self.running[key]
