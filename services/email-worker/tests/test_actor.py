"""The actor against real Postgres, SMTP and (for the worker tests) Redis with Dramatiq."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable

import dramatiq
import pytest
from aiosmtpd.controller import Controller

from booking_core.messaging.contracts import EMAIL
from booking_core.messaging.errors import InvalidMessage, PermanentTaskError, UnknownBooking
from booking_embedded import free_port
from email_worker.send import PermanentEmailError, TemporaryEmailError


def sends(conn, booking_id: str) -> list[dict]:
    return conn.execute(
        "SELECT message_id, recipient FROM email_sends WHERE booking_id = %s", (booking_id,)
    ).fetchall()


def events(conn, booking_id: str) -> list[dict]:
    """The booking's email.sent audit entries, wherever they are: in the chain or queued for the audit worker."""
    return conn.execute(
        "SELECT event_id::text, actor, details FROM audit_log WHERE booking_id = %s AND kind = 'email.sent'"
        " UNION ALL SELECT message_id::text, payload->>'actor', payload->'details' FROM outbox"
        " WHERE payload->>'booking_id' = %s AND payload->>'kind' = 'email.sent'",
        (booking_id, booking_id),
    ).fetchall()


def task_row(conn, booking_id: str) -> dict:
    return conn.execute(
        "SELECT state, attempts, last_error FROM booking_tasks WHERE booking_id = %s AND task = %s",
        (booking_id, EMAIL.task),
    ).fetchone()


def kwargs(booking: dict) -> dict:
    return {"task": EMAIL.task, "booking_id": booking["id"], "tenant_id": booking["tenant_id"]}


def test_actor_declaration(load_actors, smtp_sink) -> None:
    actors = load_actors(smtp_sink.url, max_retries=7)
    actor = actors.send_confirmation_email
    assert (actor.actor_name, actor.queue_name) == (EMAIL.actor, EMAIL.queue)
    assert actor.options["throws"] == (PermanentTaskError,)
    assert issubclass(PermanentEmailError, PermanentTaskError)
    assert (actor.options["max_retries"], actor.options["min_backoff"],
            actor.options["max_backoff"]) == (7, 50, 200)
    assert actor.broker is dramatiq.get_broker()


def test_twice_sends_once_and_records_once(load_actors, smtp_sink, make_booking, db_conn) -> None:
    actors = load_actors(smtp_sink.url)
    booking = make_booking(customer_name="Ada\r\nBcc: x@evil.test")
    actors.send_confirmation_email.fn(**kwargs(booking))
    actors.send_confirmation_email.fn(**kwargs(booking))

    (mail,) = smtp_sink.messages()
    mid = f"<booking-{booking['id']}@example.test>"
    assert mail["Message-ID"] == mid
    assert [a.addr_spec for a in mail["To"].addresses] == ["ada@example.test"]
    assert mail["Bcc"] is None
    assert sends(db_conn, booking["id"]) == [{"message_id": mid, "recipient": "ada@example.test"}]
    (event,) = events(db_conn, booking["id"])
    assert event["details"] == {"message_id": mid}
    assert event["actor"] == "email-worker"


def test_concurrent_duplicates_send_once(load_actors, make_booking, db_conn) -> None:
    """Two deliveries at once: the second waits for the first and then finds it recorded."""

    class Slow:
        def __init__(self) -> None:
            self.count = 0

        async def handle_DATA(self, server, session, envelope):
            self.count += 1
            await asyncio.sleep(1.0)  # widen the window between "not sent yet" and the record
            return "250 OK"

    handler = Slow()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        actors = load_actors(f"smtp://127.0.0.1:{controller.port}?timeout=10")
        booking = make_booking()
        errors: list[BaseException] = []

        def deliver() -> None:
            try:
                actors.send_confirmation_email.fn(**kwargs(booking))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        controller.stop()
    assert errors == []
    assert handler.count == 1
    assert len(sends(db_conn, booking["id"])) == 1
    assert len(events(db_conn, booking["id"])) == 1


@pytest.mark.parametrize(
    ("change", "error", "problem"),
    [
        (lambda k: k | {"booking_id": str(uuid.uuid4())}, UnknownBooking, "not found"),
        (lambda k: k | {"tenant_id": str(uuid.uuid4())}, UnknownBooking, "not found"),
        (lambda k: k | {"booking_id": "42"}, InvalidMessage, "booking_id is not a UUID: '42'"),
        (lambda k: k | {"tenant_id": "x"}, InvalidMessage, "tenant_id is not a UUID: 'x'"),
        (lambda k: k | {"task": "invoice"}, InvalidMessage, "task 'invoice'"),
    ],
)
def test_bad_messages_are_permanent(
    load_actors, smtp_sink, make_booking, db_conn, change, error, problem
) -> None:
    actors = load_actors(smtp_sink.url)
    booking = make_booking()
    with pytest.raises(error, match=problem):
        actors.send_confirmation_email.fn(**change(kwargs(booking)))
    assert smtp_sink.messages() == []
    assert task_row(db_conn, booking["id"])["state"] == "pending"


def test_the_send_record_and_the_done_state_commit_together(
    load_actors, smtp_sink, make_booking, db_conn
) -> None:
    """The actor alone (no middleware) leaves the task done: the state is part of its work."""
    actors = load_actors(smtp_sink.url)
    booking = make_booking()
    actors.send_confirmation_email.fn(**kwargs(booking))
    assert task_row(db_conn, booking["id"]) == {"state": "done", "attempts": 0, "last_error": None}
    assert len(sends(db_conn, booking["id"])) == 1


def test_a_redelivery_repairs_a_stranded_task(load_actors, smtp_sink, make_booking, db_conn) -> None:
    """A task left `running` after its email was recorded (the old failure) is finished
    by the next delivery, which sends nothing."""
    actors = load_actors(smtp_sink.url)
    booking = make_booking()
    actors.send_confirmation_email.fn(**kwargs(booking))
    db_conn.execute("UPDATE booking_tasks SET state = 'running' WHERE booking_id = %s"
                    " AND task = 'email'", (booking["id"],))
    actors.send_confirmation_email.fn(**kwargs(booking))
    assert task_row(db_conn, booking["id"])["state"] == "done"
    assert len(smtp_sink.messages()) == 1


def test_unaddressable_customer_is_permanent(load_actors, smtp_sink, make_booking, db_conn) -> None:
    actors = load_actors(smtp_sink.url)
    booking = make_booking(customer_email="not an address")
    with pytest.raises(PermanentEmailError, match="cannot address"):
        actors.send_confirmation_email.fn(**kwargs(booking))
    assert sends(db_conn, booking["id"]) == []


def test_rejected_recipient_is_permanent_and_not_recorded(
    load_actors, rejecting_sink, make_booking, db_conn
) -> None:
    actors = load_actors(rejecting_sink.url)
    booking = make_booking(customer_email="nobody@reject.test")
    with pytest.raises(PermanentEmailError, match="550"):
        actors.send_confirmation_email.fn(**kwargs(booking))
    assert sends(db_conn, booking["id"]) == [] and events(db_conn, booking["id"]) == []


def test_outage_is_temporary_then_a_retry_sends(
    load_actors, closed_smtp_url, smtp_sink, make_booking, db_conn
) -> None:
    booking = make_booking()
    with pytest.raises(TemporaryEmailError):
        load_actors(closed_smtp_url).send_confirmation_email.fn(**kwargs(booking))
    assert sends(db_conn, booking["id"]) == []
    load_actors(smtp_sink.url).send_confirmation_email.fn(**kwargs(booking))
    assert len(smtp_sink.messages()) == 1
    assert len(sends(db_conn, booking["id"])) == 1


# --- a real Dramatiq worker on the real Redis broker -------------------------------------


def dead_letters(actors) -> int:
    return actors.broker.client.zcard(f"{actors.settings.redis_namespace}:{EMAIL.queue}.XQ")


def run_worker(
    actors, booking: dict, *, until: Callable[[dict], bool], timeout: float = 30
) -> dict:
    """Enqueue the booking's email message; run a worker until `until(task row)` holds."""
    from booking_core import db

    worker = dramatiq.Worker(actors.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        actors.send_confirmation_email.send(**kwargs(booking))
        deadline = time.monotonic() + timeout
        with db.connect(actors.settings.database_url, autocommit=True) as conn:
            while True:
                row = task_row(conn, booking["id"])
                if until(row) or time.monotonic() > deadline:
                    return row
                time.sleep(0.05)
    finally:
        worker.stop()


def test_worker_marks_the_task_done(load_actors, smtp_sink, make_booking) -> None:
    actors = load_actors(smtp_sink.url)
    booking = make_booking()
    row = run_worker(actors, booking, until=lambda row: row["state"] in ("done", "dead"))
    assert row == {"state": "done", "attempts": 1, "last_error": None}
    assert len(smtp_sink.messages()) == 1


def test_worker_dead_letters_a_permanent_failure_at_once(
    load_actors, rejecting_sink, make_booking
) -> None:
    actors = load_actors(rejecting_sink.url, max_retries=5)
    booking = make_booking(customer_email="nobody@reject.test")
    row = run_worker(actors, booking, until=lambda row: dead_letters(actors) > 0)
    assert dead_letters(actors) == 1
    time.sleep(0.5)  # had it been retried (min backoff 50 ms), the second attempt shows now
    row = task_row_now(actors, booking)
    assert row["attempts"] == 1
    assert row["last_error"].startswith("PermanentEmailError: recipient refused: 550")


def test_worker_retries_a_temporary_failure_then_dead_letters(
    load_actors, closed_smtp_url, make_booking
) -> None:
    # Under the fair order a retry waits out its backoff in the outbox until a relay publishes it
    # (booking_core/worker/delays.py: libs/booking-core/tests/test_delays.py sees a retry land
    # there, and the dead-letter e2e tests run the whole platform in the fair order); here no
    # relay runs, so this worker's retries take Dramatiq's own delayed queue.
    actors = load_actors(closed_smtp_url, max_retries=2, relay_order="fifo")
    booking = make_booking()
    row = run_worker(actors, booking, until=lambda row: dead_letters(actors) > 0)
    assert dead_letters(actors) == 1
    assert row["attempts"] == 3
    assert row["last_error"].startswith("TemporaryEmailError: cannot open an SMTP session")


def test_dead_lettered_task_reads_dead(load_actors, rejecting_sink, make_booking) -> None:
    actors = load_actors(rejecting_sink.url, max_retries=5)
    booking = make_booking(customer_email="nobody@reject.test")
    run_worker(actors, booking, until=lambda row: dead_letters(actors) > 0)
    # The task row is written before the worker nacks the message into the dead-letter set.
    assert task_row_now(actors, booking)["state"] == "dead"


def task_row_now(actors, booking: dict) -> dict:
    from booking_core import db

    with db.connect(actors.settings.database_url, autocommit=True) as conn:
        return task_row(conn, booking["id"])
