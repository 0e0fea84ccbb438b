"""Paused queues as Redis sees them: a copy, kept by the workers, for readers without Postgres.

The pause itself lives in Postgres (booking_core.queues.pauses).  The kopf operator reads only
Redis and the Kubernetes API, yet it should not add workers to a queue that an
operator paused: they would only idle, each holding a database pool.  The
workers already read the pauses every second (booking_core.queues.pausewatch), so each one also
writes what it applied to `ns:__paused__.<queue>` with a short expiry.  When
no worker of a queue runs, or none can reach Redis, the key lapses and the
queue reads as running: the operator then scales as it did before it knew
about pauses, never less safely.
"""

from __future__ import annotations

import redis

#: Long enough for a few missed polls (each worker writes every BOOKING_PAUSE_POLL_MS).
TTL_MS = 15_000


def key(namespace: str, queue: str) -> str:
    return f"{namespace}:__paused__.{queue}"


def write(client: redis.Redis, namespace: str, consumed: frozenset[str], paused: frozenset[str],
          ttl_ms: int = TTL_MS) -> None:
    """Mark each of `consumed` that is in `paused` (expiring), and clear the others."""
    pipe = client.pipeline(transaction=False)
    for queue in sorted(consumed):
        if queue in paused:
            pipe.set(key(namespace, queue), "1", px=ttl_ms)
        else:
            pipe.delete(key(namespace, queue))
    pipe.execute()


def read(client: redis.Redis, namespace: str, queues: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Which of `queues` a live worker reported paused (one MGET)."""
    if not queues:
        return frozenset()
    values = client.mget([key(namespace, q) for q in queues])
    return frozenset(q for q, v in zip(queues, values, strict=True) if v is not None)
