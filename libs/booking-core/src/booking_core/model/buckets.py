"""Token buckets in Redis, shared by every process that takes from them (one Lua script, atomic).

Each bucket holds up to `burst` tokens and refills at `rate` tokens a second; a
request takes one or is refused with the time until one is back.  The bucket is
kept as GCRA's single number (`buckets.lua` beside this module says how), so a
decision is one round trip (EVALSHA) and the state of an idle tenant is no key at
all.  Why not the `limits` library: its strategies are fixed, moving and sliding
windows, none of which is a token bucket (a sustained rate plus a burst), and
emulating one with two windows costs two round trips and still lets a tenant take
a burst at every window boundary.

The same script returns the plans' generation (a counter an operator's change of
plan increments), so a process that caches plans learns of a change on its next
decision, with no extra round trip.  This module does I/O on a client it is given
and decides nothing about failures: the caller chooses to fail open or closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import redis

_LUA = resources.files(__package__).joinpath("buckets.lua").read_text(encoding="utf-8")
#: The counter `bump_generation` increments whenever a plan changes.
GENERATION_KEY = "booking:plans:generation"


@dataclass(frozen=True)
class Verdict:
    """One decision: admitted or not, what is left, and when to come back."""

    allowed: bool
    #: Whole tokens left in the bucket after this decision.
    remaining: int
    #: Seconds until one token is back (0 when admitted).
    retry_after: float
    #: Seconds until the bucket is full again.
    reset_after: float
    #: The plans' generation as the script read it (compare with the one your cache was filled at).
    generation: str


class TokenBuckets:
    """Buckets under one key prefix on one Redis client."""

    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_LUA)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def take(self, name: str, rate: float, burst: int, cost: int = 1) -> Verdict:
        """Take `cost` tokens from bucket `name` (rate tokens/s, up to `burst`), if it has them."""
        return self._run(name, rate, burst, cost)

    def refund(self, name: str, rate: float, burst: int) -> Verdict:
        """Give one token back (a request that turned out to cost nothing); never above a full bucket."""
        return self._run(name, rate, burst, -1)

    def _run(self, name: str, rate: float, burst: int, cost: int) -> Verdict:
        if not rate > 0 or burst < 1:
            raise ValueError(f"a bucket needs a rate above 0 and a burst of at least 1, got {rate}, {burst}")
        interval = 1_000_000 / rate
        allowed, remaining, retry_us, reset_us, generation = self._script(
            keys=[self.key(name), GENERATION_KEY], args=[repr(interval), int(burst), int(cost)])
        return Verdict(allowed=bool(allowed), remaining=max(int(remaining), 0), retry_after=int(retry_us) / 1e6,
                       reset_after=int(reset_us) / 1e6,
                       generation=generation.decode() if isinstance(generation, bytes) else str(generation))


def bump_generation(client: redis.Redis) -> None:
    """Tell every process that caches plans to read them again (after a change has committed)."""
    client.incr(GENERATION_KEY)


def whole_seconds(seconds: float) -> int:
    """A delay as HTTP's whole seconds, rounded up and at least 1 (Retry-After: 0 invites a hot loop)."""
    return max(1, math.ceil(seconds))
