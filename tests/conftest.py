"""Fixtures for cross-service tests: a whole local platform per test.

`make_platform(**env)` starts what `bookingctl up` starts (embedded Postgres,
Redis and SMTP sink, migrations, relay, three workers, gunicorn) in a data dir
of its own, with test-sized timings: seconds of backoff instead of minutes, a
5 s heartbeat timeout so a killed worker's messages come back quickly.  Its
Postgres starts from a copy of a cluster made and migrated once per session
(`postgres_template`) instead of running initdb and every migration again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from booking_core.db.migrate import migrate
from booking_embedded import EmbeddedPostgres, free_port
from bookingctl.platform import Platform, PlatformConfig
from e2e_helpers import Api

FAST_ENV = {
    "BOOKING_HEARTBEAT_TIMEOUT_MS": "5000",
    "BOOKING_MAINTENANCE_CHANCE": "1000000",
    "BOOKING_RELAY_SWEEP_MS": "500",
    "BOOKING_RETRY_EMAIL_MAX_RETRIES": "3",
    "BOOKING_RETRY_INVOICE_MAX_RETRIES": "3",
    "BOOKING_RETRY_AUDIT_MAX_RETRIES": "3",
    "BOOKING_RETRY_EMAIL_MIN_BACKOFF_MS": "300",
    "BOOKING_RETRY_INVOICE_MIN_BACKOFF_MS": "300",
    "BOOKING_RETRY_AUDIT_MIN_BACKOFF_MS": "300",
    "BOOKING_RETRY_EMAIL_MAX_BACKOFF_MS": "1000",
    "BOOKING_RETRY_INVOICE_MAX_BACKOFF_MS": "1000",
    "BOOKING_RETRY_AUDIT_MAX_BACKOFF_MS": "1000",
}


def platform_for_tests(data_dir: Path, env: dict | None = None, *, template: Path | None = None,
                       **config) -> Platform:
    """A platform (not started yet) on `data_dir` with the test timings, plus `env`.

    `template`: a stopped cluster's dir (`postgres_template`) that a new data dir's
    Postgres starts from; a data dir that has a cluster already keeps its own.

    The workers run at nice 10 but not at the idle scheduling class unless `config`
    asks for it (`workers_cpu_idle`): there a worker gets no CPU at all while other
    tests' processes keep both cores busy, and a test would wait on the machine's
    load, not on the behaviour it asserts.  test_supervision_e2e.py checks the class.
    """
    config.setdefault("workers_cpu_idle", False)
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
    base.update(FAST_ENV)
    base.update(env or {})
    if template is not None and not (data_dir / "postgres").exists():
        seed_postgres(template, data_dir)
    return Platform(PlatformConfig(data_dir=data_dir, port=free_port(), env=base, api_workers=1, **config))


def seed_postgres(template: Path, data_dir: Path) -> None:
    """Copy the template's cluster and its password into `data_dir`, where EmbeddedPostgres finds them."""
    shutil.copytree(template / "postgres", data_dir / "postgres", symlinks=True)
    (data_dir / "secrets").mkdir(parents=True, exist_ok=True)
    shutil.copy2(template / "secrets" / "postgres-password", data_dir / "secrets" / "postgres-password")


@pytest.fixture(scope="session")
def postgres_template(server_dir_factory) -> Path:
    """A cluster made with initdb and migrated once per session, stopped: what platforms start from."""
    root = server_dir_factory("postgres-template")
    server = EmbeddedPostgres(root, free_port(), root / "logs")
    server.start()
    try:
        migrate(server.url)
    finally:
        server.stop()
    return root


@pytest.fixture(scope="session")
def new_platform(postgres_template, server_dir_factory):
    """`make(name, env, **config)`: a platform (not started) in a new dir, for tests that start and stop
    their own, e.g. one per module."""

    def make(name: str, env: dict | None = None, **config) -> Platform:
        return platform_for_tests(server_dir_factory(name) / "data", env, template=postgres_template, **config)

    return make


@pytest.fixture(scope="module")
def module_platform(new_platform, request):
    """One started platform shared by a module's tests; stopped after the module.

    A test on it books for itself and leaves the platform as it found it (a
    process it stops, it starts again), and what it counts across the whole
    platform the module's other tests must not add to.  A test that leaves a
    process stopped, or needs other settings, starts its own (`make_platform`).
    """
    platform = new_platform(request.module.__name__.rsplit(".", 1)[-1])
    platform.start()
    yield platform
    platform.stop()


@pytest.fixture
def make_platform(server_tmp, postgres_template):
    """Factory: start a local platform with extra env; stopped after the test."""
    started: list[Platform] = []

    def make(env: dict | None = None, *, data_dir: Path | None = None, **config) -> Platform:
        """Start a platform; `data_dir` of a stopped one starts it again on the same data."""
        platform = platform_for_tests(data_dir or server_tmp / f"data{len(started)}", env,
                                      template=postgres_template, **config)
        started.append(platform)
        platform.start()
        return platform

    yield make
    for p in started:
        p.stop()


def api_for(platform: Platform) -> Api:
    return Api(platform.api_url, platform.admin_token)


@pytest.fixture
def api_of():
    return api_for
