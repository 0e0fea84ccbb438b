"""Dramatiq's private Redis layout: every key of its broker that the platform reads or writes, named here only.

Why, in one place and guarded: docs/architecture.md, decision 23.

Dramatiq's Redis broker documents its keys only in comments of its
`dispatch.lua` (Dramatiq 2.x).  For namespace `ns` and queue `q`:

- `ns:q` (list): ready message ids, pushed on the right, fetched from the left;
- `ns:q.msgs` (hash): id -> body (JSON) of every ready or in-flight message;
- `ns:q.DQ` (list): delayed ids, retries in their backoff and `delay=` sends;
- `ns:q.DQ.msgs` (hash): their bodies; `options.eta` says when each is due (ms);
- `ns:q.XQ` (sorted set): dead-lettered ids, scored by when they died (they expire);
- `ns:q.XQ.msgs` (hash): their bodies;
- `ns:__heartbeats__` (sorted set): broker ids scored by their last command (ms);
  one silent for the heartbeat timeout is dead, and its messages are requeued;
- `ns:__acks__.<broker id>.<q>` (set): ids a worker fetched and has not acked,
  in flight; for `<q>.DQ`, the delayed ones it holds in memory until due.

None of it is public: a Dramatiq release may move any of these, and a reader
that spelled them itself would silently read zeros (an autoscaler that sees no
backlog scales the workers away).  So:

- the names are written once, in `Layout` below; the Lua scripts that read them
  (`depth.lua` here, booking-events' `activity.lua`) get them as arguments from
  `Layout.lua_args()`, as `string.format` patterns, and spell none;
- booking-core pins Dramatiq's major version (`dramatiq>=2,<3`);
- `tests/test_layout.py` drives a real RedisBroker and Worker through each state
  (ready, in flight, delayed, held, dead) and fails, naming the key, the day a
  release keeps its state elsewhere.

Who reads or writes them: `booking_scaling.depth` (queue depth),
`booking_core.tasks.deadletters` (a resolved letter's `.XQ` entry),
`booking_core.queues.pausewatch` (a paused worker's heartbeat),
`booking_events.activity` (live and busy workers) and `outbox_relay.reconcile`
(which tasks still have a message in Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: How Dramatiq names a queue's delayed and dead-letter queues (`dramatiq.common.dq_name` / `xq_name`).
DELAYED_SUFFIX = ".DQ"
DEAD_SUFFIX = ".XQ"

RedisType = Literal["list", "hash", "set", "zset"]


def delayed_name(queue: str) -> str:
    """The name of `queue`'s delayed queue, where Dramatiq keeps messages until their eta."""
    return queue + DELAYED_SUFFIX


def dead_name(queue: str) -> str:
    """The name of `queue`'s dead-letter queue."""
    return queue + DEAD_SUFFIX


@dataclass(frozen=True)
class Key:
    """One key of the layout: what it is for, its name, and the Redis type Dramatiq keeps there."""

    role: str
    name: str
    type: RedisType


@dataclass(frozen=True)
class Layout:
    """The keys of one Dramatiq namespace (the broker's `namespace`, BOOKING_REDIS_NAMESPACE)."""

    namespace: str = "dramatiq"

    # -- by queue name (a plain queue, or a delayed / dead one: `delayed_name(q)`, `dead_name(q)`)

    def queue(self, name: str) -> str:
        """The list of message ids of the queue called `name`."""
        return f"{self.namespace}:{name}"

    def messages(self, name: str) -> str:
        """The hash of message bodies, by id, of the queue called `name`."""
        return f"{self.queue(name)}.msgs"

    def acks(self, worker_id: str, name: str) -> str:
        """The set of ids worker `worker_id` fetched from the queue called `name` and has not acked."""
        return f"{self.namespace}:__acks__.{worker_id}.{name}"

    @property
    def heartbeats(self) -> str:
        """The sorted set of broker ids, scored by the time (ms) of their last command."""
        return f"{self.namespace}:__heartbeats__"

    # -- by the platform's queue

    def ready(self, queue: str) -> str:
        return self.queue(queue)

    def ready_messages(self, queue: str) -> str:
        return self.messages(queue)

    def delayed(self, queue: str) -> str:
        return self.queue(delayed_name(queue))

    def delayed_messages(self, queue: str) -> str:
        return self.messages(delayed_name(queue))

    def dead(self, queue: str) -> str:
        """A sorted set (not a list, unlike the other queues), scored by the time of death."""
        return self.queue(dead_name(queue))

    def dead_messages(self, queue: str) -> str:
        return self.messages(dead_name(queue))

    def in_flight(self, worker_id: str, queue: str) -> str:
        return self.acks(worker_id, queue)

    def held_delayed(self, worker_id: str, queue: str) -> str:
        """Delayed messages a worker fetched and holds in memory until their eta."""
        return self.acks(worker_id, delayed_name(queue))

    def keys(self, queue: str, worker_id: str) -> tuple[Key, ...]:
        """Every key above for one queue and one worker, with the type Dramatiq keeps there."""
        return (
            Key("ready", self.ready(queue), "list"),
            Key("ready_messages", self.ready_messages(queue), "hash"),
            Key("delayed", self.delayed(queue), "list"),
            Key("delayed_messages", self.delayed_messages(queue), "hash"),
            Key("dead", self.dead(queue), "zset"),
            Key("dead_messages", self.dead_messages(queue), "hash"),
            Key("heartbeats", self.heartbeats, "zset"),
            Key("in_flight", self.in_flight(worker_id, queue), "set"),
            Key("held_delayed", self.held_delayed(worker_id, queue), "set"),
        )

    def lua_args(self) -> list[str]:
        """The layout as a Lua script's first LUA_ARGS arguments (see depth.lua).

        The heartbeats key, then `string.format` patterns: a queue's key (`%s`: its
        name), its messages hash (name), a worker's acks set (worker id, queue name),
        and a queue's delayed and dead queue names (queue name).
        """
        escaped = Layout(self.namespace.replace("%", "%%"))
        return [self.heartbeats, escaped.queue("%s"), escaped.messages("%s"), escaped.acks("%s", "%s"),
                delayed_name("%s"), dead_name("%s")]


#: How many arguments `Layout.lua_args()` gives; a script's own arguments follow them.
LUA_ARGS = 6
