"""Fixtures for cross-service tests: a whole local platform per test.

`make_platform(**env)` starts what `bookingctl up` starts (embedded Postgres,
Redis and SMTP sink, migrations, relay, three workers, gunicorn) in a temp
data dir, with test-sized timings: seconds of backoff instead of minutes, a
5 s heartbeat timeout so a killed worker's messages come back quickly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from booking_embedded import free_port
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


def platform_for_tests(data_dir: Path, env: dict | None = None, **config) -> Platform:
    """A platform (not started yet) on `data_dir` with the test timings, plus `env`."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
    base.update(FAST_ENV)
    base.update(env or {})
    return Platform(PlatformConfig(data_dir=data_dir, port=free_port(), env=base, api_workers=1, **config))


@pytest.fixture(scope="session")
def new_platform():
    """`platform_for_tests`, for tests that start (and stop) a platform their own way, e.g. one per module."""
    return platform_for_tests


@pytest.fixture
def make_platform(tmp_path):
    """Factory: start a local platform with extra env; stopped after the test."""
    started: list[Platform] = []

    def make(env: dict | None = None, *, data_dir: Path | None = None, **config) -> Platform:
        """Start a platform; `data_dir` of a stopped one starts it again on the same data."""
        platform = platform_for_tests(data_dir or Path(tmp_path) / f"data{len(started)}", env, **config)
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
