"""Invoice rows on a real Postgres: gapless numbers, one per booking, first PDF wins."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from booking_core import db
from booking_core.messaging import outbox
from booking_core.messaging.errors import UnknownBooking
from booking_core.model import tenants
from invoice_worker import store


def counter(conn, tenant_id: str) -> int | None:
    row = conn.execute(
        "SELECT value FROM tenant_counters WHERE tenant_id = %s AND name = 'invoice'", (tenant_id,)
    ).fetchone()
    return None if row is None else row["value"]


def issued_events(conn, booking_id: str) -> list[dict]:
    """The booking's invoice.issued entries in the audit chain (appended with the PDF)."""
    return conn.execute(
        "SELECT event_id::text, tenant_id::text, booking_id::text, actor, details FROM audit_log"
        " WHERE kind = 'invoice.issued' AND booking_id = %s",
        (booking_id,),
    ).fetchall()


def test_allocating_twice_returns_the_same_number(db_conn, tenant, make_booking):
    booking = make_booking(tenant["id"])
    assert store.allocate_number(db_conn, booking) == ("INV-000001", False)
    assert store.allocate_number(db_conn, booking, tenant_id=tenant["id"]) == ("INV-000001", False)
    assert counter(db_conn, tenant["id"]) == 1
    row = db_conn.execute("SELECT number, pdf, tenant_id::text FROM invoices WHERE booking_id = %s",
                          (booking,)).fetchone()
    assert row == {"number": "INV-000001", "pdf": None, "tenant_id": tenant["id"]}


def test_numbers_are_gapless_per_tenant(db_conn, tenant, make_booking):
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    first, second = make_booking(tenant["id"]), make_booking(tenant["id"])
    elsewhere = make_booking(other["id"])
    assert store.allocate_number(db_conn, first)[0] == "INV-000001"
    assert store.allocate_number(db_conn, second)[0] == "INV-000002"
    assert store.allocate_number(db_conn, elsewhere)[0] == "INV-000001"
    assert store.allocate_number(db_conn, first)[0] == "INV-000001"
    assert counter(db_conn, tenant["id"]) == 2 and counter(db_conn, other["id"]) == 1


def test_a_rolled_back_allocation_leaves_no_gap(db_conn, tenant, make_booking):
    booking = make_booking(tenant["id"])
    with db_conn.transaction(force_rollback=True):
        assert store.allocate_number(db_conn, booking)[0] == "INV-000001"
    assert counter(db_conn, tenant["id"]) is None
    assert store.allocate_number(db_conn, make_booking(tenant["id"]))[0] == "INV-000001"


def test_unknown_malformed_or_foreign_bookings_are_permanent_errors(db_conn, tenant, make_booking):
    with pytest.raises(UnknownBooking):
        store.allocate_number(db_conn, str(uuid.uuid4()))
    with pytest.raises(UnknownBooking):
        store.allocate_number(db_conn, "not-a-uuid")
    booking = make_booking(tenant["id"])
    with pytest.raises(UnknownBooking):
        store.allocate_number(db_conn, booking, tenant_id=str(uuid.uuid4()))
    with pytest.raises(UnknownBooking):
        store.allocate_number(db_conn, booking, tenant_id="nope")
    assert counter(db_conn, tenant["id"]) is None
    assert store.load_invoice_data(db_conn, str(uuid.uuid4())) is None


def _race(database_url: str, booking_ids: list[str], per_booking: int) -> list[str]:
    """Allocate from one thread (own connection) per (booking, repeat), all released at once."""
    jobs = [b for b in booking_ids for _ in range(per_booking)]
    barrier = threading.Barrier(len(jobs))
    results: list[str] = []
    errors: list[BaseException] = []

    def run(booking_id: str) -> None:
        try:
            with db.connect(database_url, autocommit=True) as conn:
                barrier.wait(timeout=30)
                results.append(store.allocate_number(conn, booking_id)[0])
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(results) == len(jobs)
    return results


def test_concurrent_allocations_for_one_booking_yield_one_number(
    database_url, db_conn, tenant, make_booking
):
    booking = make_booking(tenant["id"])
    assert set(_race(database_url, [booking], per_booking=8)) == {"INV-000001"}
    assert counter(db_conn, tenant["id"]) == 1
    count = db_conn.execute("SELECT count(*) AS n FROM invoices WHERE booking_id = %s",
                            (booking,)).fetchone()["n"]
    assert count == 1


def test_concurrent_allocations_across_bookings_stay_gapless(
    database_url, db_conn, tenant, make_booking
):
    bookings = [make_booking(tenant["id"]) for _ in range(6)]
    numbers = _race(database_url, bookings, per_booking=2)
    assert sorted(set(numbers)) == [f"INV-{n:06d}" for n in range(1, 7)]
    assert counter(db_conn, tenant["id"]) == 6


def test_load_invoice_data_joins_booking_tenant_and_number(db_conn, tenant, make_booking):
    booking = make_booking(tenant["id"], customer_name="Grace Hopper")
    assert store.load_invoice_data(db_conn, booking) is None  # no number yet
    number, _ = store.allocate_number(db_conn, booking)
    data = store.load_invoice_data(db_conn, booking)
    assert data is not None
    assert (data.number, data.tenant_name, data.booking_id) == (number, tenant["name"], booking)
    assert (data.customer_name, data.customer_email) == ("Grace Hopper", "ada@example.com")
    assert data.nights == 3 and str(data.amount) == "389.70" and data.currency == "EUR"


def test_save_pdf_first_writer_wins_with_exactly_one_audit_event(db_conn, tenant, make_booking):
    booking = make_booking(tenant["id"])
    assert store.save_pdf(db_conn, booking, b"%PDF-none") is False  # no number yet: nothing
    number, _ = store.allocate_number(db_conn, booking)
    assert store.save_pdf(db_conn, booking, b"%PDF-first") is True
    assert store.save_pdf(db_conn, booking, b"%PDF-second") is False
    row = db_conn.execute("SELECT pdf, issued_at FROM invoices WHERE booking_id = %s",
                          (booking,)).fetchone()
    assert bytes(row["pdf"]) == b"%PDF-first" and row["issued_at"] is not None
    assert store.allocate_number(db_conn, booking) == (number, True)

    [event] = issued_events(db_conn, booking)
    event_id = outbox.booking_event_id(booking, store.ISSUED)
    assert event_id == str(uuid.uuid5(uuid.UUID(booking), "invoice.issued"))
    assert event == {"event_id": event_id, "tenant_id": tenant["id"], "booking_id": booking,
                     "actor": "invoice-worker", "details": {"invoice_number": number}}
    assert db_conn.execute("SELECT count(*) AS n FROM outbox WHERE message_id = %s",
                           (event_id,)).fetchone()["n"] == 0
    occurred = db_conn.execute("SELECT occurred_at FROM audit_log WHERE event_id = %s", (event_id,)).fetchone()
    assert occurred["occurred_at"] == row["issued_at"]


def test_save_pdf_in_a_failed_transaction_writes_neither_pdf_nor_event(
    db_conn, tenant, make_booking
):
    booking = make_booking(tenant["id"])
    store.allocate_number(db_conn, booking)
    with pytest.raises(psycopg.errors.DivisionByZero), db_conn.transaction():
        assert store.save_pdf(db_conn, booking, b"%PDF-lost") is True
        db_conn.execute("SELECT 1/0")
    assert issued_events(db_conn, booking) == []
    assert store.save_pdf(db_conn, booking, b"%PDF-kept") is True
    assert len(issued_events(db_conn, booking)) == 1
