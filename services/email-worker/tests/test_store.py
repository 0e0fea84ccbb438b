"""The worker's Postgres side against the real database."""

from __future__ import annotations

import uuid

import pytest

from booking_core import outbox
from booking_core.contracts import AUDIT
from email_worker import store


def email_sent_events(conn, booking_id: str) -> list[dict]:
    return conn.execute(
        "SELECT message_id::text, queue, actor, payload FROM outbox"
        " WHERE payload->>'booking_id' = %s AND payload->>'kind' = 'email.sent'",
        (booking_id,),
    ).fetchall()


def test_load_booking(db_conn, make_booking, tenant) -> None:
    booking = make_booking(customer_name="Grace Hopper")
    loaded = store.load_booking(db_conn, booking["id"])
    assert loaded["customer_name"] == "Grace Hopper"
    assert store.load_booking(db_conn, booking["id"], tenant_id=tenant["id"])["id"] == booking["id"]
    assert store.load_booking(db_conn, booking["id"], tenant_id=str(uuid.uuid4())) is None
    assert store.load_booking(db_conn, str(uuid.uuid4())) is None
    assert store.load_booking(db_conn, "not-a-uuid") is None


def test_record_sent_once_with_one_audit_event(db_conn, make_booking, tenant) -> None:
    booking_id = make_booking()["id"]
    mid = f"<booking-{booking_id}@hotel.example>"
    assert not store.already_sent(db_conn, booking_id)
    assert store.record_sent(db_conn, booking_id, mid, "ada@example.test") is True
    assert store.already_sent(db_conn, booking_id)
    assert store.record_sent(db_conn, booking_id, mid, "ada@example.test") is False

    rows = db_conn.execute(
        "SELECT message_id, recipient FROM email_sends WHERE booking_id = %s", (booking_id,)
    ).fetchall()
    assert rows == [{"message_id": mid, "recipient": "ada@example.test"}]
    (event,) = email_sent_events(db_conn, booking_id)
    event_id = str(uuid.uuid5(uuid.UUID(booking_id), "email.sent"))
    assert event["message_id"] == event_id == outbox.booking_event_id(booking_id, store.EVENT_KIND)
    assert (event["queue"], event["actor"]) == (AUDIT.queue, AUDIT.actor)
    payload = event["payload"]
    assert payload.pop("occurred_at")
    assert payload == {
        "event_id": event_id,
        "kind": "email.sent",
        "tenant_id": tenant["id"],
        "booking_id": booking_id,
        "actor": "email-worker",
        "details": {"message_id": mid},
    }


def test_record_sent_is_atomic(db_conn, make_booking) -> None:
    booking_id = make_booking()["id"]
    with pytest.raises(RuntimeError), db_conn.transaction():
        store.record_sent(db_conn, booking_id, "<m@x>", "ada@example.test")
        raise RuntimeError("crash before commit")
    assert not store.already_sent(db_conn, booking_id)
    assert email_sent_events(db_conn, booking_id) == []


def test_event_ids_differ_per_booking() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    event_id = outbox.booking_event_id
    assert event_id(a, store.EVENT_KIND) == event_id(a, store.EVENT_KIND) != event_id(b, store.EVENT_KIND)
