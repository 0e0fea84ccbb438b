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
    """One decision: how many tokens were taken (0: refused), what is left, and when to come back."""

    taken: int
    #: Whole tokens left in the bucket after this decision.
    remaining: int
    #: Seconds until one token is back (0 when admitted).
    retry_after: float
    #: Seconds until the bucket is full again.
    reset_after: float
    #: The plans' generation as the script read it (compare with the one your cache was filled at).
    generation: str

    @property
    def allowed(self) -> bool:
        return self.taken > 0


class TokenBuckets:
    """Buckets under one key prefix on one Redis client."""

    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_LUA)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def take(self, name: str, rate: float, burst: int, want: int = 1, *, divisor: int = 1,
             give_back: int = 0) -> Verdict:
        """Take up to `want` tokens (at least one, or none and refused) from bucket `name`.

        The bucket refills at `rate` tokens a second up to `burst`.  More than one
        token is taken only if at most 1/`divisor` of those left (a lease ahead that
        leaves the rest to other processes).  `give_back` tokens are returned first.
        """
        return self._run(name, rate, burst, want, divisor, give_back)

    def refund(self, name: str, rate: float, burst: int, tokens: int = 1) -> Verdict:
        """Give tokens back (a request that cost nothing); never above a full bucket."""
        return self._run(name, rate, burst, 0, 1, tokens)

    def _run(self, name: str, rate: float, burst: int, want: int, divisor: int, give_back: int) -> Verdict:
        if not rate > 0 or burst < 1:
            raise ValueError(f"a bucket needs a rate above 0 and a burst of at least 1, got {rate}, {burst}")
        keys_and_args = (self.key(name), GENERATION_KEY, repr(1_000_000 / rate), int(burst), int(want),
                         max(int(divisor), 1), max(int(give_back), 0))
        try:
            # EVALSHA straight away: redis-py's Script wrapper costs more per call than the script's own work.
            reply = self.client.evalsha(self._script.sha, 2, *keys_and_args)
        except redis.exceptions.NoScriptError:  # a Redis restarted or flushed: load it again
            reply = self._script(keys=keys_and_args[:2], args=keys_and_args[2:])
        taken, remaining, retry_us, reset_us, generation = reply
        return Verdict(int(taken), max(int(remaining), 0), int(retry_us) / 1e6, int(reset_us) / 1e6,
                       generation.decode() if isinstance(generation, bytes) else str(generation))


def bump_generation(client: redis.Redis) -> None:
    """Tell every process that caches plans to read them again (after a change has committed)."""
    client.incr(GENERATION_KEY)


def whole_seconds(seconds: float) -> int:
    """A delay as HTTP's whole seconds, rounded up and at least 1 (Retry-After: 0 invites a hot loop)."""
    return max(1, math.ceil(seconds))
