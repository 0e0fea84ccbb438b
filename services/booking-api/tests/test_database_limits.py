"""The API's bounds on Postgres: server-side timeouts, the 503 they become, and the outage gate.

The slow statement runs on the session's real Postgres; the gate is pure logic.
The frozen-server cases run on real processes in tests/test_postgres_outage_e2e.py.
"""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest
from psycopg import errors

from booking_api import create_app
from booking_api.database import conninfo, get_db
from booking_api.pg_limits import FailedFast, OutageGate
from booking_api.settings import ApiSettings
from booking_core.config import Settings


@pytest.fixture
def slow_app(app):
    """The app with one extra route that runs a statement for as long as it is asked."""

    def sleep(seconds: float):
        get_db().execute("SELECT pg_sleep(%s)", (seconds,))
        return {"slept": seconds}

    app.add_url_rule("/test/sleep/<float:seconds>", view_func=sleep)
    return app


def test_each_connection_carries_the_statement_and_lock_timeouts(app):
    with app.app_context():
        conn = get_db()
        assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "3s"
        assert conn.execute("SHOW lock_timeout").fetchone()["lock_timeout"] == "2s"


def test_a_statement_over_the_timeout_is_a_503_problem_with_retry_after(slow_app):
    start = time.monotonic()
    resp = slow_app.test_client().get("/test/sleep/10.0")
    elapsed = time.monotonic() - start
    assert resp.status_code == 503 and resp.mimetype == "application/problem+json"
    assert resp.headers["Retry-After"] == "5"
    assert resp.get_json()["type"].endswith("/database-unavailable")
    assert "too long" in resp.get_json()["detail"]
    assert elapsed < 4.5, elapsed


def test_a_slow_statement_is_not_taken_for_an_outage(slow_app):
    """QueryCanceled means the server is alive: the next request goes straight through."""
    client = slow_app.test_client()
    assert client.get("/test/sleep/10.0").status_code == 503
    assert client.get("/test/sleep/0.0").get_json() == {"slept": 0.0}


def test_the_timeouts_cancel_on_the_server(app):
    with app.app_context(), pytest.raises(errors.QueryCanceled):
        get_db().execute("SELECT pg_sleep(10)")


def test_conninfo_keeps_the_urls_own_options():
    bounds = ApiSettings(core=Settings(database_url="postgresql://x", redis_url="redis://x"))
    info = conninfo("postgresql://u:p@db:5432/x?options=-c%20search_path%3Dbk", bounds)
    assert "connect_timeout=2" in info
    assert "-c search_path=bk -c statement_timeout=3000 -c lock_timeout=2000" in info


def test_the_gate_fails_fast_during_the_hold_then_lets_one_request_probe():
    gate = OutageGate()
    gate.enter()  # healthy: passes
    gate.failed(hold=0.2)
    with pytest.raises(FailedFast):
        gate.enter()
    time.sleep(0.25)
    gate.enter()  # the probe
    with pytest.raises(FailedFast):
        gate.enter()  # while it probes, the others fail fast
    gate.ok()
    gate.enter()
    gate.enter()


def test_a_probe_that_gives_up_lets_the_next_request_probe():
    gate = OutageGate()
    gate.failed(hold=0.0)
    gate.enter()
    gate.abandon()
    gate.enter()
    gate.failed(hold=60)
    with pytest.raises(FailedFast):
        gate.enter()


@pytest.fixture
def silent_postgres():
    """A TCP port that accepts connections and never answers: a frozen server, as a client sees it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"postgresql://booking:secret@127.0.0.1:{listener.getsockname()[1]}/booking"


def test_readyz_is_503_within_2s_when_postgres_does_not_answer(settings, silent_postgres):
    app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, database_url=silent_postgres)})
    client = app.test_client()
    for _ in range(2):  # the second probe shares the check still waiting, and is as quick
        start = time.monotonic()
        resp = client.get("/readyz")
        assert resp.status_code == 503 and time.monotonic() - start < 2.0
        assert "postgres" in resp.get_json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_a_request_is_503_within_5s_when_postgres_does_not_answer(settings, silent_postgres):
    app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, database_url=silent_postgres)})
    start = time.monotonic()
    resp = app.test_client().get("/api/v1/bookings", headers={"Authorization": "Bearer bk_whatever"})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert time.monotonic() - start < 5.0


def test_an_outage_of_one_database_does_not_refuse_requests_to_another(settings, silent_postgres, app, auth):
    down = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, database_url=silent_postgres)})
    assert down.test_client().get("/api/v1/bookings", headers=auth).status_code == 503
    assert app.test_client().get("/api/v1/bookings", headers=auth).status_code == 200
