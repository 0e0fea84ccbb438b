"""Liveness and readiness probes, without a token."""

from __future__ import annotations

import dataclasses

from booking_api import create_app
from booking_api.metrics import DEGRADED
from booking_embedded import free_port


def test_healthz_is_200_without_a_token(client):
    # When the liveness probe is called without a token
    resp = client.get("/healthz")
    # Then it answers 200 ok
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_readyz_is_200_when_postgres_and_redis_answer(client):
    # Given the session's real Postgres and Redis, when the readiness probe is called
    resp = client.get("/readyz")
    # Then both checks are ok
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}, "degraded": []}


def test_readyz_stays_200_and_says_degraded_when_redis_is_unreachable(settings):
    # Given an app whose Redis URL points at a port nothing listens on
    dead = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = create_app({"TESTING": True, "SETTINGS": dead}).test_client()
    # When the readiness probe is called
    resp = client.get("/readyz")
    # Then still ready (bookings need Postgres only), with Redis named as degraded, in the gauge too
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["status"], body["degraded"], body["checks"]["postgres"]) == ("degraded", ["redis"], "ok")
    assert body["checks"]["redis"] == "ConnectionError"
    assert DEGRADED.labels("redis")._value.get() == 1
    assert client.get("/healthz").status_code == 200
