"""The fair relay on real Postgres and Redis: a bounded publish-ahead, filled tenant by tenant."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

from psycopg.types.json import Jsonb

from booking_core import db
from booking_core.model import plans, tenants
from booking_core.worker.broker import make_broker
from booking_scaling.depth import QueueReader
from booking_scaling.layout import Layout
from outbox_relay import Relay
from outbox_relay.fair import publish_fair
from relay_helpers import create_bookings


def other_tenant(db_conn) -> dict:
    return tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")


def ready_tenants(broker, namespace: str, queue: str) -> list[str]:
    """The tenant of each ready message of `queue`, first to be fetched first."""
    layout = Layout(namespace)
    ids = broker.client.lrange(layout.ready(queue), 0, -1)
    bodies = broker.client.hmget(layout.ready_messages(queue), ids) if ids else []
    return [json.loads(b)["kwargs"].get("tenant_id", "") for b in bodies]


def take(broker, namespace: str, queue: str, n: int) -> None:
    """What n workers finishing a message each do to the list: the oldest n are gone."""
    layout = Layout(namespace)
    for redis_id in broker.client.lpop(layout.ready(queue), n) or []:
        broker.client.hdel(layout.ready_messages(queue), redis_id)


def outbox_count(db_conn, queue: str) -> int:
    return db_conn.execute("SELECT count(*) AS n FROM outbox WHERE queue = %s", (queue,)).fetchone()["n"]


def test_the_relay_keeps_only_the_publish_ahead_in_redis(settings, db_conn, tenant, fair_start):
    create_bookings(settings.database_url, tenant["id"], 40)
    relay = Relay(replace(settings, relay_ahead=10))
    with db.connect(settings.database_url, autocommit=True) as conn:
        assert relay.drain(conn) == 30
        assert relay.drain(conn) == 0  # full: nothing more until workers take some
    depth = {d.queue: d.ready for d in QueueReader(relay.broker.client, settings.redis_namespace).snapshot(
        ("email", "invoice", "audit"))}
    assert depth == {"email": 10, "invoice": 10, "audit": 10}
    assert outbox_count(db_conn, "email") == 30


def test_fifo_order_publishes_everything_at_once(settings, db_conn, tenant, fair_start):
    create_bookings(settings.database_url, tenant["id"], 40)
    relay = Relay(replace(settings, relay_ahead=10, relay_order="fifo"))
    with db.connect(settings.database_url, autocommit=True) as conn:
        assert relay.drain(conn) == 120
    assert outbox_count(db_conn, "email") == 0


def test_a_quiet_tenant_goes_next_behind_a_flood_even_with_another_relay(settings, db_conn, tenant,
                                                                         fair_start):
    noisy, quiet = tenant["id"], other_tenant(db_conn)["id"]
    create_bookings(settings.database_url, noisy, 100)
    first, second = (Relay(replace(settings, relay_ahead=10)) for _ in range(2))
    ns = settings.redis_namespace
    with db.connect(settings.database_url, autocommit=True) as a, \
            db.connect(settings.database_url, autocommit=True) as b:
        first.drain(a)
        take(first.broker, ns, "email", 3)
        first.drain(a)  # the flood keeps its queue full while it is alone
        assert ready_tenants(first.broker, ns, "email") == [str(noisy)] * 10
        create_bookings(settings.database_url, quiet, 1)
        take(first.broker, ns, "email", 1)
        second.drain(b)  # the other relay takes the next turn: the state is in Postgres
    assert ready_tenants(first.broker, ns, "email")[-1] == str(quiet)
    assert outbox_count(db_conn, "email") == 100 - 10 - 3


def test_weights_from_plans_share_the_publish_ahead(settings, db_conn, tenant, fair_start):
    gold, basic = tenant["id"], other_tenant(db_conn)["id"]
    plans.set_plan(db_conn, gold, plans.Plan("gold", 50.0, 500, 3), actor="test")
    create_bookings(settings.database_url, basic, 60)
    create_bookings(settings.database_url, gold, 60)
    broker = make_broker(settings)
    with db.connect(settings.database_url, autocommit=True) as conn:
        assert publish_fair(conn, broker, "invoice", 40, settings.plan_default_weight) == 40
    published = ready_tenants(broker, settings.redis_namespace, "invoice")
    assert (published.count(str(gold)), published.count(str(basic))) == (30, 10)


def test_a_retry_waiting_out_its_backoff_stays_in_the_outbox(settings, db_conn, tenant, fair_start):
    create_bookings(settings.database_url, tenant["id"], 2)
    db_conn.execute("UPDATE outbox SET available_at = clock_timestamp() + interval '1 hour' WHERE queue = 'audit'")
    broker = make_broker(settings)
    with db.connect(settings.database_url, autocommit=True) as conn:
        assert publish_fair(conn, broker, "audit", 10, 1) == 0
        assert publish_fair(conn, broker, "email", 10, 1) == 2
    assert outbox_count(db_conn, "audit") == 2


def test_a_relay_that_does_not_hold_the_turn_publishes_nothing(settings, db_conn, tenant, fair_start):
    create_bookings(settings.database_url, tenant["id"], 3)
    broker = make_broker(settings)
    with db.connect(settings.database_url) as holder, db.connect(settings.database_url, autocommit=True) as conn:
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext('email'))", (0x66616972,))
        assert publish_fair(conn, broker, "email", 10, 1) == 0
        holder.rollback()
        assert publish_fair(conn, broker, "email", 10, 1) == 3


def test_webhook_deliveries_are_published_in_fair_order_by_tenant(settings, db_conn, tenant, fair_start):
    """A tenant with a flood of deliveries keeps the webhook queue to its publish-ahead; another goes next."""
    from booking_core.messaging import outbox
    from booking_core.messaging.contracts import WEBHOOK

    def deliveries(tenant_id: str, n: int) -> None:
        with db.connect(settings.database_url) as conn:
            outbox.add(conn, [outbox.OutboxMessage(WEBHOOK.queue, WEBHOOK.actor, {
                "delivery_id": str(uuid.uuid4()), "tenant_id": str(tenant_id)}) for _ in range(n)])

    noisy, quiet = tenant["id"], other_tenant(db_conn)["id"]
    deliveries(noisy, 50)
    relay = Relay(replace(settings, relay_ahead=10))
    ns = settings.redis_namespace
    with db.connect(settings.database_url, autocommit=True) as conn:
        assert relay.drain(conn) == 10
        assert ready_tenants(relay.broker, ns, "webhook") == [str(noisy)] * 10
        deliveries(quiet, 1)
        take(relay.broker, ns, "webhook", 1)
        assert relay.drain(conn) == 1
    assert ready_tenants(relay.broker, ns, "webhook")[-1] == str(quiet)
    assert outbox_count(db_conn, "webhook") == 40


#: The turn's first query as it was: every due row of the queue grouped by tenant (the reference).
GROUPED = ("SELECT tenant_id, count(*)::int AS n, min(id) AS head FROM outbox"
           " WHERE queue = %(queue)s AND available_at <= clock_timestamp() GROUP BY tenant_id")


def test_a_turn_reads_the_tenants_as_counting_every_row_did_and_publishes_the_same_order(
        settings, db_conn, tenant, fair_start, monkeypatch):
    from outbox_relay import fair

    others = [other_tenant(db_conn) for _ in range(3)]
    for t, n in zip([tenant, *others], (40, 3, 17, 1), strict=True):
        create_bookings(settings.database_url, t["id"], n)
    # Retries waiting out their backoff, among the due rows and at the heads: a turn must skip them.
    # (Every third email row by order, not by id: a booking's three rows take consecutive ids.)
    db_conn.execute("UPDATE outbox SET available_at = clock_timestamp() + interval '1 hour' WHERE id IN"
                    " (SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM outbox"
                    " WHERE queue = 'email') r WHERE k %% 3 = 0) OR id = (SELECT min(id) FROM outbox"
                    " WHERE queue = 'email' AND tenant_id = %s)", (others[1]["id"],))
    db_conn.execute("INSERT INTO outbox (message_id, queue, actor, payload) VALUES (%s, 'email', 'x', '{}')",
                    (uuid.uuid4(),))  # a row of no tenant is a tenant of its own ('')
    budget = 10
    with db.connect(settings.database_url) as conn:
        with conn.transaction(force_rollback=True):
            read = {r["tenant_id"]: (r["n"], r["head"]) for r in fair.due_tenants(conn, "email", budget)}
        grouped = {r["tenant_id"]: (min(r["n"], budget), r["head"]) for r in
                   conn.execute(GROUPED, {"queue": "email"}).fetchall()}
        conn.rollback()
        assert read == grouped and len(read) == 5
        assert sorted(n for n, _ in read.values()) == [1, 1, 2, 10, 10], "capped at the budget, not-due rows skipped"

        broker = make_broker(settings)
        orders = []
        for query in (GROUPED, fair.WAITING):
            monkeypatch.setattr(fair, "WAITING", query)
            with conn.transaction(force_rollback=True):  # three turns: the state carries from one to the next
                published = [fair.publish_fair(conn, broker, "email", budget, 1) for _ in range(3)]
                orders.append((published, ready_tenants(broker, settings.redis_namespace, "email")))
            broker.flush("email")
    assert orders[0] == orders[1] and orders[0][0] == [budget] * 3


#: Index and heap tuples this transaction has read from the outbox (its table and every index of it).
READ_SO_FAR = ("SELECT sum(pg_stat_get_xact_tuples_returned(oid) + pg_stat_get_xact_tuples_fetched(oid))::int AS n"
               " FROM pg_class WHERE oid = 'outbox'::regclass"
               " OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'outbox'::regclass)")


def test_another_tenants_retries_waiting_out_their_backoff_add_nothing_to_a_turn(settings, db_conn, tenant,
                                                                                  fair_start):
    """A quiet tenant's turn reads as many outbox tuples with another tenant's 20,000 rows not yet due as without."""
    noisy, quiet = tenant["id"], other_tenant(db_conn)["id"]
    create_bookings(settings.database_url, quiet, 1)
    broker = make_broker(settings)

    def read_by_a_turn() -> int:
        db_conn.execute("ANALYZE outbox")
        with db.connect(settings.database_url) as conn:
            with conn.transaction(force_rollback=True):
                before = conn.execute(READ_SO_FAR).fetchone()["n"]
                assert publish_fair(conn, broker, "email", 10, 1) == 1
                read = conn.execute(READ_SO_FAR).fetchone()["n"] - before
        broker.flush("email")
        return read

    alone = read_by_a_turn()
    db_conn.execute("INSERT INTO outbox (message_id, queue, actor, payload, available_at) SELECT gen_random_uuid(),"
                    " 'email', 'x', jsonb_build_object('tenant_id', %s::text), clock_timestamp() + interval '1 hour'"
                    " FROM generate_series(1, 20000)", (str(noisy),))
    beside = read_by_a_turn()
    # One tenant more costs a descent or two of the index (its first entry is not due), never its rows.
    assert beside <= alone + 5, (alone, beside)


def test_a_tenants_rows_go_in_the_order_they_became_due(settings, db_conn, tenant, fair_start):
    """A new row is due at its insert; a retry takes its place when its backoff ends, not at its insert."""
    def add(actor: str, due: str) -> None:
        db_conn.execute(f"INSERT INTO outbox (message_id, queue, actor, payload, available_at) VALUES"
                        f" (gen_random_uuid(), 'email', %s, %s, {due})", (actor, Jsonb({"tenant_id": tenant["id"]})))

    db_conn.execute("INSERT INTO outbox (message_id, queue, actor, payload) VALUES (gen_random_uuid(), 'email',"
                    " 'new', %s)", (Jsonb({"tenant_id": tenant["id"]}),))
    add("retry-due-earlier", "clock_timestamp() - interval '1 minute'")
    add("retry-not-due", "clock_timestamp() + interval '1 hour'")
    add("retry-due-now", "clock_timestamp()")
    broker = make_broker(settings)
    with db.connect(settings.database_url, autocommit=True) as conn:
        assert publish_fair(conn, broker, "email", 10, 1) == 3
    layout = Layout(settings.redis_namespace)
    ids = broker.client.lrange(layout.ready("email"), 0, -1)
    actors = [json.loads(b)["actor_name"] for b in broker.client.hmget(layout.ready_messages("email"), ids)]
    assert actors == ["retry-due-earlier", "new", "retry-due-now"]
