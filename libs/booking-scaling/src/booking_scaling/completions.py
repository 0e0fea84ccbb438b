"""How many tasks each queue's workers have finished: one counter per queue in Redis.

The promise (booking_scaling.promise) needs a pool's throughput, and both actuators
must read it the same way: the kopf operator has Redis and no Postgres (the task
event log holds the same facts, but its image carries no database driver).  So
each worker process counts the messages it finished and adds the count to
`ns:__completed__.<queue>` with the presence stamp it already writes every few
seconds (booking_core.queues.presence): no extra Redis command per message.  The
counter only grows; a reader that sees it drop (a flushed Redis) starts a new
interval (booking_scaling.promise.estimate).  This is the platform's own key, not
Dramatiq's, so it is named here rather than in `layout`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis


def key(namespace: str, queue: str) -> str:
    """The counter of tasks finished from `queue`."""
    return f"{namespace}:__completed__.{queue}"


def add(pipe: Any, namespace: str, counts: dict[str, int]) -> None:
    """Queue INCRBYs of `counts` (queue -> finished since the last flush) on a Redis pipeline."""
    for queue, n in sorted(counts.items()):
        if n > 0:
            pipe.incrby(key(namespace, queue), n)


def read(client: redis.Redis, namespace: str, queues: Iterable[str]) -> int:
    """Tasks finished from all of `queues`, summed (a pool may consume several)."""
    values = client.mget([key(namespace, q) for q in queues])
    return sum(int(v) for v in values if v is not None)
