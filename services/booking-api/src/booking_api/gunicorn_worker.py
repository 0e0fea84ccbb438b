"""The API's gunicorn worker: requests are read on an event loop, and only whole ones take a thread.

Why: gunicorn's `gthread` worker hands each new connection to a request
thread, which reads the request line, the headers and the body with blocking
calls.  Eight connections that sent half a request and then nothing held all
2 × 4 threads, and every other client waited until they gave up.  This worker
is gunicorn's own asyncio worker (`gunicorn.workers.gasgi`: event loop,
signals, graceful drain, heartbeat), on uvloop, with each connection served by
`http_connection.Connection` instead of gunicorn's ASGI protocol:

- requests are parsed on the event loop by gunicorn's own HTTP/1 parser, with
  a deadline for the request head (`BOOKING_HEADER_TIMEOUT_SECONDS`, default
  10 s from the connection's start; later requests on a kept-alive connection
  have gunicorn's `--keep-alive`) and one for the body
  (`BOOKING_BODY_TIMEOUT_SECONDS`, default 10 s once the headers are in);
  past either the connection is closed, with a 408 problem if it sent anything;
- the Flask app runs in a pool of `--threads` threads (`WSGIBridge`) once the
  whole body (at most 64 KiB) has arrived, and the thread writes the answer
  itself without blocking; what the socket does not take, the loop writes;
- the worker's heartbeat is stamped no later than the start of its oldest
  running request, so a request that hangs past `--timeout` gets this worker
  killed and replaced by the master, which `gthread` never did (its heartbeat
  came from the loop that keeps running beside a stuck thread).

Refusals the server makes itself are problem+json (`gunicorn_errors.py`) and
close the connection, including two that gunicorn's parser leaves to the app:
an HTTP/1.1 request without Host (RFC 9112 section 3.2: 400), and a declared
Content-Length over the limit (413 at once, before any `100 Continue`).
Plain HTTP/1 only: TLS ends at the ingress, and neither gunicorn's `--protocol
uwsgi`, HTTP/2 nor WebSockets are served (the start fails if TLS or uWSGI is set).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import types

from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers import gasgi

from booking_api.contract import MAX_BODY_BYTES
from booking_api.http_connection import Connection
from booking_api.settings import from_process
from booking_api.wsgi_bridge import WSGIBridge

#: Each request takes two turns of the event loop, and at each the loop waits for the GIL,
#: which a busy request thread gives up only after the switch interval (5 ms by default).
#: Eight paired rounds at 50 connections (bench/README.md, "The API's server: the worker's
#: rate"): at 1 ms the worker answered 1.09x gthread's confirms with 0.95x its POST p99; at
#: 5 ms as many confirms, but 1.21x gthread's p99.
GIL_SWITCH_INTERVAL_SECONDS = 0.001


#: Held from the fork until the worker's event loop runs (gunicorn_conf.post_fork, Worker.run).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


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


class Protocol(Connection):
    """A connection with this worker's deadlines and body limit; gunicorn's asyncio worker builds one per accept."""

    def __init__(self, worker):
        settings = worker.settings
        super().__init__(worker, header_timeout=settings.header_timeout_seconds,
                         body_timeout=settings.body_timeout_seconds, max_body=MAX_BODY_BYTES)


class Worker(gasgi.ASGIWorker):
    """gunicorn's asyncio worker serving the WSGI app of the command line over `Protocol` connections."""

    _reported_hang = None

    def init_process(self) -> None:
        # The object the master read at start (gunicorn_conf), inherited across the fork.
        self.settings = from_process()
        if self.cfg.is_ssl or self.cfg.protocol != "http":
            # A request thread writes its answer to the socket itself, which would bypass TLS.
            raise RuntimeError("this worker serves plain HTTP/1 only (no --certfile, no --protocol uwsgi)")
        install_protocol()
        if self.cfg.asgi_loop == "uvloop":
            # gunicorn falls back to asyncio with a warning; a missing uvloop must stop the start instead.
            import uvloop  # noqa: F401
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
        super().init_process()

    def run(self) -> None:
        """Let the stop signals through once the event loop runs (gunicorn_conf.post_fork held them)."""
        self.loop.call_soon(signal.pthread_sigmask, signal.SIG_UNBLOCK, STOP_SIGNALS)
        super().run()

    @classmethod
    def check_config(cls, cfg, log) -> None:
        """`--threads` sizes the request pool here, unlike in gunicorn's ASGI worker: nothing to warn about."""

    def load_wsgi(self) -> None:
        self.wsgi = self.app.wsgi()
        self.asgi = WSGIBridge(self.wsgi, threads=self.cfg.threads)

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
