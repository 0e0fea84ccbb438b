"""The fair relay's tests share these: a clean outbox and scheduler state, and bookings made in bulk."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from booking_core import db
from booking_core.model import bookings
from booking_core.model.bookings import NewBooking


@pytest.fixture
def fair_start(db_conn):
    """Other tests leave rows in the shared outbox and scheduler state; this test's relay starts afresh,
    and leaves none of its own for a later test's relay (a platform on the shared database) to publish."""

    def clear() -> None:
        db_conn.execute("DELETE FROM outbox")
        db_conn.execute("DELETE FROM fair_share_tags")
        db_conn.execute("DELETE FROM fair_share_clocks")
    clear()
    yield
    clear()


@pytest.fixture
def make_bookings():
    """make_bookings(database_url, tenant_id, n): n committed bookings (3 outbox rows each)."""

    def make(database_url: str, tenant_id: str, n: int) -> None:
        with db.connect(database_url) as conn:
            for _ in range(n):
                bookings.create(conn, tenant_id=tenant_id, actor="test", booking=NewBooking(
                    "Fair Test", "fair@example.com", "Room", date(2027, 1, 1), date(2027, 1, 2),
                    Decimal("10.00"), "EUR"))
            conn.commit()

    return make
