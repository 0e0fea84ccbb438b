"""The fair relay's tests share these: a clean outbox and scheduler state, and bookings made in bulk."""

from __future__ import annotations

import pytest


@pytest.fixture
def fair_start(db_conn):
    """Other tests leave rows in the shared outbox and scheduler state; this test's relay starts afresh."""
    db_conn.execute("DELETE FROM outbox")
    db_conn.execute("DELETE FROM fair_share_tags")
    db_conn.execute("DELETE FROM fair_share_clocks")
