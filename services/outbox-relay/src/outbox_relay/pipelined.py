"""Publish a whole outbox batch to Redis in one round trip, through Dramatiq's own enqueue.

Dramatiq's `RedisBroker.enqueue` runs its `dispatch` Lua script once per
message, one Redis round trip each.  At three messages per booking those
round trips (send, wait, parse, per message) were most of the relay's CPU
(py-spy on the relay under load), CPU taken from the API on a shared box.

Inside `pipelined(broker)`, the broker's `dispatch` script is queued on a
redis-py pipeline instead of run at once, and the pipeline runs when the
block ends.  Everything else is Dramatiq's: the same `enqueue`, the same
script, keys and message encoding, the same middleware hooks (the tracing
context is injected in `before_enqueue` as before).  Only the round trips are
batched.  If the pipeline fails the error propagates from the `with`, so the
caller's outbox transaction rolls back and its rows are published again
later with the same message ids, which consumers treat as duplicates: the
same guarantee as a failure between two single enqueues.

Only the relay uses this, from one thread, and only around enqueues.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dramatiq.brokers.redis import RedisBroker


class _Queued:
    """The broker's dispatch script, sent to `pipe` instead of to Redis at once."""

    def __init__(self, script, pipe) -> None:
        self._script = script
        self._pipe = pipe

    def __call__(self, keys=None, args=None, client=None):
        return self._script(keys=keys, args=args, client=self._pipe)


@contextmanager
def pipelined(broker: RedisBroker) -> Iterator[None]:
    """Queue every enqueue made in the block; send them all in one round trip at its end."""
    original = broker.scripts["dispatch"]
    with broker.client.pipeline(transaction=False) as pipe:
        broker.scripts["dispatch"] = _Queued(original, pipe)
        try:
            yield
        finally:
            broker.scripts["dispatch"] = original
        pipe.execute()
