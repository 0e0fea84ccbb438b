"""Tenants' plans: the admission rate (a token bucket) and the fair-share weight of each tenant.

A plan is three numbers and a name: `rate_per_second` and `burst` bound how fast a
tenant's bookings are admitted (the accept path's limiter), `weight` is its share of
the workers while several tenants have work waiting (the relay's fair ordering).  A
tenant without a row in `tenant_plans` is on the default plan, built from settings
(`BOOKING_PLAN_DEFAULT_RATE`, `_BURST`, `_WEIGHT`), so the default is a deployment
value and changing it needs no SQL.  `check` is the one statement of the bounds in
Python (the table's CHECKs say them again for anything that writes without it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

DEFAULT_NAME = "default"
PLAN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MAX_RATE = 100_000.0
MAX_BURST = 1_000_000
MAX_WEIGHT = 1_000


class InvalidPlan(ValueError):
    """A plan field out of its bounds; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Plan:
    """What a tenant may do: admitted at `rate_per_second` with bursts of `burst`, served with `weight`."""

    name: str
    rate_per_second: float
    burst: int
    weight: int


def check(plan: Plan) -> Plan:
    """`plan` if every field is within its bounds, else InvalidPlan naming the first field that is not."""
    if not isinstance(plan.name, str) or not PLAN_NAME.fullmatch(plan.name):
        raise InvalidPlan("name", "1 to 63 characters: a-z, 0-9, '-' and '_', starting with a letter or digit")
    rate = plan.rate_per_second
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= MAX_RATE:
        raise InvalidPlan("rate_per_second", f"must be a number above 0 and at most {MAX_RATE:g}")
    if isinstance(plan.burst, bool) or not isinstance(plan.burst, int) or not 1 <= plan.burst <= MAX_BURST:
        raise InvalidPlan("burst", f"must be a whole number from 1 to {MAX_BURST}")
    if isinstance(plan.weight, bool) or not isinstance(plan.weight, int) or not 1 <= plan.weight <= MAX_WEIGHT:
        raise InvalidPlan("weight", f"must be a whole number from 1 to {MAX_WEIGHT}")
    return plan


def default_plan(settings) -> Plan:
    """The plan of every tenant without one of its own (from `booking_core.config.Settings`)."""
    return check(Plan(DEFAULT_NAME, settings.plan_default_rate, settings.plan_default_burst,
                      settings.plan_default_weight))


def own_plan(conn: psycopg.Connection, tenant_id: str) -> Plan | None:
    """The tenant's own plan, or None when it is on the default one."""
    row = conn.execute("SELECT name, rate_per_second, burst, weight FROM tenant_plans WHERE tenant_id = %s",
                       (tenant_id,)).fetchone()
    return Plan(**row) if row else None


def plan_of(conn: psycopg.Connection, tenant_id: str, default: Plan) -> Plan:
    """The plan `tenant_id` is on: its own, else `default`."""
    return own_plan(conn, tenant_id) or default


def weights(conn: psycopg.Connection, tenant_ids: list[str], default_weight: int) -> dict[str, int]:
    """Each tenant's fair-share weight (its plan's, else `default_weight`), in one query."""
    rows = conn.execute("SELECT tenant_id::text AS tenant_id, weight FROM tenant_plans WHERE tenant_id = ANY(%s)",
                        ([str(t) for t in tenant_ids],)).fetchall()
    own = {r["tenant_id"]: r["weight"] for r in rows}
    return {str(t): own.get(str(t), default_weight) for t in tenant_ids}


def set_plan(conn: psycopg.Connection, tenant_id: str, plan: Plan, *, actor: str) -> Plan:
    """Put the tenant on `plan` (checked first); the caller audits the change in the same transaction."""
    check(plan)
    conn.execute(
        "INSERT INTO tenant_plans (tenant_id, name, rate_per_second, burst, weight, updated_by)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id) DO UPDATE SET name = EXCLUDED.name,"
        " rate_per_second = EXCLUDED.rate_per_second, burst = EXCLUDED.burst, weight = EXCLUDED.weight,"
        " updated_at = clock_timestamp(), updated_by = EXCLUDED.updated_by",
        (tenant_id, plan.name, float(plan.rate_per_second), plan.burst, plan.weight, actor))
    return plan


def reset_plan(conn: psycopg.Connection, tenant_id: str) -> bool:
    """Put the tenant back on the default plan; False when it already was."""
    return conn.execute("DELETE FROM tenant_plans WHERE tenant_id = %s", (tenant_id,)).rowcount > 0
