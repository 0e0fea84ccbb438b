"""Fixtures of the invoice worker's tests: bookings made the way the API makes them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pytest

from booking_core.model import bookings
from booking_core.model.bookings import NewBooking


@pytest.fixture
def make_booking(db_conn) -> Callable[..., str]:
    """Create a booking (with its tasks and outbox rows) for a tenant; return its id."""

    def make(tenant_id: str, **fields) -> str:
        values = {
            "customer_name": "Ada Lovelace",
            "customer_email": "ada@example.com",
            "item": "Sea-view double room",
            "check_in": date(2030, 5, 1),
            "check_out": date(2030, 5, 4),
            "amount": Decimal("389.70"),
            "currency": "EUR",
        } | fields
        with db_conn.transaction():
            made = bookings.create(db_conn, tenant_id=tenant_id, booking=NewBooking(**values),
                                   actor="test")
        return made["id"]

    return make
