"""The ops console's sign-in throttle over real HTTP, on real Redis: per client address and per token prefix."""

from __future__ import annotations

import http.client
import logging
import uuid
from urllib.parse import urlencode

import pytest
import redis

from booking_core.model import tenants
from booking_events.sign_in_throttle import SignInThrottle


def sign_in(port: int, token: str) -> tuple[int, dict, str]:
    """One sign-in form POST, as the browser sends it."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/ops/sign-in", body=urlencode({"token": token}),
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    c.close()
    return out


@pytest.fixture
def admin(db_conn, tenant) -> dict:
    return tenants.create_token(db_conn, tenant["id"], admin=True, label="Grace")


def test_past_ten_attempts_an_address_waits_even_with_the_right_token(events_port, admin, db_conn):
    sessions_before = db_conn.execute("SELECT count(*) AS n FROM ops_sessions").fetchone()["n"]
    codes = [sign_in(events_port, f"bk_{uuid.uuid4().hex}")[0] for _ in range(10)]  # ten tokens, ten prefixes
    assert codes == [401] * 10
    status, headers, html = sign_in(events_port, admin["token"])
    assert status == 429 and 5 <= int(headers["retry-after"]) <= 6
    assert "Too many sign-in attempts from your address" in html
    assert db_conn.execute("SELECT count(*) AS n FROM ops_sessions").fetchone()["n"] == sessions_before


def test_redis_down_sign_in_still_works_and_says_so_once(events_settings, admin, caplog):
    from booking_embedded import free_port

    throttle = SignInThrottle(redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2),
                              events_settings.redis_namespace)
    with caplog.at_level(logging.WARNING, logger="booking_events.sign_in_throttle"):
        assert [throttle.attempt("127.0.0.1", admin["token"]) for _ in range(20)] == [None] * 20
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


def test_the_prefix_bucket_counts_attempts_from_every_address(events_settings, redis_url, admin):
    throttle = SignInThrottle(redis.Redis.from_url(redis_url), events_settings.redis_namespace)
    prefix = admin["token"][:10]
    results = [throttle.attempt(f"10.0.0.{i}", prefix + f"guess{i}") for i in range(6)]
    assert results[:5] == [None] * 5
    assert results[5] is not None and results[5].scope == "token" and 25 <= results[5].retry_after <= 30
    # Another token's prefix, from one of the same addresses, is not held up.
    assert throttle.attempt("10.0.0.1", "bk_other00" + "x" * 30) is None
