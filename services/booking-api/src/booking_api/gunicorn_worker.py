"""The API's gunicorn worker: requests are read on an event loop, and only whole ones take a thread.

Why: gunicorn's `gthread` worker hands each new connection to a request
thread, which reads the request line, the headers and the body with blocking
calls.  Eight connections that sent half a request and then nothing held all
2 × 4 threads, and every other client waited until they gave up.  This worker
is gunicorn's own asyncio worker (`gunicorn.workers.gasgi`), whose parser reads
every connection on one event loop without a thread, with three additions:

- a deadline for the request head (`BOOKING_HEADER_TIMEOUT_SECONDS`, default
  10 s from the connection's start): a connection that has not sent its whole
  request line and headers by then is closed (with a 408 problem if it sent
  anything); later requests on a kept-alive connection have gunicorn's
  `--keep-alive` for theirs;
- the Flask app runs in a pool of `--threads` threads through `WSGIBridge`, once
  its whole body has been read (at most 64 KiB, within
  `BOOKING_BODY_TIMEOUT_SECONDS`, default 10 s);
- the worker's heartbeat is stamped no later than the start of its oldest
  running request, so a request that hangs past `--timeout` gets this worker
  killed and replaced by the master, which `gthread` never did (its heartbeat
  came from the loop that keeps running beside a stuck thread).

Refusals the server makes itself are problem+json (`gunicorn_errors.py`) and
close the connection, including two that gunicorn's parser leaves to the app:
an HTTP/1.1 request without Host (RFC 9112 section 3.2: 400), and a declared
Content-Length over the limit (413 at once, before any `100 Continue`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import types

from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers import gasgi

from booking_api.contract import MAX_BODY_BYTES
from booking_api.gunicorn_errors import problem_response
from booking_api.wsgi_bridge import WSGIBridge


def _seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment, read once at import; a bad value stops the start."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not 0 < value <= 300:
        raise ValueError(f"{name} must be above 0 and at most 300, not {raw!r}")
    return value


#: How long a new connection has to send its request line and headers.
HEADER_TIMEOUT_SECONDS = _seconds("BOOKING_HEADER_TIMEOUT_SECONDS", 10.0)
#: How long a request's body may take to arrive once its headers have.
BODY_TIMEOUT_SECONDS = _seconds("BOOKING_BODY_TIMEOUT_SECONDS", 10.0)
#: Every turn of the event loop (a request takes a few) waits for the GIL, which a busy
#: request thread gives up only after the switch interval (5 ms by default).  At 1 ms the
#: worker answered 1.06-1.32x the confirms of the 5 ms default (asyncio loop, executor
#: bridge); with uvloop and the lighter bridge 5 ms answered as many confirms but tripled
#: the POST p99, and 0.5 or 0.2 ms answered fewer (bench/README.md, "The API's server").
GIL_SWITCH_INTERVAL_SECONDS = 0.001


def _names(code: types.CodeType) -> set[str]:
    """The global and attribute names `code` and the functions inside it use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def install_protocol() -> None:
    """Make gunicorn's asyncio worker, in this process, build every connection's protocol from ours.

    gasgi builds each connection's protocol from its module-level name
    `ASGIProtocol`, and gunicorn (27.0.1) offers no setting or hook for it, so
    the worker process rebinds that name.  If gunicorn stops building it from
    that name, this raises and the worker does not start, rather than quietly
    serving with gunicorn's own protocol (tests/test_framing.py would fail too).
    """
    if gasgi.ASGIProtocol not in (ASGIProtocol, Protocol) or "ASGIProtocol" not in _names(
            gasgi.ASGIWorker._serve.__code__):
        raise RuntimeError("gunicorn.workers.gasgi no longer builds its protocol from ASGIProtocol")
    gasgi.ASGIProtocol = Protocol


def refusal(version: tuple[int, int], headers: list[tuple[bytes, bytes]], content_length: int | None,
            max_body: int) -> int | None:
    """The status the server answers a parsed request head with itself, or None to serve it.

    gunicorn's parser already refuses malformed framing (duplicate or non-decimal
    Content-Length, Content-Length with Transfer-Encoding, repeated or unknown
    codings, chunked under HTTP/1.0, a duplicate Host); these two it leaves to
    the application.
    """
    if version >= (1, 1) and not any(name == b"host" for name, _ in headers):
        return 400
    if content_length is not None and content_length > max_body:
        return 413
    return None


class Protocol(ASGIProtocol):
    """gunicorn's HTTP/1 protocol with a deadline for the request head and problem+json refusals."""

    _head_deadline: asyncio.TimerHandle | None = None
    _sent_anything = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_deadline = self.worker.loop.call_later(HEADER_TIMEOUT_SECONDS, self._head_too_slow)

    def data_received(self, data) -> None:
        self._sent_anything = True
        super().data_received(data)

    def connection_lost(self, exc) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        """The request line and headers did not arrive in time: 408 if anything came, then close."""
        self._head_deadline = None
        if self._closed:
            return
        if self._sent_anything:
            self._safe_write(problem_response(408))
        self._close_transport()
        if self._request_ready is not None:
            self._request_ready.set()  # the connection's loop wakes, sees it closed and ends

    def _on_headers_complete(self):
        self._cancel_head_deadline()
        if self._closed:
            return False
        skip = super()._on_headers_complete()
        request = self._current_request
        status = refusal(request.version, request.headers_bytes,
                         None if request.chunked else request.content_length, MAX_BODY_BYTES)
        if status is not None:
            self._current_request = None  # the connection's loop ends instead of calling the app
            self._send_error_response(status, "")
            self._close_transport()
        return skip

    def _send_error_response(self, status, message, extra_headers=()) -> None:
        """gunicorn's own refusals as problems; `message` quotes the client's bytes, so it is only logged."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        self.log.warning("refused a request from %s with %d: %.200r", peer and peer[0], status, message)
        self._safe_write(problem_response(int(status)))


class Worker(gasgi.ASGIWorker):
    """gunicorn's asyncio worker serving the WSGI app of the command line through `WSGIBridge`."""

    _reported_hang = None

    def init_process(self) -> None:
        install_protocol()
        if self.cfg.asgi_loop == "uvloop":
            # gunicorn falls back to asyncio with a warning; a missing uvloop must stop the start instead.
            import uvloop  # noqa: F401
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
        super().init_process()

    @classmethod
    def check_config(cls, cfg, log) -> None:
        """`--threads` sizes the request pool here, unlike in gunicorn's ASGI worker: nothing to warn about."""

    def load_wsgi(self) -> None:
        self.wsgi = self.app.wsgi()
        self.asgi = WSGIBridge(self.wsgi, threads=self.cfg.threads, max_body=MAX_BODY_BYTES,
                               body_timeout=BODY_TIMEOUT_SECONDS)

    def notify(self) -> None:
        """Stamp the heartbeat no later than the oldest running request's start.

        The master kills a worker whose heartbeat is older than `--timeout`; with
        this, it kills one whose oldest request has run longer than that.
        """
        now = time.monotonic()
        bridge = getattr(self, "asgi", None)
        oldest = bridge.oldest_start() if bridge is not None else None
        stamp = now if oldest is None else min(now, oldest.started)
        timeout = self.cfg.timeout  # `self.timeout` is half of it: how often gunicorn expects a notify
        if oldest is not None and timeout and now - oldest.started > timeout / 2 \
                and self._reported_hang is not oldest:
            self._reported_hang = oldest
            self.log.warning("%s %r has run for %.0f s; past --timeout (%d s) the master restarts this worker",
                             oldest.method, oldest.path, now - oldest.started, timeout)
        os.utime(self.tmp.fileno(), (stamp, stamp))
