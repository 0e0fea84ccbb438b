"""Admission limits on POST /api/v1/bookings, on the real Postgres and Redis: 429s, replays, plans, fail-open."""

from __future__ import annotations

import logging
import re
import uuid

import pytest

from booking_api import create_app
from booking_api.metrics import FAIL_OPEN, LIMITED
from booking_api.settings import ApiSettings
from booking_core.model import plans
from booking_core.model.plans import Plan
from booking_embedded import free_port


@pytest.fixture
def tight(db_conn, tenant):
    """Put this test's tenant on a plan of 3 bookings, refilled at one every 100 s."""

    def put(burst: int = 3, rate: float = 0.01) -> Plan:
        return plans.set_plan(db_conn, tenant["id"], Plan("tight", rate, burst, 1), actor="test")

    put()
    return put


def count_bookings(db_conn, tenant) -> int:
    return db_conn.execute("SELECT count(*) AS n FROM bookings WHERE tenant_id = %s", (tenant["id"],)).fetchone()["n"]


def test_over_its_plan_a_tenant_gets_a_429_problem_naming_the_limit_and_nothing_is_written(
        client, auth, booking_body, tight, db_conn, tenant):
    before = LIMITED._value.get()
    answers = [client.post("/api/v1/bookings", json=booking_body(), headers=auth) for _ in range(4)]
    assert [r.status_code for r in answers] == [201, 201, 201, 429]
    assert count_bookings(db_conn, tenant) == 3
    ok, refused = answers[0], answers[-1]
    assert ok.headers["RateLimit-Policy"] == '"bookings";q=3;w=300'
    assert ok.headers["RateLimit"].startswith('"bookings";r=2;t=')
    assert refused.mimetype == "application/problem+json"
    problem = refused.get_json()
    assert problem["status"] == 429 and problem["type"].endswith("/rate-limited")
    assert "'bookings'" in problem["detail"] and "'tight'" in problem["detail"]
    # One token every 100 s: the first came back 100 s after the first take, rounded up.
    assert 99 <= int(refused.headers["Retry-After"]) <= 100
    assert re.fullmatch(r'"bookings";r=0;t=\d+', refused.headers["RateLimit"])
    assert refused.headers["RateLimit-Policy"] == '"bookings";q=3;w=300'
    assert LIMITED._value.get() == before + 1


def test_reads_are_not_limited(client, auth, booking_body, tight):
    tight(burst=1)
    created = client.post("/api/v1/bookings", json=booking_body(), headers=auth)
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 429
    for _ in range(5):
        assert client.get(created.headers["Location"], headers=auth).status_code == 200
        assert client.get("/api/v1/bookings", headers=auth).status_code == 200


def test_an_idempotent_replay_costs_no_token(client, auth, booking_body, tight, db_conn, tenant):
    tight(burst=2)
    first = client.post("/api/v1/bookings", json=booking_body(), headers=auth | {"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    for _ in range(3):
        replay = client.post("/api/v1/bookings", json=booking_body(), headers=auth | {"Idempotency-Key": "k-1"})
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    # The replays gave their tokens back: one new booking still fits, then the bucket is empty.
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth | {"Idempotency-Key": "k-2"}
                       ).status_code == 201
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 429
    # At the limit, a replay still gets its stored answer; a new key does not get through.
    replay = client.post("/api/v1/bookings", json=booking_body(), headers=auth | {"Idempotency-Key": "k-1"})
    assert replay.status_code == 201 and replay.get_json() == first.get_json()
    refused = client.post("/api/v1/bookings", json=booking_body(), headers=auth | {"Idempotency-Key": "k-3"})
    assert refused.status_code == 429
    assert count_bookings(db_conn, tenant) == 2


def test_a_tenant_at_its_limit_holds_up_no_other_tenant(client, auth, booking_body, tight, db_conn):
    from booking_core.model import tenants

    tight(burst=1)
    client.post("/api/v1/bookings", json=booking_body(), headers=auth)
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 429
    other = tenants.ensure_tenant(db_conn, f"other-{uuid.uuid4().hex[:12]}")
    other_auth = {"Authorization": f"Bearer {tenants.create_token(db_conn, other['id'])['token']}"}
    assert client.post("/api/v1/bookings", json=booking_body(), headers=other_auth).status_code == 201


def test_the_default_plan_applies_to_a_tenant_without_one(settings, auth, booking_body):
    from dataclasses import replace

    app = create_app({"TESTING": True, "SETTINGS": replace(settings, plan_default_burst=2, plan_default_rate=0.01)})
    client = app.test_client()
    codes = [client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_with_limits_off_every_booking_is_admitted(settings, auth, booking_body, tight):
    from dataclasses import replace

    tight(burst=1)
    client = create_app({"TESTING": True, "SETTINGS": replace(settings, limits_enabled=False)}).test_client()
    answers = [client.post("/api/v1/bookings", json=booking_body(), headers=auth) for _ in range(3)]
    assert [r.status_code for r in answers] == [201] * 3
    assert "RateLimit" not in answers[0].headers


def test_when_redis_is_down_bookings_are_admitted_counted_and_logged_once(
        settings, auth, booking_body, tight, db_conn, tenant, caplog):
    from dataclasses import replace

    tight(burst=1)
    down = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    app = create_app({"TESTING": True, "API": ApiSettings(core=down, limiter_outage_hold_seconds=0)})
    client = app.test_client()
    before = FAIL_OPEN._value.get()
    with caplog.at_level(logging.WARNING, logger="booking_api.admission"):
        codes = [client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code for _ in range(5)]
    assert codes == [201] * 5
    assert count_bookings(db_conn, tenant) == 5
    assert FAIL_OPEN._value.get() == before + 5
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1, caplog.text


def test_a_redis_outage_ends_with_one_more_line_and_limits_apply_again(
        settings, auth, booking_body, tight, own_redis, caplog):
    from dataclasses import replace

    tight(burst=1)
    app = create_app({"TESTING": True, "API": ApiSettings(core=replace(settings, redis_url=own_redis.url),
                                                          limiter_outage_hold_seconds=0)})
    client = app.test_client()
    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="booking_api.admission"):
        assert [client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code
                for _ in range(3)] == [201] * 3
        own_redis.start()
        codes = [client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code for _ in range(2)]
    assert codes == [201, 429]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "unreachable" in lines[0] and "reachable again" in lines[1], lines
    assert "3 request(s)" in lines[1]


def test_a_change_of_plan_reaches_a_process_that_cached_the_old_one(client, app, auth, booking_body, tight, redis_url):
    import redis

    from booking_core.model import buckets

    tight(burst=1)
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 201
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 429
    tight(burst=5)  # in Postgres only: the process still holds the old plan for BOOKING_API_PLAN_CACHE_SECONDS
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 429
    buckets.bump_generation(redis.Redis.from_url(redis_url))  # what an operator's change does after its commit
    # The process's next decision that asks Redis (after its refusal hold, 1 s) sees the new generation and
    # drops its cached plans, long before they expire (BOOKING_API_PLAN_CACHE_SECONDS, 5 s).
    from e2e_helpers import wait_until

    wait_until(lambda: client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 201,
               timeout=3, interval=0.1, what="the new plan to apply")


def test_processes_lease_tokens_ahead_yet_admit_exactly_the_burst_between_them(settings, redis_url, tenant):
    """Two processes' limiters on one bucket of 100: a lease saves round trips, never a token too many."""
    import redis

    from booking_api.admission import Admission

    plan = Plan("hundred", 0.01, 100, 1)
    client = redis.Redis.from_url(redis_url)
    gates = [Admission(redis.Redis.from_url(redis_url), settings.redis_namespace, plan, cache_seconds=5,
                       hold_seconds=1, lease_seconds=60) for _ in range(2)]
    calls_before = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    admitted = [0, 0]
    for i in range(300):
        admitted[i % 2] += gates[i % 2].take(tenant["id"], lambda _t: plan).allowed
    calls = client.info("commandstats")["cmdstat_evalsha"]["calls"] - calls_before
    assert sum(admitted) == 100 and min(admitted) >= 40
    # Far from the limit each round trip took up to 5 tokens; near it, one at a time; refusals ask every time.
    assert calls < 100 + 200, calls
    assert calls - 200 < 80, calls


def test_a_replay_gives_its_token_back_to_the_lease(settings, redis_url, tenant):
    import redis

    from booking_api.admission import Admission

    plan = Plan("hundred", 0.01, 100, 1)
    gate = Admission(redis.Redis.from_url(redis_url), settings.redis_namespace, plan, cache_seconds=5,
                     hold_seconds=1, lease_seconds=60)
    load = lambda _t: plan  # noqa: E731
    decisions = [gate.take(tenant["id"], load) for _ in range(3)]
    for d in decisions:
        gate.refund(d)
    admitted = sum(gate.take(tenant["id"], load).allowed for _ in range(150))
    assert admitted == 100


def test_what_an_ended_lease_did_not_use_goes_back_to_the_bucket(settings, redis_url, tenant):
    import redis

    from booking_api.admission import Admission

    plan = Plan("hundred", 0.01, 100, 1)
    gate = Admission(redis.Redis.from_url(redis_url), settings.redis_namespace, plan, cache_seconds=5,
                     hold_seconds=1, lease_seconds=0)  # every lease has ended by the next booking
    admitted = sum(gate.take(tenant["id"], lambda _t: plan).allowed for _ in range(150))
    assert admitted == 100


def test_a_process_refused_for_a_tenant_refuses_it_alone_until_a_token_can_be_back(settings, redis_url, tenant):
    """A flood at the limit costs one round trip per process and refusal period, and admits as soon as one is back."""
    import redis

    from booking_api.admission import Admission
    from e2e_helpers import wait_until

    plan = Plan("slow", 2.0, 1, 1)  # one token every 0.5 s
    client = redis.Redis.from_url(redis_url)
    gate = Admission(redis.Redis.from_url(redis_url), settings.redis_namespace, plan, cache_seconds=5,
                     hold_seconds=1)
    load = lambda _t: plan  # noqa: E731
    assert gate.take(tenant["id"], load).allowed
    calls_before = client.info("commandstats")["cmdstat_evalsha"]["calls"]
    refusals = [gate.take(tenant["id"], load) for _ in range(200)]
    assert not any(d.allowed for d in refusals)
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] - calls_before <= 2
    assert refusals[-1].verdict.retry_after <= refusals[0].verdict.retry_after <= 0.5
    wait_until(lambda: gate.take(tenant["id"], load).allowed, timeout=5, interval=0.02,
               what="the next token, half a second after the first")


def test_the_limiters_knobs_are_read_at_start_and_a_bad_one_names_its_variable(settings):
    from booking_settings.fields import SettingsError

    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    api = ApiSettings.from_env({**env, "BOOKING_API_PLAN_CACHE_SECONDS": "0", "BOOKING_API_LIMITER_LEASE_MAX": "1",
                                "BOOKING_API_LIMITER_REFUSAL_HOLD_SECONDS": "0.5"})
    assert (api.plan_cache_seconds, api.limiter_lease_max, api.limiter_refusal_hold_seconds) == (0, 1, 0.5)
    admission = create_app({"TESTING": True, "API": api}).extensions["booking_admission"]
    assert (admission.lease_max, admission.refusal_hold_seconds, admission._plans) == (1, 0.5, None)
    with pytest.raises(SettingsError, match="BOOKING_API_LIMITER_LEASE_MAX must be from 1"):
        ApiSettings.from_env({**env, "BOOKING_API_LIMITER_LEASE_MAX": "0"})
    with pytest.raises(SettingsError, match="BOOKING_API_LIMITER_TIMEOUT_SECONDS must be above 0"):
        ApiSettings.from_env({**env, "BOOKING_API_LIMITER_TIMEOUT_SECONDS": "0"})
