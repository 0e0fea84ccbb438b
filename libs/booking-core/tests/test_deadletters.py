"""The dead-letter record's SQL on real Postgres: filters (client text stays literal), retention,
one open record per message, and the worker writing it with the dead state."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest

from booking_core.messaging.errors import PermanentTaskError
from booking_core.tasks import deadletters
from booking_core.tasks.deadletters import Filter, like_pattern
from booking_core.worker.broker import make_broker
from e2e_helpers import wait_until
from relay_helpers import booking_without_relay


def make_booking(conn, tenant: dict) -> str:
    """A booking of `tenant`, its outbox rows removed (no relay runs here)."""
    return booking_without_relay(conn, tenant["id"])[0]


def message(tenant_id: str, **kwargs) -> dramatiq.Message:
    return dramatiq.Message(queue_name="email", actor_name="send_confirmation_email", args=(),
                            kwargs={"task": "email", "booking_id": None, "tenant_id": tenant_id, **kwargs},
                            options={"retries": 2, "traceback": "Traceback ...\nBoom"})


@pytest.mark.parametrize(("text", "pattern"), [
    ("550", "%550%"), ("50%", "%50\\%%"), ("a_b", "%a\\_b%"), ("c:\\x", "%c:\\\\x%"),
])
def test_like_pattern_escapes_the_wildcards(text, pattern):
    assert like_pattern(text) == pattern


@pytest.mark.parametrize(("needle", "found"), [
    ("refused", True), ("REFUSED", True), ("%%", False), ("a%b", False), ("h_st", False),
    ("'; DROP TABLE dead_letters; --", False), ("100%", True), ("a_b", True), ("c:\\", True),
])
def test_error_filter_matches_text_literally_in_any_case(db_conn, tenant, needle, found):
    deadletters.record(db_conn, message(tenant["id"]), error="Refused by host a_b: 100% sure, c:\\")
    got = deadletters.list_dead(db_conn, Filter(tenant_id=tenant["id"], error=needle))
    assert bool(got) is found
    assert db_conn.execute("SELECT to_regclass('dead_letters') IS NOT NULL AS ok").fetchone()["ok"]


def test_time_filters_and_count(db_conn, tenant):
    for _ in range(3):
        deadletters.record(db_conn, message(tenant["id"]), error="x")
    now = datetime.now(UTC)
    f = Filter(tenant_id=tenant["id"])
    assert deadletters.count(db_conn, f) == 3
    assert deadletters.count(db_conn, dataclasses.replace(f, dead_since=now - timedelta(minutes=5))) == 3
    assert deadletters.count(db_conn, dataclasses.replace(f, dead_since=now + timedelta(minutes=5))) == 0
    assert deadletters.count(db_conn, dataclasses.replace(f, dead_before=now - timedelta(minutes=5))) == 0
    assert deadletters.count(db_conn, dataclasses.replace(f, queue="invoice")) == 0


def test_an_unknown_queue_is_refused():
    with pytest.raises(ValueError, match="queue must be one of"):
        Filter(queue="sms")


def test_a_message_dying_twice_while_open_keeps_one_record(db_conn, tenant):
    m = message(tenant["id"])
    deadletters.record(db_conn, m, error="first")
    deadletters.record(db_conn, m, error="second", attempts=9)
    [letter] = deadletters.list_dead(db_conn, Filter(tenant_id=tenant["id"]))
    assert (letter.last_error, letter.retries) == ("second", 8)
    assert "traceback" not in letter.options and letter.options["retries"] == 2


def test_purge_removes_only_resolved_records_past_retention(db_conn, tenant):
    old, recent, open_ = (message(tenant["id"]) for _ in range(3))
    for m in (old, recent, open_):
        deadletters.record(db_conn, m, error="x")
    db_conn.execute("UPDATE dead_letters SET dead_at = now() - interval '90 days' WHERE tenant_id = %s",
                    (tenant["id"],))
    db_conn.execute("UPDATE dead_letters SET resolved_at = now() - interval '31 days', resolution = 'discarded'"
                    " WHERE message_id = %s", (old.message_id,))
    db_conn.execute("UPDATE dead_letters SET resolved_at = now() - interval '1 day', resolution = 'requeued'"
                    " WHERE message_id = %s", (recent.message_id,))
    assert deadletters.purge_resolved(db_conn, 30) >= 1
    left = {r["message_id"] for r in db_conn.execute(
        "SELECT message_id::text FROM dead_letters WHERE tenant_id = %s", (tenant["id"],))}
    assert left == {recent.message_id, open_.message_id}


def test_a_worker_records_the_dead_letter_with_the_dead_state(settings, db_conn, tenant):
    """Given an actor that refuses its message for good, the task goes dead and its record exists,
    with the message's kwargs, trace context, final error and the row's attempts."""
    broker = make_broker(settings, track_tasks=True)
    name = f"refuse_{uuid.uuid4().hex[:8]}"

    def refuse(*, task: str, booking_id: str, tenant_id: str) -> None:
        raise PermanentTaskError("no such mailbox")

    # A real queue name (the API documents only those), in this test's own Redis namespace.
    actor = dramatiq.actor(refuse, broker=broker, actor_name=name, queue_name="email", max_retries=0,
                           throws=(PermanentTaskError,))
    booking_id = make_booking(db_conn, tenant)
    worker = dramatiq.Worker(broker, queues={"email"}, worker_threads=1)
    worker.start()
    try:
        sent = actor.send_with_options(kwargs={"task": "email", "booking_id": booking_id, "tenant_id": tenant["id"]},
                                       trace_context={"traceparent": "00-" + "12" * 16 + "-" + "34" * 8 + "-01"})
        wait_until(lambda: deadletters.list_dead(db_conn, Filter(tenant_id=tenant["id"])), timeout=30,
                   interval=0.05, what="the dead-letter record")
    finally:
        worker.stop()
        broker.close()
    [letter] = deadletters.list_dead(db_conn, Filter(tenant_id=tenant["id"]))
    assert (letter.message_id, letter.actor, letter.queue, letter.booking_id) == (
        sent.message_id, name, "email", booking_id)
    assert letter.last_error == "PermanentTaskError: no such mailbox"
    assert letter.options["trace_context"]["traceparent"].startswith("00-" + "12" * 16)
    row = db_conn.execute("SELECT state, attempts FROM booking_tasks WHERE booking_id = %s AND task = 'email'",
                          (booking_id,)).fetchone()
    assert row["state"] == "dead" and letter.retries == row["attempts"] - 1 == 0
