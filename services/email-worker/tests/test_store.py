"""The worker's Postgres side against the real database."""

from __future__ import annotations

import uuid

import pytest

from booking_core import db
from booking_core.audit import booking_audit, chain
from booking_core.messaging import outbox
from booking_core.messaging.contracts import AUDIT
from email_worker import store


def email_sent_events(conn, booking_id: str) -> list[dict]:
    """The booking's email.sent entries in the audit chain."""
    return conn.execute(
        "SELECT event_id::text, tenant_id::text, booking_id::text, actor, details FROM audit_log"
        " WHERE booking_id = %s AND kind = 'email.sent'",
        (booking_id,),
    ).fetchall()


def queued_email_sent_events(conn, booking_id: str) -> list[dict]:
    """email.sent events handed to the audit worker through the outbox."""
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
    # The audit entry is in the tenant's chain, appended with the send, and nothing waits in the outbox
    (event,) = email_sent_events(db_conn, booking_id)
    event_id = str(uuid.uuid5(uuid.UUID(booking_id), "email.sent"))
    assert event["event_id"] == event_id == outbox.booking_event_id(booking_id, store.EVENT_KIND)
    assert event == {"event_id": event_id, "tenant_id": tenant["id"], "booking_id": booking_id,
                     "actor": "email-worker", "details": {"message_id": mid}}
    assert queued_email_sent_events(db_conn, booking_id) == []
    assert all(r.ok for r in chain.verify(db_conn, tenant["id"]))


def test_a_contended_audit_chain_hands_the_event_to_the_audit_worker(db_conn, database_url, make_booking,
                                                                     tenant, monkeypatch) -> None:
    # Given another transaction holding the tenant's audit chain past the lock timeout
    monkeypatch.setattr(booking_audit, "LOCK_TIMEOUT_MS", 100)
    booking_id = make_booking()["id"]
    mid = f"<booking-{booking_id}@hotel.example>"
    with db.connect(database_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (chain._LOCK_CLASS, tenant["id"]))
        # When the send is recorded
        assert store.record_sent(db_conn, booking_id, mid, "ada@example.test") is True
        holder.rollback()
    # Then the send and the task's state are committed, and the event waits in the outbox instead
    assert store.already_sent(db_conn, booking_id)
    assert email_sent_events(db_conn, booking_id) == []
    (queued,) = queued_email_sent_events(db_conn, booking_id)
    assert (queued["queue"], queued["actor"]) == (AUDIT.queue, AUDIT.actor)
    assert queued["message_id"] == outbox.booking_event_id(booking_id, store.EVENT_KIND)
    assert queued["payload"]["details"] == {"message_id": mid}


def test_record_sent_is_atomic(db_conn, make_booking) -> None:
    booking_id = make_booking()["id"]
    with pytest.raises(RuntimeError), db_conn.transaction():
        store.record_sent(db_conn, booking_id, "<m@x>", "ada@example.test")
        raise RuntimeError("crash before commit")
    assert not store.already_sent(db_conn, booking_id)
    assert email_sent_events(db_conn, booking_id) == []
    assert queued_email_sent_events(db_conn, booking_id) == []


def test_event_ids_differ_per_booking() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    event_id = outbox.booking_event_id
    assert event_id(a, store.EVENT_KIND) == event_id(a, store.EVENT_KIND) != event_id(b, store.EVENT_KIND)
