"""pipelined(): each thread's block sends its own enqueues, whatever other threads do with the broker."""

from __future__ import annotations

import threading
import uuid

import dramatiq
import pytest

from booking_core.worker.broker import make_broker
from outbox_relay.pipelined import pipelined


def message() -> dramatiq.Message:
    return dramatiq.Message(queue_name="email", actor_name="send_confirmation_email", args=(),
                            kwargs={"booking_id": str(uuid.uuid4())}, options={})


def stored(broker, key: str) -> set[str]:
    """The Dramatiq message ids in a queue's message hash (its keys are Redis ids of Dramatiq's own)."""
    return {dramatiq.Message.decode(raw).message_id for raw in broker.client.hvals(key)}


def test_interleaved_blocks_on_one_broker_each_send_their_own(settings):
    """A opens, B opens, A enqueues and closes, B closes; then an enqueue outside any block.

    A's message must be in Redis when A's block ends (not when B's does), and the last one at once:
    a block that swapped the broker's script for everyone sent A's message with B's pipeline and
    left the broker pointing at A's spent pipeline, so the last message never arrived.
    """
    broker = make_broker(settings)
    msgs = f"{settings.redis_namespace}:email.msgs"
    a_msg, b_msg, after = message(), message(), message()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen_after_a: dict[str, bool] = {}
    errors: list[BaseException] = []

    def a():
        try:
            with pipelined(broker):
                a_in.set()
                assert b_in.wait(10)
                broker.enqueue(a_msg)
            ids = stored(broker, msgs)
            seen_after_a.update(a=a_msg.message_id in ids, b=b_msg.message_id in ids)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
        finally:
            a_out.set()

    def b():
        try:
            assert a_in.wait(10)
            with pipelined(broker):
                broker.enqueue(b_msg)
                b_in.set()
                assert a_out.wait(10)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            b_in.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert seen_after_a == {"a": True, "b": False}
    broker.enqueue(after)
    assert stored(broker, msgs) == {m.message_id for m in (a_msg, b_msg, after)}


def test_blocks_do_not_nest(settings):
    broker = make_broker(settings)
    with pipelined(broker), pytest.raises(RuntimeError, match="do not nest"), pipelined(broker):
        pass
