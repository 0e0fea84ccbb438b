"""Queue depth read from Dramatiq's Redis keys in one atomic snapshot.

Dramatiq's Redis broker keeps, per queue (booking_scaling.layout names the
keys): a ready list, a delayed list (retries waiting out their backoff), one
set per live worker of the messages it fetched and has not acked (in flight; a
dead worker's set counts until Dramatiq requeues it), and the dead letters.
Messages a worker has fetched from the delayed queue and holds until their eta
are delayed, not in flight.  The age of the oldest ready message comes from its
body's timestamp.

Asked for a lead time (`snapshot(queues, due_within_ms=...)`, the autoscaler's
delayedLeadSeconds), it also counts the delayed messages due by then: those
whose `eta` option (ms since the epoch, set by Dramatiq's `enqueue(delay=...)`,
in the body kept in the delayed queue's messages hash) is at most Redis' TIME
plus the lead, whether still listed or held by a worker.
A delayed message whose body or eta cannot be read counts as due (the safe
side).  That decodes every delayed message's body (one HMGET per 500; about
6 ms per 1,000 delayed messages, measured on the embedded Redis, during which
the script holds Redis), so it is done only when asked; without a lead every
delayed message is reported, due or not.

One Lua script (`depth.lua`, given the key names by `Layout.lua_args()`) reads
all of it, so the numbers are consistent.  The ops endpoint, the metrics and
the autoscaler all use this reader.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from importlib import resources

import redis

from booking_scaling.layout import Layout

#: The snapshot script, beside this module (as Dramatiq keeps its own); read at import, so a
#: package built without it fails at once.
_SNAPSHOT_LUA = resources.files(__package__).joinpath("depth.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class QueueDepth:
    """One queue's backlog at one instant."""

    queue: str
    ready: int
    in_flight: int
    #: Waiting for their eta (retries in their backoff, `delay=` sends), due or not.
    delayed: int
    dead: int
    #: How long the oldest ready message has waited, in milliseconds (0 when none).
    oldest_ready_age_ms: int = 0
    #: Of `delayed`, those due within the lead time the snapshot was asked for
    #: (`due_within_ms`); None when it was not asked.
    delayed_due: int | None = None

    @property
    def backlog(self) -> int:
        """Work not yet finished: ready + in flight + delayed (dead letters excluded)."""
        return self.ready + self.in_flight + self.delayed

    def as_dict(self) -> dict:
        """The fields as a dict; `delayed_due` only when it was read (the ops API serves this)."""
        d = asdict(self)
        if self.delayed_due is None:
            del d["delayed_due"]
        return d


class QueueReader:
    """Reads QueueDepth for several queues with one registered Lua script."""

    def __init__(self, client: redis.Redis, namespace: str = "dramatiq"):
        self.client = client
        self.namespace = namespace
        self._layout = Layout(namespace).lua_args()
        self._script = client.register_script(_SNAPSHOT_LUA)

    def snapshot(self, queues: tuple[str, ...] | list[str], due_within_ms: float | None = None) -> list[QueueDepth]:
        """Depth of every queue in `queues`, read atomically.

        With `due_within_ms`, each QueueDepth's `delayed_due` also counts the delayed
        messages whose eta is at most Redis' clock plus that many milliseconds.
        """
        if due_within_ms is None:
            lead = ""
        elif due_within_ms < 0:
            raise ValueError(f"due_within_ms must be >= 0, got {due_within_ms!r}")
        else:
            lead = str(math.ceil(due_within_ms))
        rows = self._script(keys=[], args=[*self._layout, lead, *queues])
        return [QueueDepth(q, *map(int, row[:5]), delayed_due=None if due_within_ms is None else int(row[5]))
                for q, row in zip(queues, rows, strict=True)]
