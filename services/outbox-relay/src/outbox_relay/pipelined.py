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

The broker's `dispatch` script is wrapped once, and the wrapper sends to
the pipeline of the *calling thread's* open block, if it has one.  An
earlier version swapped the broker's script for the length of each block;
two threads publishing through one broker then restored each other's
swaps, and an enqueue could land on a pipeline that had already run: the
row was deleted from the outbox and its message never reached Redis (a CI
run lost 55 of 90).  Each thread's block is now its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dramatiq.brokers.redis import RedisBroker

_INSTALL = threading.Lock()


class _Dispatch:
    """The broker's dispatch script, sent to this thread's open pipeline, else run at once."""

    def __init__(self, script) -> None:
        self._script = script
        self._local = threading.local()

    @property
    def pipe(self):
        return getattr(self._local, "pipe", None)

    @pipe.setter
    def pipe(self, pipe) -> None:
        self._local.pipe = pipe

    def __call__(self, keys=None, args=None, client=None):
        pipe = self.pipe
        return self._script(keys=keys, args=args, client=client if pipe is None else pipe)


def _dispatch_of(broker: RedisBroker) -> _Dispatch:
    """The broker's wrapped dispatch script, wrapping it on first use (once, whatever the threads)."""
    with _INSTALL:
        script = broker.scripts["dispatch"]
        if not isinstance(script, _Dispatch):
            script = broker.scripts["dispatch"] = _Dispatch(script)
        return script


@contextmanager
def pipelined(broker: RedisBroker) -> Iterator[None]:
    """Queue every enqueue this thread makes in the block; send them all in one round trip at its end."""
    dispatch = _dispatch_of(broker)
    if dispatch.pipe is not None:
        raise RuntimeError("pipelined() blocks do not nest")
    with broker.client.pipeline(transaction=False) as pipe:
        dispatch.pipe = pipe
        try:
            yield
        finally:
            dispatch.pipe = None
        pipe.execute()
