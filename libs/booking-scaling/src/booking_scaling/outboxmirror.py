"""The outbox's backlog as Redis sees it: a copy, kept by the relay, for the autoscalers.

Under the fair ordering most of a backlog waits in Postgres's outbox, and a
queue's Redis list holds only the relay's publish-ahead.  An autoscaler that
read Redis alone would see a few dozen messages while thousands wait, and
would not scale.  The kopf operator reads only Redis and the Kubernetes API,
so a relay writes, about every second (one relay per reading, and less often
when the outbox is slow to read; the expiry grows with the interval), each
queue's outbox backlog to `ns:__outbox__.<queue>` (a hash, with a short expiry): `waiting` (due rows),
`later` (retries waiting out their backoff) and `oldest_ms` (when the oldest
due row was written, ms since the epoch; 0 when none).  The operator and the
local runner add it to what Redis holds (`booking_scaling.backlog`).

When no relay runs, or none can reach Redis, the key lapses and the queue reads
as Redis alone: the autoscalers then scale as they did before they knew about
the outbox, never on a stale copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

#: Long enough for a few missed reports (a relay writes every REPORT_SECONDS, or 3x its backed-off interval).
TTL_MS = 15_000
#: How often a relay writes the copy.
REPORT_SECONDS = 1.0


@dataclass(frozen=True)
class OutboxBacklog:
    """One queue's rows in the outbox: due, waiting out a backoff, and when the oldest due one was written."""

    queue: str
    waiting: int = 0
    later: int = 0
    #: ms since the epoch; 0 when nothing is due.
    oldest_ms: int = 0

    def oldest_age_ms(self, now_ms: int) -> int:
        """How long the oldest due row has waited at `now_ms` (0 when none)."""
        return max(0, now_ms - self.oldest_ms) if self.waiting and self.oldest_ms else 0


def key(namespace: str, queue: str) -> str:
    return f"{namespace}:__outbox__.{queue}"


def write(client: redis.Redis, namespace: str, backlogs: list[OutboxBacklog], ttl_ms: int = TTL_MS) -> None:
    """Write each queue's copy, expiring (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for b in backlogs:
        pipe.hset(key(namespace, b.queue), mapping={"waiting": b.waiting, "later": b.later, "oldest_ms": b.oldest_ms})
        pipe.pexpire(key(namespace, b.queue), ttl_ms)
    pipe.execute()


def read(client: redis.Redis, namespace: str, queues: tuple[str, ...] | list[str]) -> dict[str, OutboxBacklog]:
    """Each of `queues`' copy (zeros where none lives); a malformed field reads as 0."""
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.hmget(key(namespace, q), "waiting", "later", "oldest_ms")
    out = {}
    for q, values in zip(queues, pipe.execute(), strict=True):
        nums = []
        for v in values:
            try:
                nums.append(max(0, int(v)) if v is not None else 0)
            except ValueError:
                nums.append(0)
        out[q] = OutboxBacklog(q, *nums)
    return out
