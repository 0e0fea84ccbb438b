"""bookingctl's operator commands against a running local platform."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from e2e_helpers import Api, wait_until

pytestmark = pytest.mark.e2e


def ctl(platform, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in platform.config.env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run([sys.executable, "-m", "bookingctl", "--data-dir", str(platform.data_dir), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_tokens_audit_and_dead_letters_from_the_command_line(make_platform, api_of):
    platform = make_platform()
    db = platform.urls["DATABASE_URL"]

    # Tokens: created once, listed without the secret, revoked for good.
    made = ctl(platform, "tokens", "create", "--tenant", "acme", "--label", "ci")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    token_id = made.stderr.split("token id ")[1].split()[0]
    acme = Api(platform.api_url, token)
    booking = acme.book(name="Audit Me", email="audit@example.com")
    listed = ctl(platform, "tokens", "list", "--tenant", "acme")
    assert token_id in listed.stdout and token not in listed.stdout
    assert ctl(platform, "tokens", "revoke", token_id).returncode == 0
    # Refused once each API process's cached identity expires (BOOKING_API_TOKEN_CACHE_SECONDS, 2 s)
    wait_until(lambda: acme.json("GET", f"/api/v1/bookings/{booking['id']}")[0] == 401, timeout=4,
               what="the revoked token refused")

    # Audit: intact, then an edited row is detected.
    with psycopg.connect(db) as conn:
        wait_until(lambda: conn.execute("SELECT count(*) FROM audit_log WHERE booking_id = %s",
                                        (booking["id"],)).fetchone()[0] == 3, what="three audit rows")
    ok = ctl(platform, "audit", "verify", "--tenant", "acme")
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr
    with psycopg.connect(db) as conn:
        conn.execute("SET session_replication_role = replica")  # what a tamperer with DB rights does
        conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE booking_id = %s AND kind = 'booking.created'",
                     (booking["id"],))
    broken = ctl(platform, "audit", "verify", "--tenant", "acme")
    assert broken.returncode == 1 and "BROKEN" in broken.stdout
    assert ctl(platform, "audit", "verify", "--tenant", "demo").returncode == 0
    assert ctl(platform, "audit", "verify", "--tenant", "nobody").returncode == 2

    # Dead letters: none to discard; unknown ids are reported.
    empty = ctl(platform, "dlq", "list")
    assert empty.returncode == 0 and "0 dead letter(s)" in empty.stdout
    missing = ctl(platform, "dlq", "discard", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1 and "no dead letter" in missing.stderr


def test_commands_fail_clearly_without_a_running_platform(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "bookingctl", "--data-dir", str(tmp_path), "tokens", "list"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1
    assert "no platform is running" in out.stderr
