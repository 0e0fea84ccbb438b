"""The lock order (docs/lock-order.md) on real Postgres: transactions that meet on one booking never deadlock.

Each test makes the worst interleaving happen on purpose instead of hoping a
load test finds it: a third connection holds the lock where the two
transactions meet, the first transaction is started and seen waiting (in
`pg_stat_activity`), then the second, then the lock is released.  Before the
lock order, these exact interleavings ended in "deadlock detected" (issue 18:
28 in a 10-minute run at 2 bookings/s).
"""

from __future__ import annotations

import importlib
import sys
import threading
import uuid
from collections.abc import Callable

import psycopg
import pytest

from booking_core import db
from booking_core.audit import chain
from booking_core.messaging.contracts import AUDIT, CONTRACTS, EMAIL, INVOICE
from booking_core.tasks import deadletters, taskretry
from e2e_helpers import wait_until
from relay_helpers import booking_without_relay

#: The booking events numbering lock (migration 0004): the trigger on booking_tasks takes it.
EVENTS_LOCK = "SELECT pg_advisory_xact_lock(1702260340, hashtext(%s))"


@pytest.fixture(scope="module")
def audit_actor(database_url, redis_url):
    """The audit worker's actor, imported as `dramatiq` would import it, with this module's environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        mp.setenv("REDIS_URL", redis_url)
        mp.setenv("BOOKING_REDIS_NAMESPACE", f"lock-order-{uuid.uuid4().hex[:8]}")
        for name in ("audit_worker.actors", "audit_worker.broker"):
            sys.modules.pop(name, None)
        module = importlib.import_module("audit_worker.actors")
    yield module.record_audit_event
    module.broker.flush_all()


def lock_waiters(conn: psycopg.Connection) -> int:
    """How many other backends of this database wait for a heavyweight lock (advisory, row, ...)."""
    return conn.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchone()["n"]


class Running:
    """A transaction run on a thread of its own; `error` is what it raised, if anything."""

    def __init__(self, name: str, work: Callable[[], object]):
        self.name, self.work, self.error, self.result = name, work, None, None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as e:  # reported by the test, whatever it is
            self.error = e

    def start(self) -> Running:
        self.thread.start()
        return self

    def done(self) -> bool:
        return not self.thread.is_alive()


def interleave(database_url: str, hold: tuple[str, tuple], first: Callable, second: Callable,
               *, second_may_finish: bool = False) -> tuple[Running, Running]:
    """Run `first`, then `second`, while another transaction holds `hold`; then release it.

    Each is started only once the one before it waits for a lock (or, with
    `second_may_finish`, has finished without waiting), so the interleaving is
    the same on every run.
    """
    with db.connect(database_url, autocommit=True) as watch, db.connect(database_url) as holder:
        assert lock_waiters(watch) == 0, "another backend already waits for a lock"
        holder.execute(*hold)
        a = Running("first", first).start()
        wait_until(lambda: lock_waiters(watch) >= 1 or a.done(), timeout=30, what="the first transaction to wait")
        assert not a.done(), f"the first transaction did not wait for the held lock: {a.error!r}"
        b = Running("second", second).start()
        wait_until(lambda: lock_waiters(watch) >= 2 or b.done(), timeout=30, what="the second transaction to wait")
        assert second_may_finish or not b.done(), f"the second transaction did not wait: {b.error!r}"
        holder.rollback()
        for r in (a, b):
            r.thread.join(timeout=60)
            assert r.done(), f"the {r.name} transaction is still blocked"
    return a, b


def no_errors(*runs: Running) -> None:
    errors = {r.name: r.error for r in runs if r.error is not None}
    assert not errors, f"transactions failed: {errors!r}"


def task_states(conn, booking_id: str) -> dict[str, str]:
    rows = conn.execute("SELECT task, state FROM booking_tasks WHERE booking_id = %s", (booking_id,)).fetchall()
    return {r["task"]: r["state"] for r in rows}


def chain_kinds(conn, booking_id: str) -> list[str]:
    rows = conn.execute("SELECT kind FROM audit_log WHERE booking_id = %s ORDER BY seq", (booking_id,)).fetchall()
    return sorted(r["kind"] for r in rows)


def queued_audit_events(conn, booking_id: str) -> list[str]:
    rows = conn.execute("SELECT payload->>'kind' AS kind FROM outbox WHERE queue = %s"
                        " AND payload->>'booking_id' = %s", (AUDIT.queue, booking_id)).fetchall()
    return [r["kind"] for r in rows]


def test_an_email_recorded_while_its_booking_is_audited_does_not_deadlock(database_url, db_conn, tenant,
                                                                         audit_actor):
    from email_worker import store

    # Given a booking whose email is sent and whose booking.created event is due
    booking_id, messages = booking_without_relay(db_conn, tenant["id"])
    created = messages[AUDIT.queue]["payload"]

    def record_email():
        with db.connect(database_url, autocommit=True) as conn:
            return store.record_sent(conn, booking_id, f"<{booking_id}@test>", "ada@example.com")

    # When the email worker records the send, then the audit worker records the
    # booking, while the booking's events are being numbered by a third transaction
    a, b = interleave(database_url, (EVENTS_LOCK, (booking_id,)), record_email,
                      lambda: audit_actor.fn(**created))

    # Then both commit, and both events are in the chain (none handed to the outbox)
    no_errors(a, b)
    assert a.result is True
    assert task_states(db_conn, booking_id)[EMAIL.task] == "done"
    assert task_states(db_conn, booking_id)[AUDIT.task] == "done"
    assert chain_kinds(db_conn, booking_id) == ["booking.created", "email.sent"]
    assert queued_audit_events(db_conn, booking_id) == []
    assert all(r.ok for r in chain.verify(db_conn, tenant["id"]))


def test_an_invoice_stored_while_its_booking_is_audited_does_not_deadlock(database_url, db_conn, tenant,
                                                                         audit_actor):
    from invoice_worker import render, store

    # Given a booking with its invoice numbered and rendered, and its booking.created event due
    booking_id, messages = booking_without_relay(db_conn, tenant["id"])
    created = messages[AUDIT.queue]["payload"]
    store.allocate_number(db_conn, booking_id)
    pdf = render.render_pdf(render.invoice_html(store.load_invoice_data(db_conn, booking_id)))

    def store_invoice():
        with db.connect(database_url, autocommit=True) as conn:
            return store.save_pdf(conn, booking_id, pdf)

    # When the invoice worker stores the PDF, then the audit worker records the booking
    a, b = interleave(database_url, (EVENTS_LOCK, (booking_id,)), store_invoice,
                      lambda: audit_actor.fn(**created))

    # Then both commit, with both events in the chain
    no_errors(a, b)
    assert a.result is True
    assert task_states(db_conn, booking_id)[INVOICE.task] == "done"
    assert task_states(db_conn, booking_id)[AUDIT.task] == "done"
    assert chain_kinds(db_conn, booking_id) == ["booking.created", "invoice.issued"]
    assert queued_audit_events(db_conn, booking_id) == []


def task_message(tenant_id: str, booking_id: str, task: str):
    """A Dramatiq message of the booking's `task`."""
    import dramatiq

    contract = CONTRACTS[task]
    return dramatiq.Message(queue_name=contract.queue, actor_name=contract.actor, args=(),
                            kwargs={"task": task, "booking_id": booking_id, "tenant_id": tenant_id}, options={})


def dead_task(conn, tenant_id: str, booking_id: str, task: str, message=None) -> deadletters.DeadLetter:
    """Make `task` of the booking dead with an open dead letter, as the task-state middleware would."""
    message = message or task_message(tenant_id, booking_id, task)
    with conn.transaction():
        deadletters.record(conn, message, error="boom", attempts=3)
        conn.execute("UPDATE booking_tasks SET state = 'dead', last_error = 'boom'"
                     " WHERE booking_id = %s AND task = %s", (booking_id, task))
    return deadletters.find_for_task(conn, booking_id, task)


def test_a_task_retried_while_a_bulk_requeue_runs_does_not_deadlock(database_url, db_conn, tenant):
    # Given a dead email task with its open dead letter
    booking_id, _ = booking_without_relay(db_conn, tenant["id"])
    letter = dead_task(db_conn, tenant["id"], booking_id, EMAIL.task)
    task_row = ("SELECT 1 FROM booking_tasks WHERE booking_id = %s AND task = %s FOR UPDATE",
                (booking_id, EMAIL.task))

    def retry():
        with db.connect(database_url, autocommit=True) as conn:
            return taskretry.retry_task(conn, None, "ns", booking_id, EMAIL.task, actor="op:one")

    def bulk():
        with db.connect(database_url, autocommit=True) as conn:
            return list(deadletters.apply_all(conn, None, "ns", deadletters.Filter(booking_id=booking_id),
                                              "requeue", actor="op:bulk"))

    # When an operator retries the task and another requeues "all that match" at the same time
    a, b = interleave(database_url, task_row, retry, bulk, second_may_finish=True)

    # Then neither deadlocks: one of them requeued the letter, the other found nothing left to do
    deadlocks = [r.name for r in (a, b) if isinstance(r.error, psycopg.errors.DeadlockDetected)]
    assert deadlocks == []
    no_errors(b)
    assert a.error is None or isinstance(a.error, taskretry.TaskNotDead)
    requeued_by = db_conn.execute("SELECT resolved_by FROM dead_letters WHERE id = %s", (letter.id,)).fetchone()
    assert requeued_by["resolved_by"] in ("op:one", "op:bulk")
    assert task_states(db_conn, booking_id)[EMAIL.task] == "pending"
    assert len([k for k in queued_audit_events(db_conn, booking_id) if k == "deadletter.requeued"]) == 1


def test_bulk_actions_on_letters_of_the_same_bookings_do_not_deadlock(database_url, db_conn, tenant):
    # Given two bookings with a dead email and a dead invoice each, the letters dead in an order that
    # has the email queue's bulk action meet the bookings as (1, 2) and the invoice queue's as (2, 1)
    one, _ = booking_without_relay(db_conn, tenant["id"])
    two, _ = booking_without_relay(db_conn, tenant["id"])
    for booking_id, task in ((one, EMAIL.task), (two, INVOICE.task), (two, EMAIL.task), (one, INVOICE.task)):
        dead_task(db_conn, tenant["id"], booking_id, task)

    def bulk(queue: str):
        def run():
            with db.connect(database_url, autocommit=True) as conn:
                f = deadletters.Filter(queue=queue, tenant_id=tenant["id"])
                return [d.booking_id for d in deadletters.apply_all(conn, None, "ns", f, "requeue",
                                                                    actor=f"op:{queue}")]
        return run

    # When both bulk requeues run at once, the invoice queue's first, while booking two's events are numbered
    a, b = interleave(database_url, (EVENTS_LOCK, (two,)), bulk(INVOICE.queue), bulk(EMAIL.queue))

    # Then both finish, every letter requeued once
    no_errors(a, b)
    assert sorted(a.result) == sorted([one, two]) and sorted(b.result) == sorted([one, two])
    for booking_id in (one, two):
        assert task_states(db_conn, booking_id)[EMAIL.task] == "pending"
        assert task_states(db_conn, booking_id)[INVOICE.task] == "pending"


def test_a_bulk_action_on_two_tasks_of_a_booking_does_not_deadlock_with_a_state_write(database_url, db_conn,
                                                                                     tenant):
    import dramatiq

    from booking_core.tasks.taskstate import TaskStateMiddleware

    # Given a booking whose email and invoice tasks are both dead
    booking_id, messages = booking_without_relay(db_conn, tenant["id"])
    for task in (EMAIL.task, INVOICE.task):
        dead_task(db_conn, tenant["id"], booking_id, task)
    invoice = dramatiq.Message(queue_name=INVOICE.queue, actor_name=INVOICE.actor, args=(),
                               kwargs=messages[INVOICE.queue]["payload"], options={})
    middleware = TaskStateMiddleware(database_url=database_url)

    def bulk():
        with db.connect(database_url, autocommit=True) as conn:
            f = deadletters.Filter(booking_id=booking_id)
            return len(list(deadletters.apply_all(conn, None, "ns", f, "requeue", actor="op:bulk")))

    # When the bulk requeue runs, and then a late delivery of the invoice message writes `running`,
    # while the booking's events are being numbered
    a, b = interleave(database_url, (EVENTS_LOCK, (booking_id,)), bulk,
                      lambda: middleware.before_process_message(None, invoice))

    # Then both land: the bulk requeued both letters, and the late delivery's `running` was written after it
    # (the middleware logs and drops a `running` write that fails, so its outcome is read from the row)
    no_errors(a, b)
    assert a.result == 2
    assert task_states(db_conn, booking_id) == {EMAIL.task: "pending", INVOICE.task: "running",
                                                AUDIT.task: "pending"}


def test_a_dead_write_while_a_bulk_requeue_claims_its_letter_does_not_deadlock(database_url, db_conn, tenant):
    from dramatiq.broker import MessageProxy

    from booking_core.messaging.errors import PermanentTaskError
    from booking_core.tasks.taskstate import TaskStateMiddleware

    # Given a dead email task whose letter is open, and a late copy of its message failing for good
    booking_id, _ = booking_without_relay(db_conn, tenant["id"])
    message = task_message(tenant["id"], booking_id, EMAIL.task)
    letter = dead_task(db_conn, tenant["id"], booking_id, EMAIL.task, message)
    late = MessageProxy(message)
    late.fail()
    middleware = TaskStateMiddleware(database_url=database_url, write_attempts=1)
    task_row = ("SELECT 1 FROM booking_tasks WHERE booking_id = %s AND task = %s FOR UPDATE",
                (booking_id, EMAIL.task))

    def bulk():
        with db.connect(database_url, autocommit=True) as conn:
            f = deadletters.Filter(booking_id=booking_id)
            return len(list(deadletters.apply_all(conn, None, "ns", f, "requeue", actor="op:bulk")))

    # When the middleware writes the late copy `dead`, and a bulk requeue of the booking's letters starts
    a, b = interleave(database_url, task_row,
                      lambda: middleware.after_process_message(None, late, exception=PermanentTaskError("late")),
                      bulk, second_may_finish=True)

    # Then neither deadlocks: the dead write landed (its record and its state), whatever the bulk did
    no_errors(a, b)
    row = db_conn.execute("SELECT resolved_at, error FROM dead_letters WHERE id = %s", (letter.id,)).fetchone()
    state = task_states(db_conn, booking_id)[EMAIL.task]
    assert (state, row["resolved_at"], row["error"]) == ("dead", None, "PermanentTaskError: late") or (
        b.result == 1 and state == "pending" and row["resolved_at"] is not None)


def test_the_reconciler_recording_a_lost_dead_write_does_not_deadlock_with_a_bulk_requeue(database_url, db_conn,
                                                                                         tenant):
    from outbox_relay import reconcile

    # Given a stale `running` email task whose message is a Redis dead letter, with an open record of it
    booking_id, _ = booking_without_relay(db_conn, tenant["id"])
    message = task_message(tenant["id"], booking_id, EMAIL.task)
    letter = dead_task(db_conn, tenant["id"], booking_id, EMAIL.task, message)
    db_conn.execute("UPDATE booking_tasks SET state = 'running', updated_at = now() - interval '1 hour'"
                    " WHERE booking_id = %s AND task = %s", (booking_id, EMAIL.task))
    stale = {"booking_id": booking_id, "task": EMAIL.task, "state": "running"}
    task_row = ("SELECT 1 FROM booking_tasks WHERE booking_id = %s AND task = %s FOR UPDATE",
                (booking_id, EMAIL.task))

    def record_dead():
        with db.connect(database_url, autocommit=True) as conn:
            return reconcile._record_dead(conn, stale, message.encode(), 60)

    def bulk():
        with db.connect(database_url, autocommit=True) as conn:
            f = deadletters.Filter(booking_id=booking_id)
            return len(list(deadletters.apply_all(conn, None, "ns", f, "requeue", actor="op:bulk")))

    # When the reconciler records the task dead, and a bulk requeue of the booking's letters starts
    a, b = interleave(database_url, task_row, record_dead, bulk, second_may_finish=True)

    # Then neither deadlocks, and the reconciler's write landed
    no_errors(a, b)
    assert a.result is True
    assert task_states(db_conn, booking_id)[EMAIL.task] == "dead"
    row = db_conn.execute("SELECT resolved_at FROM dead_letters WHERE id = %s", (letter.id,)).fetchone()
    assert row["resolved_at"] is None
