"""When a failed delivery is tried again, and which failures are worth it.

Exponential backoff with jitter: attempt n (from 1) waits about
`first * factor**(n-1)`, capped, times a random factor in [1 - jitter, 1 + jitter],
so receivers that failed together are not retried in step.  With the defaults
(10 s, x3, capped at 6 h, 11 attempts) the last attempt comes about a day after
the first.  A `Retry-After` the receiver sends (seconds or an HTTP date) is
honoured when it asks for longer, up to the cap.

Retried: connection errors and timeouts, 408, 425, 429 and every 5xx.  Not
retried (the delivery goes dead at once, replayable): other 3xx (redirects are
not followed) and 4xx, since the receiver answered and an identical request
would get the same answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRIED_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Schedule:
    """Backoff of one endpoint's deliveries."""

    first_ms: int = 10_000
    factor: float = 3.0
    cap_ms: int = 6 * 3600 * 1000
    max_attempts: int = 11
    jitter: float = 0.2

    def __post_init__(self):
        if self.first_ms < 1 or self.cap_ms < self.first_ms:
            raise ValueError("backoff: first must be at least 1 ms and at most the cap")
        if self.max_attempts < 1:
            raise ValueError("backoff: at least one attempt")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff: jitter is a fraction below 1")

    def base_ms(self, attempt: int) -> int:
        """The wait after failed attempt `attempt` (from 1), before jitter."""
        return int(min(self.cap_ms, self.first_ms * self.factor ** (attempt - 1)))

    def delay_ms(self, attempt: int, *, retry_after_ms: int | None = None,
                 rng: random.Random | None = None) -> int | None:
        """How long to wait after failed attempt `attempt`; None when it was the last."""
        if attempt >= self.max_attempts:
            return None
        rng = rng or random
        base = self.base_ms(attempt)
        delay = int(base * rng.uniform(1 - self.jitter, 1 + self.jitter))
        if retry_after_ms is not None and retry_after_ms > delay:
            delay = min(retry_after_ms, self.cap_ms)
        return max(1, delay)


def retried(status: int | None) -> bool:
    """Whether a failed attempt is tried again: None (no answer) and the statuses above."""
    return status is None or status in RETRIED_STATUSES or 500 <= status <= 599


def delivered(status: int | None) -> bool:
    return status is not None and 200 <= status <= 299


def retry_after_ms(value: str | None, *, now: datetime | None = None) -> int | None:
    """A `Retry-After` header in milliseconds (delta-seconds or HTTP-date); None when absent or malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0, int((when - now).total_seconds() * 1000))
