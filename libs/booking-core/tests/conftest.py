"""Fixtures of booking-core's tests: the admin CLI (`booking-admin`, which `bookingctl` runs) in-process."""

from __future__ import annotations

import pytest

from booking_core.ops import admin


@pytest.fixture
def env(settings, monkeypatch):
    """The CLI's environment: this test's servers and Redis namespace, as an operator's shell would set them."""
    for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url),
                        ("BOOKING_REDIS_NAMESPACE", settings.redis_namespace)):
        monkeypatch.setenv(name, value)


@pytest.fixture
def admin_cli(capsys):
    """`admin_cli(*argv)`: run `booking-admin ARGV...` to its exit; (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as done:
            admin.main(list(argv))
        out = capsys.readouterr()
        return done.value.code, out.out, out.err

    return run
