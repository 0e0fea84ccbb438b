"""One HTTP attempt of a delivery: resolve once, check the address, POST to it, read a bounded answer.

The host is resolved here and the connection goes to the address the SSRF
guard accepted (the URL's host stays in `Host` and, for https, in SNI and the
certificate check), so a DNS answer that changes between check and connect
(rebinding) cannot redirect it.  Redirects are not followed.  At most
MAX_RESPONSE_BYTES of the answer are read.  One `httpx.Client` per process
pools connections per (scheme, address, port); it is thread-safe, shared by
the worker's threads.
"""

from __future__ import annotations

import ipaddress
import time

import httpx

from booking_core.webhooks import addresses, schedule
from booking_core.webhooks.deliveries import Outcome

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "booking-platform-webhooks/1"


def _netloc(addr: addresses.IPAddress, port: int) -> str:
    return f"[{addr}]:{port}" if isinstance(addr, ipaddress.IPv6Address) else f"{addr}:{port}"


class Sender:
    """Sends attempts with pooled connections, a connect timeout and an overall deadline."""

    def __init__(self, *, connect_timeout: float, timeout: float, allowed: tuple = (), max_connections: int = 100):
        self.timeout = timeout
        self.allowed = allowed
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=30),
            follow_redirects=False, trust_env=False)  # no proxy from the environment: the guard decides

    def close(self) -> None:
        self.client.close()

    def post(self, url: str, body: bytes, headers: dict[str, str], *, resolve=addresses.resolve) -> Outcome:
        """One attempt; never raises for what the receiver or the network does."""
        started = time.monotonic()

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
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    # The total deadline also bounds a receiver that trickles its answer.
                    if size >= MAX_RESPONSE_BYTES or time.monotonic() - started > self.timeout:
                        break
                text = b"".join(chunks)[:MAX_RESPONSE_BYTES].decode("utf-8", "replace")
                return Outcome(status=resp.status_code, latency_ms=elapsed(), response=text,
                               retry_after_ms=schedule.retry_after_ms(resp.headers.get("retry-after")))
        except httpx.TimeoutException as exc:
            return Outcome(status=None, latency_ms=elapsed(), error=f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return Outcome(status=None, latency_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:300])
