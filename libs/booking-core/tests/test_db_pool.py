"""The shared pool against the real Postgres: liveness checks only when idle, nice backends for the async side."""

from __future__ import annotations

import os

import pytest

from booking_core import db


@pytest.fixture
def nice():
    """Set this process's backend nice as an entry point would; back to 0 after the test."""
    yield db.set_backend_nice
    db.set_backend_nice(0)


def _backend_nice(conn) -> int:
    return os.getpriority(os.PRIO_PROCESS, conn.info.backend_pid)


def test_an_async_side_pool_runs_its_postgres_backends_at_the_given_nice(database_url, nice):
    # Given a process told to run its backends at nice 7 (the local runner does this for the workers)
    db.close_pools()
    nice(7)
    try:
        # When it takes a connection from its pool
        with db.pool(database_url, max_size=2).connection() as conn:
            # Then the server process serving it runs at nice 7
            assert _backend_nice(conn) == 7
    finally:
        db.close_pools()


def test_a_connection_outside_the_pool_gets_the_same_nice(database_url, nice):
    # The relay's LISTEN, batch and reconciler connections are not pooled
    nice(7)
    with db.connect(database_url, autocommit=True) as conn:
        assert _backend_nice(conn) == 7
    nice(0)
    with db.connect(database_url, autocommit=True) as conn:
        assert _backend_nice(conn) == 0


def test_without_the_setting_backends_keep_the_servers_priority(database_url, nice):
    db.close_pools()
    nice(0)
    try:
        with db.pool(database_url, max_size=2).connection() as conn:
            assert _backend_nice(conn) == 0
    finally:
        db.close_pools()


def test_backend_nice_never_lowers_a_backends_nice(database_url):
    with db.connect(database_url) as conn:
        assert db.backend_nice(conn, 9)
        assert db.backend_nice(conn, 3)
        assert _backend_nice(conn) == 9
        assert not db.backend_nice(conn, 0)


def test_a_connection_is_checked_only_after_it_sat_idle(database_url, monkeypatch):
    # Given a pool whose connections count as fresh for a long time
    db.close_pools()
    monkeypatch.setattr(db, "FRESH_SECONDS", 3600.0)
    checks = []
    monkeypatch.setattr(db.ConnectionPool, "check_connection", staticmethod(lambda conn: checks.append(conn)))
    try:
        p = db.pool(database_url, max_size=1)
        # When a connection is used twice in a row
        with p.connection() as conn:
            conn.execute("SELECT 1")
        first = len(checks)
        with p.connection() as conn:
            conn.execute("SELECT 1")
        # Then it was checked on its first checkout (never returned yet) and not on the second
        assert first == 1 and len(checks) == 1
        # And once it counts as idle again, it is checked
        monkeypatch.setattr(db, "FRESH_SECONDS", 0.0)
        with p.connection() as conn:
            conn.execute("SELECT 1")
        assert len(checks) == 2
    finally:
        db.close_pools()
