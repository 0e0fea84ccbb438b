"""Who fills each queue: the outbox counted per queue and tenant, ranked, bounded to the top N."""

from __future__ import annotations

import uuid

from psycopg.types.json import Jsonb

from booking_core.model import tenants
from booking_core.queues.tenant_backlog import TenantRows, names, rank, read


def row(queue: str, tenant: str, waiting: int, later: int = 0, oldest: int | None = None) -> dict:
    return {"queue": queue, "tenant_id": tenant, "waiting": waiting, "later": later, "oldest_ms": oldest}


def test_rank_puts_the_most_rows_first_and_sums_the_rest():
    rows = [row("email", f"t{i}", waiting=i, later=i % 2, oldest=1000 - i) for i in range(1, 7)]
    ranked = rank(rows, 3)["email"]
    assert [t.tenant_id for t in ranked.top] == ["t5", "t6", "t3"], "6+0=6 ties with 5+1: the id breaks it"
    assert ranked.top[0] == TenantRows("t5", 5, 1, 995)
    assert (ranked.rest_tenants, ranked.rest_messages) == (3, (1 + 1) + 2 + (4 + 0))
    assert ranked.rest_oldest_ms == 996, "the oldest due row among t1, t2, t4"


def test_rank_keeps_queues_apart_and_counts_later_rows_with_no_due_one():
    rows = [row("invoice", "a", 0, later=9), row("email", "a", 1, oldest=5), row("email", "b", 2, oldest=7)]
    ranked = rank(rows, 10)
    assert list(ranked) == ["email", "invoice"]
    assert [t.tenant_id for t in ranked["email"].top] == ["b", "a"] and ranked["email"].rest_tenants == 0
    only = ranked["invoice"].top[0]
    assert (only.messages, only.oldest_ms) == (9, 0), "nothing due: no oldest waiting age"


def test_rank_of_nothing_is_nothing():
    assert rank([], 10) == {}


def test_read_counts_due_and_later_rows_per_tenant_and_names_only_tenants(db_conn):
    queue = f"q-{uuid.uuid4().hex[:8]}"  # a queue of this test's own: the session's outbox holds others'
    hotel = tenants.ensure_tenant(db_conn, f"hotel-{uuid.uuid4().hex[:6]}")
    hostile = "<img src=x onerror=alert(1)>"

    def add(tenant_id: str, n: int, *, later: bool = False, age_s: int = 0) -> None:
        for _ in range(n):
            db_conn.execute(
                "INSERT INTO outbox (message_id, queue, actor, payload, available_at, created_at)"
                " VALUES (%s, %s, 'x', %s, CASE WHEN %s THEN clock_timestamp() + interval '1 hour'"
                " ELSE '-infinity' END, clock_timestamp() - make_interval(secs => %s))",
                (uuid.uuid4(), queue, Jsonb({"tenant_id": tenant_id}), later, age_s))

    try:
        add(hotel["id"], 3, age_s=90)
        add(hotel["id"], 2, later=True)
        add(hostile, 1)
        ranked = rank([r for r in read(db_conn) if r["queue"] == queue], 10)[queue]
        assert [(t.tenant_id, t.waiting, t.later) for t in ranked.top] == [(hotel["id"], 3, 2), (hostile, 1, 0)]
        now_ms = db_conn.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms").fetchone()
        assert 90_000 <= now_ms["ms"] - ranked.top[0].oldest_ms < 120_000
        assert names(db_conn, [t.tenant_id for t in ranked.top]) == {hotel["id"]: hotel["name"]}
    finally:
        db_conn.execute("DELETE FROM outbox WHERE queue = %s", (queue,))
