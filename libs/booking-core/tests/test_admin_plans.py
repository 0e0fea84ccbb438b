"""`booking-admin tenants` / `bookingctl tenants` on real Postgres and Redis: list, show, set-plan, reset-plan."""

from __future__ import annotations

import json

import pytest
import redis

from booking_core.audit import chain
from booking_core.model import buckets, plans
from booking_core.ops import admin
from booking_core.queues.pauses import OPS_TENANT_ID


@pytest.fixture
def env(settings, monkeypatch):
    for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url)):
        monkeypatch.setenv(name, value)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        admin.main(list(argv))
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def audited(db_conn, tenant_id: str) -> list[dict]:
    """The ops chain's plan events about `tenant_id`, oldest first (still in the outbox: no relay runs here)."""
    return [r["payload"] for r in db_conn.execute(
        "SELECT payload FROM outbox WHERE payload->>'tenant_id' = %s AND payload->>'kind' LIKE 'plan.%%'"
        " AND payload->'details'->>'tenant_id' = %s ORDER BY id", (OPS_TENANT_ID, tenant_id))]


def generation(settings) -> int:
    return int(redis.Redis.from_url(settings.redis_url).get(buckets.GENERATION_KEY) or 0)


def test_set_show_and_reset_a_plan_each_change_audited_in_the_ops_chain(env, settings, db_conn, tenant, capsys):
    name = tenant["name"]
    code, out, _ = run(capsys, "tenants", "show", name)
    assert code == 0 and out == f"{name}: plan default: 50/s, burst 500, weight 1 (default)\n"
    before = generation(settings)
    code, out, _ = run(capsys, "tenants", "set-plan", name, "--name", "gold", "--rate", "20", "--burst", "200")
    assert code == 0 and out.startswith(f"{name}: plan gold: 20/s, burst 200, weight 1 (own, set by {admin.who()}")
    assert plans.own_plan(db_conn, tenant["id"]) == plans.Plan("gold", 20.0, 200, 1)
    assert generation(settings) == before + 1  # every API process drops its cached plans
    # Fields not given keep their value; the same plan again changes and audits nothing.
    assert run(capsys, "tenants", "set-plan", name, "--weight", "3")[0] == 0
    assert plans.own_plan(db_conn, tenant["id"]) == plans.Plan("gold", 20.0, 200, 3)
    assert run(capsys, "tenants", "set-plan", name, "--weight", "3")[1].endswith("(unchanged)\n")
    shown = json.loads(run(capsys, "tenants", "show", tenant["id"], "--json")[1])
    assert shown["own"] is True and shown["plan"] == {"name": "gold", "rate_per_second": 20.0, "burst": 200,
                                                      "weight": 3}
    assert run(capsys, "tenants", "reset-plan", name)[1] == f"{name}: plan default: 50/s, burst 500, weight 1 " \
                                                            "(default)\n"
    assert run(capsys, "tenants", "reset-plan", name)[1].endswith("(unchanged)\n")
    assert plans.own_plan(db_conn, tenant["id"]) is None
    events = audited(db_conn, tenant["id"])
    assert [e["kind"] for e in events] == ["plan.changed", "plan.changed", "plan.reset"]
    assert {e["actor"] for e in events} == {admin.who()}
    assert events[0]["details"]["before"] is None
    assert events[1]["details"]["before"]["weight"] == 1 and events[1]["details"]["after"]["weight"] == 3
    assert events[2]["details"] == {"tenant_id": tenant["id"], "tenant": name, "before": events[1]["details"]["after"],
                                    "after": None}


def test_the_audit_entries_join_the_ops_chain_and_keep_it_intact(env, settings, db_conn, tenant, capsys):
    run(capsys, "tenants", "set-plan", tenant["name"], "--rate", "5")
    (event,) = audited(db_conn, tenant["id"])
    assert chain.append(db_conn, event)  # what the audit worker does with it
    (report,) = chain.verify(db_conn, OPS_TENANT_ID)
    assert report.ok and report.entries >= 1


@pytest.mark.parametrize(("argv", "field"), [
    (("--rate", "0"), "rate_per_second"),
    (("--rate", "100001"), "rate_per_second"),
    (("--rate", "nan"), "rate_per_second"),
    (("--burst", "0"), "burst"),
    (("--weight", "1001"), "weight"),
    (("--name", "Gold Plan"), "name"),
])
def test_a_bad_plan_is_refused_naming_the_field_and_changes_nothing(env, settings, db_conn, tenant, capsys, argv,
                                                                     field):
    before = generation(settings)
    code, out, err = run(capsys, "tenants", "set-plan", tenant["name"], *argv)
    assert code == 2 and out == "" and err.startswith(f"error: {field}: ")
    assert plans.own_plan(db_conn, tenant["id"]) is None
    assert audited(db_conn, tenant["id"]) == [] and generation(settings) == before


def test_an_unknown_tenant_is_said_so(env, capsys):
    assert run(capsys, "tenants", "set-plan", "no-such-tenant", "--rate", "5") == (
        1, "", "no tenant named 'no-such-tenant'\n")


def test_list_shows_each_tenant_with_its_plan_but_not_the_platforms_own(env, db_conn, tenant, capsys):
    run(capsys, "tenants", "set-plan", tenant["name"], "--name", "silver", "--burst", "9")
    code, out, _ = run(capsys, "tenants", "list", "--json")
    listed = {t["tenant"]: t for t in json.loads(out)}
    assert code == 0 and "platform-ops" not in listed
    assert listed[tenant["name"]]["plan"]["name"] == "silver" and listed[tenant["name"]]["plan"]["burst"] == 9
    text = run(capsys, "tenants", "list")[1].splitlines()
    assert text[0].split() == ["TENANT", "PLAN", "RATE/S", "BURST", "WEIGHT", "OWN"]
    assert [line.split()[:5] for line in text if line.startswith(tenant["name"] + " ")] == [
        [tenant["name"], "silver", "50", "9", "1"]]
