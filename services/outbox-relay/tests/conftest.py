"""The fair relay's tests share this: a clean outbox and scheduler state (bookings in bulk: relay_helpers)."""

from __future__ import annotations

import pytest


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
