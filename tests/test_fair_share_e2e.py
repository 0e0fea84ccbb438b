"""Fair share on the real platform (`bookingctl up`, two relays): a quiet tenant's booking is not stuck
behind another tenant's import, a paused platform keeps the order fair on resume, and the local
autoscaler sees a backlog held in the outbox.

Order, not wall time: each task's `done` write is stamped (`booking_tasks.updated_at`), so "how many
of the import's tasks finished while the quiet booking's waited" is a position, the same on a slow
machine.  Under the FIFO order it is the rest of the import; under the fair order it is at most what
was already in Redis or in the workers' hands when the quiet booking arrived.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from booking_core.model import bookings, tenants
from booking_core.model.bookings import NewBooking
from booking_embedded import free_port
from bookingctl import services
from e2e_helpers import Api, bookingctl, wait_until

pytestmark = pytest.mark.e2e

IMPORT = 1000
QUEUES = ("email", "invoice", "audit")
#: Tasks of the import that may finish before the quiet tenant's: each queue's publish-ahead
#: (BOOKING_RELAY_AHEAD, 16) and the messages the workers hold (4 threads, one each), with room to spare.
AHEAD_BOUND = 60
#: The FIFO contrast's import: the fair order would leave more than AHEAD_BOUND of it undone when the
#: quiet booking is (at least 150 - 60), so the FIFO assertion tells the two orders apart, with 2x
#: fewer tasks to drain than the 300 it was.
FIFO_IMPORT = 150
assert FIFO_IMPORT - AHEAD_BOUND > AHEAD_BOUND
#: The relays' batch here (rows claimed per transaction).  Two FIFO relays claim consecutive
#: batches (SKIP LOCKED), so the batch holding the quiet booking's rows can reach Redis while an
#: earlier one is still being published: FIFO across relays is by batch.  At the default 200 rows
#: (67 bookings) the quiet invoice once passed 65 of the import's; 30 rows bound that to 10.  The
#: fair order publishes at most BOOKING_RELAY_AHEAD (16) per queue at a time, below either.
RELAY_BATCH = 30


@pytest.fixture
def start_platform(new_platform):
    """`new_platform`, started, and patient: what these tests assert is an order, not a speed."""
    started = []

    def start(env: dict | None = None):
        platform = new_platform(f"fair-share-{len(started)}", env)
        platform._wait_ready = functools.partial(platform._wait_ready, timeout=600)
        started.append(platform)
        platform.start()
        return platform

    yield start
    for platform in started:
        platform.stop()


def connect(platform) -> psycopg.Connection:
    return psycopg.connect(platform.urls["DATABASE_URL"], row_factory=dict_row, autocommit=True)


def import_bookings(platform, tenant_id: str, n: int) -> None:
    """A tenant's import: n bookings committed at once (3 outbox rows each)."""
    with psycopg.connect(platform.urls["DATABASE_URL"], row_factory=dict_row) as conn:
        for i in range(n):
            bookings.create(conn, tenant_id=tenant_id, actor="import", booking=NewBooking(
                f"Guest {i}", f"guest{i}@import.example", "Room", date(2027, 3, 1), date(2027, 3, 2),
                Decimal("80.00"), "EUR"))
        conn.commit()


def done_while_waiting(conn, tenant_id: str, booking_id: str, task: str) -> int:
    """How many of `tenant_id`'s `task` tasks were done after this booking was made and before its own."""
    return conn.execute(
        "SELECT count(*) AS n FROM booking_tasks t JOIN bookings b ON b.id = t.booking_id"
        " WHERE b.tenant_id = %s AND t.task = %s AND t.state = 'done'"
        " AND t.updated_at > (SELECT created_at FROM bookings WHERE id = %s)"
        " AND t.updated_at < (SELECT updated_at FROM booking_tasks WHERE booking_id = %s AND task = %s)",
        (tenant_id, task, booking_id, booking_id, task)).fetchone()["n"]


def remaining(conn, tenant_id: str, task: str) -> int:
    return conn.execute(
        "SELECT count(*) AS n FROM booking_tasks t JOIN bookings b ON b.id = t.booking_id"
        " WHERE b.tenant_id = %s AND t.task = %s AND t.state <> 'done'", (tenant_id, task)).fetchone()["n"]


def second_relay(platform) -> None:
    """A second relay process on the same Postgres and Redis (the chart runs several)."""
    platform._spawn(dataclasses.replace(services.relay(free_port()), name="relay-2"))


def quiet_tenant(platform) -> tuple[str, Api]:
    with connect(platform) as conn:
        tenant = tenants.ensure_tenant(conn, f"quiet-{uuid.uuid4().hex[:6]}")
        token = tenants.create_token(conn, tenant["id"], label="quiet")["token"]
    return tenant["id"], Api(platform.api_url, token)


def noisy_tenant(platform) -> str:
    with connect(platform) as conn:
        return tenants.ensure_tenant(conn, f"noisy-{uuid.uuid4().hex[:6]}")["id"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("order", "size"), [("fair", IMPORT), ("fifo", FIFO_IMPORT)])
def test_a_quiet_booking_is_done_before_an_import_drains_with_two_relays(start_platform, order, size):
    platform = start_platform({"BOOKING_RELAY_ORDER": order, "BOOKING_RELAY_BATCH_SIZE": str(RELAY_BATCH)})
    second_relay(platform)
    noisy = noisy_tenant(platform)
    quiet, quiet_api = quiet_tenant(platform)
    # Given a tenant's import, then another tenant's one booking through the API
    import_bookings(platform, noisy, size)
    booking = quiet_api.book(name="Quiet Guest", email="quiet@hotel.example")
    if order == "fifo":
        # (the old order, for contrast: the quiet booking waits for the whole import, queue by queue.  Shown
        # on the audit queue, the fastest to drain: every queue is published by the same relay code, and
        # waiting for the invoices too cost a minute of the suite's time to show the same order.)
        quiet_api.wait_states(booking["id"], {"audit": "done"}, timeout=800)
        with connect(platform) as conn:
            left = remaining(conn, noisy, "audit")
        assert left <= AHEAD_BOUND, f"{left} of the import's audits left when the quiet booking's was done"
        return
    # When the quiet booking's email, invoice and audit are done
    quiet_api.wait_states(booking["id"], dict.fromkeys(QUEUES, "done"), timeout=800)
    with connect(platform) as conn:
        ahead = {task: done_while_waiting(conn, noisy, booking["id"], task) for task in QUEUES}
        left = {task: remaining(conn, noisy, task) for task in QUEUES}
    # Then only each queue's publish-ahead and the workers' hands went before it, and the import
    # was far from drained
    assert all(n <= AHEAD_BOUND for n in ahead.values()), ahead
    assert left["invoice"] > size / 2, left


@pytest.mark.timeout(900)
def test_a_paused_platform_holds_every_tenant_and_is_fair_after_resume(start_platform):
    platform = start_platform()
    noisy = noisy_tenant(platform)
    quiet, quiet_api = quiet_tenant(platform)
    for queue in QUEUES:
        assert bookingctl(platform, "queues", "pause", queue).returncode == 0
    for queue in QUEUES:
        log = platform.data_dir / "logs" / f"{queue}-worker-1.log"
        wait_until(lambda log=log, queue=queue: f"queue {queue} paused" in log.read_text(errors="replace"),
                   timeout=30, what=f"the {queue} worker to apply the pause")
    # Given an import and a quiet booking that arrive while every queue is paused
    import_bookings(platform, noisy, 300)
    booking = quiet_api.book(name="Paused Quiet", email="paused-quiet@hotel.example")
    # Then the import waits in the outbox, beyond each queue's publish-ahead
    with connect(platform) as conn:
        wait_until(lambda: conn.execute("SELECT count(*) AS n FROM outbox WHERE queue = 'email'")
                   .fetchone()["n"] >= 300 - 16, timeout=30, what="the outbox to hold the import")
    # When the queues resume, the quiet booking goes right after what was already in Redis
    for queue in QUEUES:
        assert bookingctl(platform, "queues", "resume", queue).returncode == 0
    quiet_api.wait_states(booking["id"], dict.fromkeys(QUEUES, "done"), timeout=600)
    with connect(platform) as conn:
        ahead = {task: done_while_waiting(conn, noisy, booking["id"], task) for task in QUEUES}
    assert all(n <= AHEAD_BOUND for n in ahead.values()), ahead
