"""Tenants' plans: the bounds named field by field, the default from settings, one row per tenant."""

from __future__ import annotations

import psycopg
import pytest

from booking_core.config import Settings
from booking_core.model import plans
from booking_core.model.plans import InvalidPlan, Plan


@pytest.mark.parametrize(("plan", "field"), [
    (Plan("Gold", 10, 10, 1), "name"),
    (Plan("", 10, 10, 1), "name"),
    (Plan("gold", 0, 10, 1), "rate_per_second"),
    (Plan("gold", -1, 10, 1), "rate_per_second"),
    (Plan("gold", 100_001, 10, 1), "rate_per_second"),
    (Plan("gold", float("nan"), 10, 1), "rate_per_second"),
    (Plan("gold", True, 10, 1), "rate_per_second"),
    (Plan("gold", 10, 0, 1), "burst"),
    (Plan("gold", 10, 2.5, 1), "burst"),
    (Plan("gold", 10, 10, 0), "weight"),
    (Plan("gold", 10, 10, 1001), "weight"),
])
def test_a_plan_out_of_bounds_is_refused_naming_the_field(plan, field):
    with pytest.raises(InvalidPlan) as e:
        plans.check(plan)
    assert e.value.field == field


def test_the_default_plan_comes_from_settings_and_a_bad_one_stops_the_start():
    env = {"DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"}
    assert plans.default_plan(Settings.from_env(env)) == Plan("default", 50.0, 500, 1)
    tuned = Settings.from_env({**env, "BOOKING_PLAN_DEFAULT_RATE": "2.5", "BOOKING_PLAN_DEFAULT_BURST": "7",
                               "BOOKING_PLAN_DEFAULT_WEIGHT": "3"})
    assert plans.default_plan(tuned) == Plan("default", 2.5, 7, 3)
    for name, value in [("BOOKING_PLAN_DEFAULT_RATE", "0"), ("BOOKING_PLAN_DEFAULT_RATE", "fast"),
                        ("BOOKING_PLAN_DEFAULT_BURST", "0"), ("BOOKING_PLAN_DEFAULT_WEIGHT", "1001")]:
        with pytest.raises(ValueError, match=name):
            Settings.from_env({**env, name: value})


def test_a_tenant_is_on_the_default_plan_until_given_one_and_back_after_a_reset(db_conn, tenant):
    default = Plan("default", 50.0, 500, 1)
    assert plans.own_plan(db_conn, tenant["id"]) is None
    assert plans.plan_of(db_conn, tenant["id"], default) == default
    gold = Plan("gold", 12.5, 40, 4)
    plans.set_plan(db_conn, tenant["id"], gold, actor="test")
    assert plans.plan_of(db_conn, tenant["id"], default) == gold
    plans.set_plan(db_conn, tenant["id"], Plan("gold", 12.5, 40, 5), actor="test")  # one row, updated
    assert plans.weights(db_conn, [tenant["id"]], 1) == {tenant["id"]: 5}
    assert plans.reset_plan(db_conn, tenant["id"]) is True
    assert plans.reset_plan(db_conn, tenant["id"]) is False
    assert plans.weights(db_conn, [tenant["id"]], 2) == {tenant["id"]: 2}


def test_the_table_refuses_what_check_refuses(db_conn, tenant):
    with pytest.raises(psycopg.errors.CheckViolation):
        db_conn.execute("INSERT INTO tenant_plans (tenant_id, name, rate_per_second, burst, weight, updated_by)"
                        " VALUES (%s, 'gold', 10, 10, 0, 'test')", (tenant["id"],))


def test_limits_are_on_unless_turned_off_and_a_bad_value_names_the_variable():
    env = {"DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"}
    assert Settings.from_env(env).limits_enabled is True
    assert Settings.from_env({**env, "BOOKING_LIMITS_ENABLED": "false"}).limits_enabled is False
    assert Settings.from_env({**env, "BOOKING_LIMITS_ENABLED": "1"}).limits_enabled is True
    with pytest.raises(ValueError, match="BOOKING_LIMITS_ENABLED"):
        Settings.from_env({**env, "BOOKING_LIMITS_ENABLED": "sometimes"})
