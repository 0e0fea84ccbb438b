"""The ops console's sign-in throttle: per client address and per token prefix, against guessing tokens.

Each sign-in attempt takes a token from two buckets in Redis (booking_core's
token buckets, shared by every events pod): one per client address (10 at once,
then one every 6 s) and one per token prefix (5 at once, then one every 30 s).
The address bucket stops one client guessing many tokens; the prefix bucket stops
many clients (a botnet, or addresses rotated behind a proxy) guessing the rest of
one known token.  Both are taken before the token is looked up, so a refused
attempt costs no Postgres query and tells nothing.  The prefix is hashed into the
key: no token material is stored.

Redis down: the attempt goes through (fail open), because the console is what an
operator needs during an outage, and the tokens' 256 bits are the real defence;
one warning is logged per outage, not per attempt.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass

import redis

from booking_core.model import buckets

log = logging.getLogger(__name__)
#: The public part of a token that identifies it (what `api_tokens.prefix` keeps).
PREFIX_CHARS = 10


@dataclass(frozen=True)
class Limit:
    """A bucket's size and refill."""

    burst: int
    rate_per_second: float


PER_ADDRESS = Limit(burst=10, rate_per_second=1 / 6)
PER_PREFIX = Limit(burst=5, rate_per_second=1 / 30)


@dataclass(frozen=True)
class Refusal:
    """Why an attempt was refused, and for how long."""

    scope: str  # "address" or "token"
    retry_after: int


class SignInThrottle:
    """Both buckets of every sign-in attempt, failing open when Redis does not answer."""

    def __init__(self, client: redis.Redis, namespace: str, *, per_address: Limit = PER_ADDRESS,
                 per_prefix: Limit = PER_PREFIX):
        self.buckets = buckets.TokenBuckets(client, f"{namespace}:limits:sign-in")
        self.per_address, self.per_prefix = per_address, per_prefix
        self._lock = threading.Lock()
        self._down = False

    def attempt(self, address: str, token: str) -> Refusal | None:
        """Count one attempt; a Refusal when either bucket is empty (None: go ahead)."""
        prefix = hashlib.sha256(token.strip()[:PREFIX_CHARS].encode("utf-8", "replace")).hexdigest()[:32]
        try:
            for scope, key, limit in (("address", f"address:{address}", self.per_address),
                                      ("token", f"token:{prefix}", self.per_prefix)):
                verdict = self.buckets.take(key, limit.rate_per_second, limit.burst)
                if not verdict.allowed:
                    self._answered()
                    return Refusal(scope, buckets.whole_seconds(verdict.retry_after))
        except (redis.RedisError, OSError) as e:
            with self._lock:
                first, self._down = not self._down, True
            if first:
                log.warning("sign-in throttle: Redis unreachable (%s); sign-ins are not throttled until it "
                            "answers", type(e).__name__)
            return None
        self._answered()
        return None

    def _answered(self) -> None:
        if self._down:
            with self._lock:
                was, self._down = self._down, False
            if was:
                log.warning("sign-in throttle: Redis reachable again; sign-ins are throttled again")
