"""The `issue_invoice` actor on real Postgres and Redis: idempotent, and dead-letters at once."""

from __future__ import annotations

import importlib
import io
import json
import time
import uuid

import dramatiq
import pypdf
import pytest
import redis

from booking_core.messaging.errors import InvalidMessage, PermanentTaskError, UnknownBooking

#: The actors module binds its settings and broker at first import: one namespace per session.
NAMESPACE = f"test-invoice-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def actors(database_url, redis_url):
    """`invoice_worker.actors`, imported with the test servers in the environment."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_URL", database_url)
        env.setenv("REDIS_URL", redis_url)
        env.setenv("BOOKING_REDIS_NAMESPACE", NAMESPACE)
        return importlib.import_module("invoice_worker.actors")


def invoice_row(conn, booking_id: str) -> dict | None:
    return conn.execute("SELECT number, pdf, issued_at FROM invoices WHERE booking_id = %s",
                        (booking_id,)).fetchone()


def issued_event_count(conn, booking_id: str) -> int:
    return conn.execute(
        "SELECT count(*) AS n FROM audit_log WHERE kind = 'invoice.issued' AND booking_id = %s", (booking_id,),
    ).fetchone()["n"]


def task_row(conn, booking_id: str) -> dict:
    return conn.execute(
        "SELECT state, attempts, last_error FROM booking_tasks WHERE booking_id = %s"
        " AND task = 'invoice'", (booking_id,),
    ).fetchone()


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_actor_is_declared_by_the_contract(actors):
    actor = actors.issue_invoice
    assert (actor.actor_name, actor.queue_name) == ("issue_invoice", "invoice")
    assert actor.options["throws"] == (PermanentTaskError,)
    assert issubclass(UnknownBooking, PermanentTaskError)
    assert actor.options["max_retries"] == actors.settings.retry["invoice"].max_retries


def test_running_the_actor_twice_issues_one_invoice(actors, db_conn, tenant, make_booking):
    booking = make_booking(tenant["id"], customer_name="Katherine Johnson")
    kwargs = {"task": "invoice", "booking_id": booking, "tenant_id": tenant["id"]}
    actors.issue_invoice.fn(**kwargs)
    first = invoice_row(db_conn, booking)
    assert first["number"] == "INV-000001" and first["issued_at"] is not None
    reader = pypdf.PdfReader(io.BytesIO(bytes(first["pdf"])))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    assert "Katherine Johnson" in text and "INV-000001" in text

    actors.issue_invoice.fn(**kwargs)
    assert invoice_row(db_conn, booking) == first
    assert issued_event_count(db_conn, booking) == 1


def test_a_lost_render_is_redone_under_the_same_number(actors, db_conn, tenant, make_booking):
    """A crash after numbering (number committed, no PDF) is finished by the redelivery."""
    from invoice_worker import store

    booking = make_booking(tenant["id"])
    number, _ = store.allocate_number(db_conn, booking)
    actors.issue_invoice.fn(task="invoice", booking_id=booking, tenant_id=tenant["id"])
    row = invoice_row(db_conn, booking)
    assert row["number"] == number and row["pdf"] is not None
    assert issued_event_count(db_conn, booking) == 1


def test_unknown_or_foreign_bookings_and_wrong_tasks_are_permanent(
    actors, db_conn, tenant, make_booking
):
    with pytest.raises(UnknownBooking):
        actors.issue_invoice.fn(task="invoice", booking_id=str(uuid.uuid4()),
                                tenant_id=tenant["id"])
    booking = make_booking(tenant["id"])
    with pytest.raises(UnknownBooking):
        actors.issue_invoice.fn(task="invoice", booking_id=booking, tenant_id=str(uuid.uuid4()))
    with pytest.raises(InvalidMessage, match="task 'email'"):
        actors.issue_invoice.fn(task="email", booking_id=booking, tenant_id=tenant["id"])
    with pytest.raises(InvalidMessage, match="tenant_id is not a UUID"):
        actors.issue_invoice.fn(task="invoice", booking_id=booking, tenant_id="1 OR 1=1")
    assert invoice_row(db_conn, booking) is None
    assert task_row(db_conn, booking)["state"] == "pending"


def test_the_stored_pdf_and_the_done_state_commit_together(actors, db_conn, tenant, make_booking):
    """The actor alone (no middleware) leaves the task done; a redelivery repairs a stranded one."""
    booking = make_booking(tenant["id"])
    kwargs = {"task": "invoice", "booking_id": booking, "tenant_id": tenant["id"]}
    actors.issue_invoice.fn(**kwargs)
    assert task_row(db_conn, booking) == {"state": "done", "attempts": 0, "last_error": None}
    db_conn.execute("UPDATE booking_tasks SET state = 'running' WHERE booking_id = %s"
                    " AND task = 'invoice'", (booking,))
    actors.issue_invoice.fn(**kwargs)
    assert task_row(db_conn, booking)["state"] == "done"
    assert issued_event_count(db_conn, booking) == 1


@pytest.fixture(scope="module")
def worker(actors):
    """A real Dramatiq worker consuming the `invoice` queue from Redis (one per module:
    a stopped worker's middleware stays on the broker)."""
    actors.broker.flush_all()
    running = dramatiq.Worker(actors.broker, queues={"invoice"}, worker_threads=2)
    running.start()
    yield running
    running.stop(timeout=10_000)
    actors.broker.flush_all()


def test_a_worker_issues_once_and_tracks_the_task(actors, worker, db_conn, tenant, make_booking):
    booking = make_booking(tenant["id"])
    kwargs = {"task": "invoice", "booking_id": booking, "tenant_id": tenant["id"]}
    actors.issue_invoice.send(**kwargs)
    actors.issue_invoice.send(**kwargs)  # an at-least-once duplicate
    wait_for(lambda: task_row(db_conn, booking)["state"] == "done")
    wait_for(lambda: task_row(db_conn, booking)["attempts"] >= 1)
    actors.broker.join("invoice", timeout=30_000)
    assert invoice_row(db_conn, booking)["pdf"] is not None
    assert issued_event_count(db_conn, booking) == 1
    assert task_row(db_conn, booking)["state"] == "done"


def test_a_worker_dead_letters_an_unknown_booking_without_retrying(actors, worker, redis_url):
    message = actors.issue_invoice.send(task="invoice", booking_id=str(uuid.uuid4()),
                                        tenant_id=str(uuid.uuid4()))
    client = redis.Redis.from_url(redis_url)

    def dead_letter() -> dict | None:
        for raw in client.hvals(f"{NAMESPACE}:invoice.XQ.msgs"):
            dead = json.loads(raw)
            if dead["message_id"] == message.message_id:
                return dead
        return None

    try:
        dead = wait_for(dead_letter)
    finally:
        client.close()
    assert "retries" not in dead["options"]  # Retries aborted it on the first failure
