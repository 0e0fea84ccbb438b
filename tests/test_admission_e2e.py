"""Admission limits on real API processes: one bucket shared by two gunicorns; Redis down fails open.

The API processes are the platform's own command (gunicorn, 2 workers each), so
the bucket is shared across four processes in two servers, as across replicas.
"""

from __future__ import annotations

import re
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

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
