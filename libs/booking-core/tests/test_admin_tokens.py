"""`booking-admin tokens create` / `bookingctl tokens create` with a tenant name against the tenant-name rule.

Run as the real commands: what a person at the terminal sees is the point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from booking_core.model import tenants

BIN = Path(sys.executable).parent


def command(settings, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=60)


def tenant_count(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM tenants").fetchone()["n"]


@pytest.mark.parametrize(("cli", "name"), [
    ("booking-admin", "Evil"), ("bookingctl", "Evil"),
    ("booking-admin", "-dash-first"), ("booking-admin", "x" * 64), ("booking-admin", "tab\there"),
])
def test_a_name_against_the_rule_is_one_line_naming_it_and_changes_nothing(settings, db_conn, cli, name):
    before = tenant_count(db_conn)
    done = command(settings, str(BIN / cli), "tokens", "create", f"--tenant={name}")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr and "CheckViolation" not in done.stderr
    [line] = done.stderr.splitlines()
    assert "tenant-name rule" in line and "lowercase letters" in line
    assert tenant_count(db_conn) == before


def test_a_good_name_still_makes_its_tenant_and_token(settings, db_conn):
    name = f"t-{uuid.uuid4().hex[:10]}"
    done = command(settings, str(BIN / "booking-admin"), "tokens", "create", "--tenant", name)
    assert done.returncode == 0 and done.stdout.startswith(tenants.TOKEN_PREFIX)
    assert tenants.find_tenant(db_conn, name) is not None


@pytest.mark.parametrize("name", ["a", "acme", "a-b_c", "0", "x" * 63, "", "A", "-a", "_a", "x" * 64, "a b",
                                  "a\n", "é", "a.b", "١"])
def test_the_rule_is_the_databases_check(db_conn, name):
    """The Python rule and migration 0001's CHECK take and refuse the same names."""
    try:
        with db_conn.transaction():
            db_conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s)", (uuid.uuid4(), name))
            raise _Undo
    except psycopg.errors.CheckViolation:
        database_takes = False
    except _Undo:
        database_takes = True
    assert bool(tenants.TENANT_NAME.fullmatch(name)) is database_takes


class _Undo(Exception):
    """Rolls the probe insert back."""
