"""Admission limits on real API processes: one bucket shared by two gunicorns; Redis down fails open.

The API processes are the platform's own command (gunicorn, 2 workers each), so
the bucket is shared across four processes in two servers, as across replicas.
"""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from served_api import ServedApi

from booking_core.model import plans, tenants
from booking_core.model.plans import Plan
from e2e_helpers import Api, wait_until

pytestmark = pytest.mark.e2e


def scrape(url: str, name: str) -> float:
    """The sum of one metric's samples in a Prometheus text page."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.fixture
def limited_tenant(db_conn):
    """A tenant of its own on a plan of 10 bookings, refilled at one every 100 s, and its token."""
    tenant = tenants.ensure_tenant(db_conn, f"limited-{uuid.uuid4().hex[:10]}")
    plans.set_plan(db_conn, tenant["id"], Plan("ten", 0.01, 10, 1), actor="test")
    return tenant, tenants.create_token(db_conn, tenant["id"])["token"]


def test_two_api_servers_share_one_bucket_per_tenant(database_url, redis_url, tmp_path, db_conn, limited_tenant):
    tenant, token = limited_tenant
    shared = {"BOOKING_REDIS_NAMESPACE": f"shared-{uuid.uuid4().hex[:8]}"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    servers = [ServedApi(database_url, redis_url, tmp_path / "a", env=shared),
               ServedApi(database_url, redis_url, tmp_path / "b", env=shared)]
    try:
        apis = [Api(f"http://127.0.0.1:{s.wait_serving().port}", token) for s in servers]
        with ThreadPoolExecutor(8) as pool:  # 16 at once, half to each server
            codes = list(pool.map(lambda i: apis[i % 2].try_book(name=f"Guest {i}")[0], range(16)))
    finally:
        for s in servers:
            s.stop()
    assert sorted(codes) == [201] * 10 + [429] * 6
    assert {codes[i] for i in range(0, 16, 2)} & {201} and {codes[i] for i in range(1, 16, 2)} & {201}
    assert db_conn.execute("SELECT count(*) AS n FROM bookings WHERE tenant_id = %s",
                           (tenant["id"],)).fetchone()["n"] == 10


def test_with_redis_stopped_bookings_are_admitted_counted_and_logged_once_per_process(
        database_url, own_redis, tmp_path, db_conn, limited_tenant):
    tenant, token = limited_tenant
    plans.set_plan(db_conn, tenant["id"], Plan("one", 0.01, 1, 1), actor="test")
    (tmp_path / "api").mkdir()
    # No refusal hold: a worker that saw the 429 below would otherwise go on refusing for 1 s by itself,
    # rightly (the bucket is empty), which is not what this test is about.
    server = ServedApi(database_url, own_redis.url, tmp_path / "api",
                       env={"BOOKING_API_LIMITER_REFUSAL_HOLD_SECONDS": "0"}).wait_serving()
    try:
        api = Api(f"http://127.0.0.1:{server.port}", token)
        assert [api.try_book()[0] for _ in range(2)] == [201, 429]  # the limit is live
        own_redis.stop()
        codes = [api.try_book(name=f"Guest {i}")[0] for i in range(6)]
        assert codes == [201] * 6
        assert scrape(server.metrics_url, "booking_api_limiter_fail_open_total") == 6
        unreachable = server.log().count("rate limiter store unreachable")
        assert 1 <= unreachable <= server.workers, server.log()
        own_redis.start()
        # Once Redis answers again the limit holds again (its bucket was kept: the AOF survived).
        wait_until(lambda: api.try_book()[0] == 429, timeout=30, what="the limit to apply again")
        assert server.log().count("rate limiter store unreachable") == unreachable
    finally:
        server.stop()
    assert db_conn.execute("SELECT count(*) AS n FROM bookings WHERE tenant_id = %s",
                           (tenant["id"],)).fetchone()["n"] >= 7
    # Each admitted booking's work waits in the outbox for the relay (Postgres is the source of truth).
    assert db_conn.execute("SELECT count(*) AS n FROM outbox o JOIN bookings b ON b.id::text = o.payload->>'booking_id'"
                           " WHERE b.tenant_id = %s", (tenant["id"],)).fetchone()["n"] >= 7 * 3


def test_a_held_tenants_refusal_needs_no_request_thread(database_url, redis_url, tmp_path, db_conn,
                                                         limited_tenant):
    """With every request thread stuck on a lock, the held tenant still gets its 429 at once: the
    worker's event loop answers it (held_refusals.HeldRefusals.for_head), so a flood of refusals
    never queues for the threads the other tenants' bookings need, nor they behind it."""
    _, token = limited_tenant
    other = tenants.ensure_tenant(db_conn, f"other-{uuid.uuid4().hex[:10]}")
    other_token = tenants.create_token(db_conn, other["id"])["token"]
    plans.set_plan(db_conn, limited_tenant[0]["id"], Plan("one", 0.01, 1, 1), actor="test")
    (tmp_path / "api").mkdir()
    server = ServedApi(database_url, redis_url, tmp_path / "api", workers=1, threads=2,
                       env={"BOOKING_API_LIMITER_REFUSAL_HOLD_SECONDS": "60",
                            "BOOKING_API_DB_LOCK_TIMEOUT_MS": "60000",
                            "BOOKING_API_DB_STATEMENT_TIMEOUT_MS": "60000"}).wait_serving()
    base = f"http://127.0.0.1:{server.port}"
    held, blocked = Api(base, token), Api(base, other_token)
    try:
        assert [held.try_book()[0] for _ in range(2)] == [201, 429]  # Redis refused it: now held
        locker = psycopg.connect(database_url, autocommit=False)
        try:
            locker.execute("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE")
            with ThreadPoolExecutor(2) as pool:
                stuck = [pool.submit(blocked.try_book, name=f"Guest {i}") for i in range(2)]
                wait_until(lambda: db_conn.execute(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query ILIKE '%bookings%'").fetchone()["n"] >= 2,
                    timeout=30, what="both request threads to wait on the lock")
                started = time.monotonic()
                codes = [held.try_book()[0] for _ in range(3)]
                took = time.monotonic() - started
                assert not any(f.done() for f in stuck), "the lock was meant to hold them"
                locker.rollback()
                assert [f.result()[0] for f in stuck] == [201, 201]
        finally:
            locker.close()
    finally:
        server.stop()
    assert codes == [429] * 3
    assert took < 10, f"the held tenant's 429s waited {took:.1f} s for a request thread"
