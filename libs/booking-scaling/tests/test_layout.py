"""booking_scaling.layout against a real Dramatiq: every key it names holds what it says, after real work.

The guard for a Dramatiq upgrade.  A real RedisBroker and Worker, on real Redis,
put a message in each state the platform reads: ready (enqueued, no worker
yet), in flight (a worker runs it and holds it), delayed (enqueued with a
delay, then held by the worker until its eta) and dead (failed with no retry
left).  Then every key `Layout.keys()` names must exist with the Redis type the
layout says, and hold that message's id.  The day a release keeps its state
elsewhere, this fails and names each key it no longer finds.
"""

from __future__ import annotations

import threading

import dramatiq
import pytest
from dramatiq import Worker

from booking_scaling.layout import LUA_ARGS, Key, Layout, dead_name, delayed_name

QUEUE = "layout-probe"


def holds(client, key: Key, member: str) -> bool:
    """Whether `key` (of the type the layout says) holds `member`."""
    if key.type == "list":
        return member.encode() in client.lrange(key.name, 0, -1)
    if key.type == "hash":
        return bool(client.hexists(key.name, member))
    if key.type == "set":
        return bool(client.sismember(key.name, member))
    return client.zscore(key.name, member) is not None


def mismatches(client, layout: Layout, worker_id: str, expected: dict[str, str]) -> list[str]:
    """What is wrong with each key of the layout whose role is in `expected` (a member it must hold)."""
    wrong = []
    for key in layout.keys(QUEUE, worker_id):
        if key.role not in expected:
            continue
        found = client.type(key.name).decode()
        if found != key.type:
            what = "nothing" if found == "none" else f"a {found}"
            wrong.append(f"{key.role}: expected a {key.type} at {key.name!r}, found {what}")
            continue
        member = expected[key.role]
        if not holds(client, key, member):
            wrong.append(f"{key.role}: {key.name!r} is a {key.type} but does not hold {member!r}")
    return wrong


def moved(wrong: list[str]) -> str:
    return (f"Dramatiq {dramatiq.__version__} keeps its state elsewhere than booking_scaling.layout says "
            "(update the layout, and check every reader it lists):\n" + "\n".join(wrong))


class Seen(dramatiq.Middleware):
    """Dramatiq's own hooks: a delayed message taken by the worker, a failed one dead-lettered."""

    def __init__(self):
        self.delayed = threading.Event()
        self.dead_lettered = threading.Event()

    def before_delay_message(self, broker, message):
        self.delayed.set()

    def after_nack(self, broker, message):
        self.dead_lettered.set()


@pytest.fixture
def worker(broker):
    """A Dramatiq Worker on the test's broker (two threads), stopped after the test."""
    running: list[Worker] = []

    def start() -> Worker:
        w = Worker(broker, worker_threads=2, worker_timeout=100)
        w.start()
        running.append(w)
        return w

    yield start
    for w in running:
        w.stop(timeout=10_000)


def test_every_key_the_layout_names_holds_what_dramatiq_keeps_there(broker, worker):
    layout = Layout(broker.namespace)
    release, started = threading.Event(), threading.Event()

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
    def hold():
        started.set()
        release.wait(30)

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
    def fail():
        raise RuntimeError("no retry left: dead-lettered at once")

    def rid(message: dramatiq.Message) -> str:
        return message.options["redis_message_id"]

    try:
        # Given a message and a delayed one enqueued before any worker runs: ready, and delayed
        held, delayed = hold.send(), hold.send_with_options(delay=600_000)
        waiting = {"ready": rid(held), "ready_messages": rid(held),
                   "delayed": rid(delayed), "delayed_messages": rid(delayed)}
        wrong = mismatches(broker.client, layout, broker.broker_id, waiting)
        assert wrong == [], moved(wrong)

        # When a failing message is enqueued too and a worker starts: it runs the first message and
        # holds it, holds the delayed one until its eta, and dead-letters the failing one
        dead = fail.send()
        seen = Seen()
        broker.add_middleware(seen)
        worker()
        # (waiting on Dramatiq's own hooks, not on the keys, which may have moved)
        assert started.wait(30), "the worker never started the held message"
        assert seen.delayed.wait(30), "the worker never took the delayed message"
        assert seen.dead_lettered.wait(30), "the worker never dead-lettered the failing message"

        # Then every other key of the layout is where it says, of its type, holding its message
        working = {
            "ready_messages": rid(held),  # an in-flight message's body stays until it is acked
            "delayed_messages": rid(delayed),  # and so does a held delayed one's
            "dead": rid(dead),
            "dead_messages": rid(dead),
            "heartbeats": broker.broker_id,
            "in_flight": rid(held),
            "held_delayed": rid(delayed),
        }
        wrong = mismatches(broker.client, layout, broker.broker_id, working)
        assert wrong == [], moved(wrong)
        every = {k.role for k in layout.keys(QUEUE, broker.broker_id)}
        assert set(waiting) | set(working) == every, "a key of the layout that this test does not check"
    finally:
        release.set()


def test_the_lua_patterns_make_the_same_names_as_the_layout():
    layout = Layout("ns%with:colons")
    heartbeats, queue, messages, acks, delayed, dead = layout.lua_args()
    assert len(layout.lua_args()) == LUA_ARGS
    assert heartbeats == layout.heartbeats
    # Lua's string.format and Python's % agree on %s and %%
    assert queue % "email" == layout.ready("email")
    assert messages % delayed_name("email") == layout.delayed_messages("email")
    assert acks % ("w1", "email") == layout.in_flight("w1", "email")
    assert acks % ("w1", delayed % "email") == layout.held_delayed("w1", "email")
    assert queue % (dead % "email") == layout.dead("email") == layout.queue(dead_name("email"))
