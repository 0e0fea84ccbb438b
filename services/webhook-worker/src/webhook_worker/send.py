"""One HTTP attempt of a delivery: resolve once, check the address, POST to it, read a bounded answer.

The host is resolved here and the connection goes to the address the SSRF
guard accepted (the URL's host stays in `Host` and, for https, in SNI and the
certificate check), so a DNS answer that changes between check and connect
(rebinding) cannot redirect it.  Redirects are not followed.  At most
MAX_RESPONSE_BYTES of the answer are read.  One `httpx.Client` per process
pools connections per (scheme, address, port); it is thread-safe, shared by
the worker's threads.

An attempt has a total deadline (BOOKING_WEBHOOKS_TIMEOUT_SECONDS) from before
the host is resolved to the answer's last byte.  httpx's timeouts are per
operation: a receiver that trickles its status line, headers or body a byte
at a time never lets one read wait its full timeout, and would hold a worker
thread (and the endpoint's slot) for as long as it liked.  So every socket
operation of the attempt is given at most the time left before the deadline
(`DeadlineBackend`), and fails as a timeout once none is left.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import typing

import httpcore
import httpx

from booking_core.webhooks import addresses, schedule
from booking_core.webhooks.deliveries import Outcome

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "booking-platform-webhooks/1"


def _netloc(addr: addresses.IPAddress, port: int) -> str:
    return f"[{addr}]:{port}" if isinstance(addr, ipaddress.IPv6Address) else f"{addr}:{port}"


#: The deadline of the attempt this thread is making (time.monotonic()), read by every socket operation.
_attempt = threading.local()


def _left(exc: type[Exception], timeout: float | None) -> float:
    """`timeout` cut to the time left before this thread's attempt deadline; `exc` when none is left."""
    deadline = getattr(_attempt, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise exc("the attempt's total deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the current attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkStream):
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _left(httpcore.ReadTimeout, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _left(httpcore.WriteTimeout, timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return DeadlineStream(self.inner.start_tls(ssl_context, server_hostname,
                                                   _left(httpcore.ConnectTimeout, timeout)))

    def get_extra_info(self, info: str) -> typing.Any:
        return self.inner.get_extra_info(info)


class DeadlineBackend(httpcore.SyncBackend):
    """httpcore's sockets, each wrapped in a DeadlineStream; connecting also ends at the deadline."""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> httpcore.NetworkStream:
        return DeadlineStream(super().connect_tcp(host, port, _left(httpcore.ConnectTimeout, timeout),
                                                  local_address, socket_options))


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose sockets keep the attempt's deadline.

    httpx's transport takes no network backend, so its pool is replaced by an
    httpcore pool built with the same settings and DeadlineBackend.
    """

    def __init__(self, *, limits: httpx.Limits):
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=DeadlineBackend())


class Sender:
    """Sends attempts with pooled connections, a connect timeout and a total deadline per attempt."""

    def __init__(self, *, connect_timeout: float, timeout: float, allowed: tuple = (), max_connections: int = 100):
        self.timeout = timeout
        self.allowed = allowed
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                              keepalive_expiry=30)
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout), transport=DeadlineTransport(limits=limits),
            follow_redirects=False, trust_env=False)  # no proxy from the environment: the guard decides

    def close(self) -> None:
        self.client.close()

    def post(self, url: str, body: bytes, headers: dict[str, str], *, resolve=addresses.resolve) -> Outcome:
        """One attempt, over by `timeout` seconds after it starts; never raises for what the receiver does."""
        started = time.monotonic()
        _attempt.deadline = started + self.timeout
        try:
            return self._post(url, body, headers, resolve, started)
        finally:
            _attempt.deadline = None

    def _post(self, url: str, body: bytes, headers: dict[str, str], resolve, started: float) -> Outcome:
        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            scheme, host, port = addresses.check_url(url)
            addr = resolve(host, port, self.allowed)
        except addresses.Refused as exc:
            return Outcome(status=None, latency_ms=elapsed(), error=f"refused: {exc}", permanent=True)
        parts = httpx.URL(url)
        target = parts.copy_with(netloc=_netloc(addr, port).encode())
        host_header = parts.netloc.decode()
        extensions = {"sni_hostname": host} if scheme == "https" else {}
        try:
            with self.client.stream("POST", target, content=body, extensions=extensions, headers={
                    **headers, "Host": host_header, "Content-Type": "application/json",
                    "User-Agent": USER_AGENT}) as resp:
                chunks, size, cut = [], 0, None
                try:
                    for chunk in resp.iter_bytes():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size >= MAX_RESPONSE_BYTES:
                            break
                except httpx.TimeoutException:
                    # The status came in time: it is the receiver's answer; what of the body came is kept.
                    cut = "answer body cut off at the attempt's deadline"
                text = b"".join(chunks)[:MAX_RESPONSE_BYTES].decode("utf-8", "replace")
                return Outcome(status=resp.status_code, latency_ms=elapsed(), response=text, error=cut,
                               retry_after_ms=schedule.retry_after_ms(resp.headers.get("retry-after")),
                               timed_out=cut is not None)
        except httpx.TimeoutException as exc:
            return Outcome(status=None, latency_ms=elapsed(), error=f"timeout: {type(exc).__name__}", timed_out=True)
        except httpx.HTTPError as exc:
            return Outcome(status=None, latency_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:300])
