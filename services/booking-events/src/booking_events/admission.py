"""Who may open one more stream: caps per link and per client address, and who the client is.

An open stream is cheap but not free: its set-up reads Postgres, and every
event of its booking is one write per open stream.  One customer opening 3,000
streams on their own progress link made each event of that booking 3,000
writes and queued 3,000 set-ups ahead of another customer's page (3.9 s for a
page that takes 7 ms).  So each process counts its open streams per link (a
booking's progress page, or a booking's API stream) and per client address,
and refuses one more with a 429 before doing any work for it.  The counts are
per process: with N events pods behind the Ingress, a client can hold up to N
times a cap.  Pure bookkeeping and parsing; no I/O.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from booking_settings.fields import check, env, load


@dataclass(frozen=True)
class StreamLimits:
    """The caps and how the client is known; each field names its variable (`from_env` refuses a bad one)."""

    #: Open streams of one link (one booking's page streams; apart from that, its API streams).
    per_link: int = env("BOOKING_EVENTS_MAX_STREAMS_PER_LINK", 20, low=1)
    #: Open streams from one client address (all links and kinds together).
    per_client: int = env("BOOKING_EVENTS_MAX_STREAMS_PER_CLIENT", 500, low=1)
    #: Stream set-ups (the Postgres reads before the first event) running at once; the rest wait
    #: their turn here, in the event loop, not in the thread pool ahead of other customers' pages.
    setups: int = env("BOOKING_EVENTS_STREAM_SETUPS", 4, low=1)
    #: How many proxies in front of this service append to X-Forwarded-For (the chart's Ingress: 1).
    #: 0: the header is ignored (anyone can write it) and the client is the socket's peer.
    forwarded_for_hops: int = env("BOOKING_FORWARDED_FOR_HOPS", 0, low=0)
    #: The Retry-After of a refused stream.
    retry_after_seconds: int = 10

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StreamLimits:
        return load(cls, environ)


class StreamsFull(Exception):
    """One more stream would pass a cap; `scope` says which ("link" or "client")."""

    def __init__(self, scope: str, cap: int):
        super().__init__(f"{scope}: {cap} streams open")
        self.scope = scope
        self.cap = cap


class StreamSlots:
    """Open streams per link and per client, within their caps (one per process, event-loop only)."""

    def __init__(self, limits: StreamLimits):
        self._caps = {"link": limits.per_link, "client": limits.per_client}
        self._open: Counter[tuple[str, str]] = Counter()

    def hold(self, scope: str, key: str) -> _Held:
        """A slot of `scope` for `key` while a `with` block runs; StreamsFull when none is free.

        A plain class, not a generator context manager: a flood is mostly refusals, and
        unwinding a refusal through generators cost 7% of the event loop's time.
        """
        cap = self._caps[scope]
        if self._open[(scope, key)] >= cap:
            raise StreamsFull(scope, cap)
        return _Held(self._open, (scope, key))

    def count(self, scope: str, key: str) -> int:
        return self._open[(scope, key)]


class _Held:
    """One slot, taken on entering the `with` block and given back on leaving it."""

    __slots__ = ("_open", "_key")

    def __init__(self, counts: Counter[tuple[str, str]], key: tuple[str, str]):
        self._open, self._key = counts, key

    def __enter__(self) -> None:
        self._open[self._key] += 1

    def __exit__(self, *exc: object) -> None:
        self._open[self._key] -= 1
        if not self._open[self._key]:
            del self._open[self._key]


def client_address(peer: str | None, forwarded_for: list[str], hops: int) -> str:
    """The address a cap counts the request against.

    With `hops` trusted proxies in front, the client is the `hops`-th entry of
    X-Forwarded-For from the right: each trusted proxy appended the address it
    saw, and everything left of those is whatever the client chose to send.  A
    request with fewer entries did not come through the proxies (a pod inside
    the cluster): its peer is the client.  An IPv6 client is counted by its /64,
    the block one subscriber gets, so it cannot spread over its own addresses.
    """
    entries = [e.strip() for header in forwarded_for for e in header.split(",")] if hops else []
    raw = entries[-hops] if hops and len(entries) >= hops else (peer or "")
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return peer or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
