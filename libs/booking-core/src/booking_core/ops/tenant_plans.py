"""Operators' view and changes of tenants' plans: list, show, set, reset, each change audited.

`booking-admin tenants …`, the admin API (`/api/v1/ops/tenants`) and the ops
console all call these functions; there is no second implementation.  A change
is audited as a queue pause is: the audit message goes to the outbox in the
transaction that changes the row, in the chain of the platform's own tenant
(`pauses.OPS_TENANT_ID`), with who did it and the plan before and after.  Setting
the plan a tenant already has, or resetting one already on the default, changes
nothing and audits nothing.

Every API process caches plans for a few seconds; after a change commits,
`announce` increments the plans' generation in Redis, which every process's next
limiter decision reads, so the new plan applies at once.  If Redis is down the
caches expire on their own (the API's `BOOKING_API_PLAN_CACHE_SECONDS`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
import redis

from booking_core.messaging import outbox
from booking_core.model import buckets, plans
from booking_core.model.plans import Plan
from booking_core.queues.pauses import OPS_TENANT_ID
from booking_core.tasks.deadletters import audit_event

log = logging.getLogger(__name__)

_SELECT = (
    "SELECT t.id::text AS tenant_id, t.name AS tenant, p.name, p.rate_per_second, p.burst, p.weight,"
    " p.updated_at, p.updated_by FROM tenants t LEFT JOIN tenant_plans p ON p.tenant_id = t.id")


@dataclass(frozen=True)
class TenantPlan:
    """A tenant and the plan it is on: its own (`own`, with who set it and when) or the default."""

    tenant_id: str
    tenant: str
    plan: Plan
    own: bool
    updated_at: datetime | None = None
    updated_by: str | None = None

    def as_dict(self) -> dict:
        out = {"tenant_id": self.tenant_id, "tenant": self.tenant, "own": self.own, "plan": asdict(self.plan)}
        if self.own:
            out |= {"updated_at": self.updated_at.isoformat(), "updated_by": self.updated_by}
        return out


def _from_row(row: dict, default: Plan) -> TenantPlan:
    if row["name"] is None:
        return TenantPlan(row["tenant_id"], row["tenant"], default, own=False)
    return TenantPlan(row["tenant_id"], row["tenant"],
                      Plan(row["name"], row["rate_per_second"], row["burst"], row["weight"]), own=True,
                      updated_at=row["updated_at"], updated_by=row["updated_by"])


def list_tenants(conn: psycopg.Connection, default: Plan, *, limit: int = 100,
                 after: str | None = None) -> list[TenantPlan]:
    """Customer tenants by name (after `after`), each with its plan; the platform's own tenant is left out."""
    rows = conn.execute(_SELECT + " WHERE t.id <> %s AND (%s::text IS NULL OR t.name > %s) ORDER BY t.name LIMIT %s",
                        (OPS_TENANT_ID, after, after, limit)).fetchall()
    return [_from_row(r, default) for r in rows]


def find(conn: psycopg.Connection, tenant: str, default: Plan) -> TenantPlan | None:
    """The customer tenant named `tenant` (or with that id), with its plan; None when there is none."""
    row = conn.execute(_SELECT + " WHERE t.id <> %s AND (t.name = %s OR t.id::text = %s)",
                       (OPS_TENANT_ID, tenant, tenant)).fetchone()
    return _from_row(row, default) if row else None


def _audit(kind: str, target: TenantPlan, actor: str, after: Plan | None) -> outbox.OutboxMessage:
    details = {"tenant_id": target.tenant_id, "tenant": target.tenant,
               "before": asdict(target.plan) if target.own else None,
               "after": asdict(after) if after else None}
    event = audit_event(kind=kind, tenant_id=OPS_TENANT_ID, booking_id=None, actor=actor, details=details)
    if event is None:  # only without a tenant, and one is given
        raise RuntimeError("no audit event for a change of plan")
    return event


def _locked(conn: psycopg.Connection, target: TenantPlan, default: Plan) -> TenantPlan:
    """The tenant's plan as it is now, its row locked until the transaction ends (lock order: rank 8)."""
    row = conn.execute(_SELECT + " WHERE t.id = %s FOR NO KEY UPDATE OF t", (target.tenant_id,)).fetchone()
    return _from_row(row, default)


def set_plan(conn: psycopg.Connection, target: TenantPlan, plan: Plan, *, actor: str,
             default: Plan) -> tuple[TenantPlan, bool]:
    """Put `target` on `plan` (checked first: InvalidPlan names the field); (its plan now, whether it changed)."""
    plans.check(plan)
    with conn.transaction():
        now = _locked(conn, target, default)
        if now.own and now.plan == Plan(plan.name, float(plan.rate_per_second), plan.burst, plan.weight):
            return now, False
        plans.set_plan(conn, target.tenant_id, plan, actor=actor)
        outbox.add(conn, [_audit("plan.changed", now, actor, plan)])
    return find(conn, target.tenant_id, default), True


def reset_plan(conn: psycopg.Connection, target: TenantPlan, *, actor: str, default: Plan) -> tuple[TenantPlan, bool]:
    """Put `target` back on the default plan; (its plan now, whether it changed)."""
    with conn.transaction():
        now = _locked(conn, target, default)
        if not now.own:
            return now, False
        plans.reset_plan(conn, target.tenant_id)
        outbox.add(conn, [_audit("plan.reset", now, actor, None)])
    return find(conn, target.tenant_id, default), True


def announce(client: redis.Redis | None) -> bool:
    """Tell every API process to read plans again (after a change committed); False if Redis did not answer."""
    if client is None:
        return False
    try:
        buckets.bump_generation(client)
    except (redis.RedisError, OSError) as e:
        log.warning("plan changed, but Redis did not answer (%s): API processes pick it up within their plan "
                    "cache's lifetime", type(e).__name__)
        return False
    return True
