"""One client connection of the API's worker: read on the event loop, answered from a request thread.

The event loop parses each request with gunicorn's own HTTP/1 parser (the one
its asyncio worker uses, so every malformed-framing case it refuses is refused
here), with a deadline for the head and one for the body, and refuses with a
problem+json what it will not serve.  Only a whole request (body at most
64 KiB, in memory) goes to a request thread; that thread runs the app and
writes the answer to the socket itself, without blocking: whatever the socket
does not take at once (a client that reads slowly, an answer larger than its
buffer) the event loop writes later, so no client holds a thread.

Why not gunicorn's ASGI protocol with an ASGI-to-WSGI bridge, as before: a
request then took six turns of the event loop, and at every turn the loop
waited for the GIL that the request threads hold, then for a CPU that Postgres
and the load share; with the answer passed back to the loop to be written, the
client waited for two of those hops.  Saturated at 50 connections that worker
answered 0.8x the confirms of gunicorn's `gthread`; this one, where the loop
takes two turns per request and the answer leaves from the thread that made
it, answers more than `gthread` with a lower p99 (`bench/README.md`, "The
API's server: the worker's rate").

Writing from a request thread: the thread writes through a duplicate of the
transport's socket, under the connection's lock, and only while the loop has
nothing of this connection's to write (it reads no further request while one
is in a thread, and while the transport still holds the rest of an earlier
answer the next answers go through the transport too: a pipelined request's
answer written from its thread overtook the 6 MB before it as soon as the
client read some of them).  The duplicate is closed under the same lock when the
transport reports the connection lost, so a thread never writes to a socket
number that has since been given to another client.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import threading
import time
from functools import partial

from gunicorn.asgi.parser import (
    CallbackRequest,
    InvalidChunkExtension,
    LimitRequestHeaders,
    LimitRequestLine,
    ParseError,
    PythonProtocol,
    UnsupportedTransferCoding,
)
from gunicorn.asgi.protocol import _RequestHeaderPolicy, secure_scheme_names
from gunicorn.http.errors import ParseException

from booking_api.access_log import wanted
from booking_api.gunicorn_errors import problem_response, reason
from booking_api.wsgi_bridge import Answer, WSGIBridge, wsgi_environ

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Statuses whose answer carries no body (RFC 9110 sections 15.2, 15.3.5, 15.4.5).
_NO_BODY = frozenset({204, 304})


class Refused(Exception):
    """The server answers the request itself with `status`, then closes."""

    def __init__(self, status: int, message: str = ""):
        super().__init__(message)
        self.status = status


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


def parse_error_status(exc: Exception) -> int | None:
    """The status of a parser error, as gunicorn's own protocol maps them; None if `exc` is not one."""
    if isinstance(exc, Refused):
        return exc.status
    if isinstance(exc, LimitRequestLine):
        return 414
    if isinstance(exc, LimitRequestHeaders):
        return 431
    if isinstance(exc, UnsupportedTransferCoding):
        return 501  # RFC 9112 section 6.1
    if isinstance(exc, InvalidChunkExtension | ParseError | ParseException):
        return 400
    return None


def expects_continue(version: tuple[int, int], headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the client waits for `100 Continue` before its body (ignored under HTTP/1.0, RFC 9110 10.1.1)."""
    return version >= (1, 1) and any(name == b"expect" and value.lower() == b"100-continue"
                                     for name, value in headers)


def wants_close(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the app's own headers ask to close the connection after this answer."""
    return any(name.lower() == b"connection" and value.lower().strip() == b"close" for name, value in headers)


_date_cache: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    """`Date: ...` for this second (RFC 9110 section 6.6.1), formatted once a second."""
    global _date_cache  # noqa: PLW0603 - one formatted line per second, shared by the threads
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        cached = _date_cache = (now, b"Date: " + stamp.encode("ascii") + b"\r\n")
    return cached[1]


def render(answer: Answer, *, close: bool, keep_alive_10: bool, head_only: bool) -> bytes:
    """The bytes of an HTTP/1.1 response to write: status line, the app's headers, framing, body.

    The body is whole, so its length frames it: the app's Content-Length is
    replaced by the real one (a HEAD keeps the app's), and Transfer-Encoding and hop-by-hop
    `Connection` fields are dropped in favour of the server's own.  A header
    that could split the response (CR or LF in it) makes the answer a 500.
    """
    status, headers, body = answer
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason(status).encode("latin-1")), _date_header()]
    length = len(body)
    for name, value in headers:
        # The app's spelling of each name is kept (clients should not care, some do); framing
        # fields are matched without regard to case.
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding", b"connection"):
            if head_only and lowered == b"content-length" and value.isdigit():
                length = int(value)  # HEAD: the length the GET would have had (RFC 9110 section 9.3.2)
            continue
        if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value or b":" in name:
            return render((500, [(b"Content-Type", b"text/plain")], b"Internal Server Error"),
                          close=close, keep_alive_10=keep_alive_10, head_only=head_only)
        lines.append(name + b": " + value + b"\r\n")
    if status not in _NO_BODY and not 100 <= status < 200:
        lines.append(b"Content-Length: %d\r\n" % length)
    else:
        body = b""
    if close:
        lines.append(b"Connection: close\r\n")
    elif keep_alive_10:
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(b"\r\n")
    if not head_only:
        lines.append(body)
    return b"".join(lines)


class _Logged:
    """What gunicorn's access log reads of a response."""

    __slots__ = ("status", "headers", "sent")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], sent: int):
        self.status = status
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        self.sent = sent


class Connection(asyncio.Protocol):
    """One client connection (see the module's docstring); gunicorn's asyncio worker makes one per accept."""

    def __init__(self, worker, *, header_timeout: float, body_timeout: float, max_body: int):
        self.worker = worker
        self.cfg = worker.cfg
        self.log = worker.log
        self.loop: asyncio.AbstractEventLoop = worker.loop
        self.bridge: WSGIBridge = worker.asgi
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser: PythonProtocol | None = None
        self.request: CallbackRequest | None = None
        self.body: list[bytes] = []
        self.body_size = 0
        self.partial = False  # some of the next request has arrived
        self.busy = False  # a request is in a request thread
        self.flushing = False  # the transport holds unsent bytes of an earlier answer (set by the loop)
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()
        self.server: tuple = ("", 0)
        self.client: tuple = ("", 0)
        self.peer = None
        self.trust: tuple | None = None
        self.secure_names: frozenset[bytes] = frozenset()

    # -- the loop's side ---------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.worker.nr_conns += 1
        self.sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        self.sock.setblocking(False)
        self.peer = transport.get_extra_info("peername")
        self.server = tuple((transport.get_extra_info("sockname") or ("", 0))[:2])
        self.client = tuple((self.peer or ("", 0))[:2])
        cfg = self.cfg
        self.parser = PythonProtocol(
            on_headers_complete=self._on_headers_complete, on_body=self._on_body,
            on_message_complete=self._on_message_complete,
            limit_request_line=cfg.limit_request_line, limit_request_fields=cfg.limit_request_fields,
            limit_request_field_size=cfg.limit_request_field_size,
            permit_unconventional_http_method=cfg.permit_unconventional_http_method,
            permit_unconventional_http_version=cfg.permit_unconventional_http_version)
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused or timed out: what else it sends is not read, let alone served
        if not self.busy:
            self.partial = True
        try:
            self.parser.feed(data)
        except Exception as exc:
            status = parse_error_status(exc)
            if status is None:
                raise
            self._refuse(status, str(exc))

    def connection_lost(self, exc) -> None:
        with self.lock:
            self.closed = True
            self.sock.close()  # the last reference to the socket: the peer gets its FIN now
        self.worker.nr_conns -= 1
        self._disarm()

    def _on_headers_complete(self) -> bool:
        self._disarm()
        request = CallbackRequest.from_parser(self.parser)
        # gunicorn's own header policy, as its asyncio protocol applies it: underscored names are
        # dropped, scheme headers count only from `forwarded_allow_ips`.  A private name: if an
        # upgrade moves it, the import fails and the worker does not start, not serve without it.
        policy = _RequestHeaderPolicy(self.cfg, self.peer, request.scheme, request.version)
        if self.trust is None:
            # Whether the peer is a trusted proxy, once per connection as gunicorn's own protocol
            # does: per request it parsed the peer's address again (a twentieth of a refusal's CPU).
            self.trust = policy._peer_trusted_for_forwarded()
            self.secure_names = secure_scheme_names(self.trust[0])
        policy.apply(request, self.trust, self.secure_names)
        status = refusal(request.version, request.headers_bytes,
                         None if request.chunked else request.content_length, self.max_body)
        if status is not None:
            raise Refused(status)
        self.request, self.body, self.body_size = request, [], 0
        if request.chunked or request.content_length:
            if expects_continue(request.version, request.headers_bytes):
                self.transport.write(_CONTINUE)
            self._arm(self.body_timeout)
        return False  # never skip the body: it frames the next request

    def _on_body(self, chunk: bytes) -> None:
        self.body_size += len(chunk)
        if self.body_size > self.max_body:
            raise Refused(413)
        self.body.append(chunk)

    def _on_message_complete(self) -> None:
        self._disarm()
        self.transport.pause_reading()  # nothing more of this client until its answer is out
        self.busy = True
        request = self.request
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        environ = wsgi_environ({
            "method": request.method, "raw_path": request.raw_path, "query_string": request.query.encode("latin-1"),
            "http_version": f"{request.version[0]}.{request.version[1]}", "headers": request.headers_bytes,
            "server": self.server, "client": self.client, "scheme": request.scheme,
            "root_path": self.cfg.root_path or ""}, body)
        self.bridge.threads.submit(partial(self._serve, request, environ))

    def _answered(self, data: bytes, sent: int, close: bool) -> None:
        """On the loop, once the thread has written what the socket took: the rest, then the next request."""
        worker = self.worker
        worker.nr += 1
        if worker.nr >= worker.max_requests and worker.alive:
            self.log.info("Autorestarting worker after current request.")
            worker.alive = False
        self.busy = False
        if self.closed or self.transport.is_closing():
            return
        if sent < 0:
            self.transport.abort()
            return
        if sent < len(data):
            self.transport.write(memoryview(data)[sent:])
        # While the transport still holds bytes of an answer, the next answers go through it too: a
        # thread's own write would reach the socket ahead of them as soon as the client read some.
        self.flushing = self.transport.get_write_buffer_size() > 0
        if close:
            self.transport.close()
            return
        pipelined = self.parser.remaining()
        self.parser.reset()
        self.request, self.partial = None, False
        self._arm(self.cfg.keepalive)
        self.transport.resume_reading()
        if pipelined:
            self.data_received(pipelined)

    def _refuse(self, status: int, message: str = "") -> None:
        """Answer with a problem (never quoting `message`, which holds the client's bytes) and close."""
        self.log.warning("refused a request from %s with %d: %.200r", self.client[0], status, message)
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(problem_response(status))
            self.transport.close()

    def _arm(self, seconds: float) -> None:
        """Close the connection unless the current wait (head, body or next request) ends within `seconds`."""
        self._disarm()
        self.timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _too_slow(self) -> None:
        """A request did not arrive in time: 408 if some of it came, then close."""
        self.timer = None
        if self.closed or self.busy or self.transport.is_closing():
            return
        if self.partial:
            self.transport.write(problem_response(408))
        self.transport.close()

    # -- a request thread's side -------------------------------------------------------------

    def _serve(self, request: CallbackRequest, environ: dict) -> None:
        """In a request thread: run the app, write its answer, hand the rest to the loop."""
        started = time.monotonic()
        answer = self.bridge.run(environ)
        worker = self.worker
        close = (request.should_close() or wants_close(answer[1]) or not worker.alive
                 or not self.cfg.keepalive or worker.nr + 1 >= worker.max_requests)
        data = render(answer, close=close, keep_alive_10=request.version < (1, 1),
                      head_only=request.method == "HEAD")
        with self.lock:
            if self.closed:
                sent = -1
            elif self.flushing:
                sent = 0  # the loop writes it all, behind what it still holds of the answer before
            else:
                try:
                    sent = self.sock.send(data, socket.MSG_NOSIGNAL)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = -1
        try:
            self.loop.call_soon_threadsafe(self._answered, data, sent, close)
        except RuntimeError:  # the loop has closed: the worker is exiting
            return
        mode = getattr(self.log, "mode", "all")
        if self.log.access_log_enabled and wanted(mode, answer[0]):
            self.log.access(_Logged(answer[0], answer[1], len(answer[2])), request, environ,
                            datetime.timedelta(seconds=time.monotonic() - started))
