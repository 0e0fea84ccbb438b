"""Readiness on the real platform: the API is ready while it can accept bookings.

Confirming a booking needs Postgres only (the outbox holds the work until Redis is
back), so a Redis outage must not take every API pod out of its Service at once:
`/readyz` stays 200, says Redis is degraded (a field of its body and the
`booking_api_degraded` gauge on the metrics port), and POSTs are still 201.
"""

from __future__ import annotations

import re
import urllib.request

import psycopg
import pytest

from e2e_helpers import wait_until

pytestmark = pytest.mark.e2e


def degraded_gauge(platform) -> dict[str, float]:
    with urllib.request.urlopen(platform.metrics_urls["api"], timeout=10) as r:
        text = r.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r'^booking_api_degraded\{dependency="(\w+)"\} (\S+)$', text, re.M)}


def test_with_redis_stopped_readyz_stays_200_says_redis_is_degraded_and_posts_are_201(make_platform, api_of):
    platform = make_platform()
    api = api_of(platform)
    status, body = api.json("GET", "/readyz")
    assert (status, body) == (200, {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}, "degraded": []})
    assert degraded_gauge(platform) == {"redis": 0}

    platform.stop_component("redis")
    try:
        status, body = api.json("GET", "/readyz")
        assert status == 200, body
        assert body["status"] == "degraded" and body["degraded"] == ["redis"]
        assert body["checks"]["postgres"] == "ok" and body["checks"]["redis"] != "ok"
        assert degraded_gauge(platform) == {"redis": 1}
        ids = [api.book(name=f"Redis Down {i}", email=f"down{i}@example.com")["id"] for i in range(3)]  # 201 each
        with psycopg.connect(platform.urls["DATABASE_URL"]) as conn:
            waiting = conn.execute("SELECT count(*) FROM outbox WHERE payload->>'booking_id' = ANY(%s)",
                                   (ids,)).fetchone()[0]
        assert waiting == 9  # three tasks each, kept until Redis is back
    finally:
        platform.start_component("redis")

    wait_until(lambda: api.json("GET", "/readyz")[1].get("status") == "ready", timeout=30, what="/readyz ready")
    assert degraded_gauge(platform) == {"redis": 0}
    for booking_id in ids:
        api.wait_states(booking_id, {"email": "done", "invoice": "done", "audit": "done"}, timeout=90)
