"""Tenants' plans (admin tokens only): list, show, set, reset; each change audited and applied at once.

The work is `booking_core.ops.tenant_plans`, shared with `booking-admin tenants`
and the ops console.  After a change commits, every API process is told through
the plans' generation in Redis (its next limiter decision drops its cached plans),
and this process drops its own cache at once.
"""

from __future__ import annotations

from flask import Blueprint, request
from pydantic import ValidationError

from booking_api.admission import admission
from booking_api.auth import actor_name, admin_required
from booking_api.bookings_views import _json_body
from booking_api.database import get_db, get_redis
from booking_api.ops_contract import PlanBody, TenantQuery
from booking_api.problems import ApiError
from booking_api.validation import field_errors, validate_query
from booking_core.model.plans import InvalidPlan, Plan
from booking_core.ops import tenant_plans

bp = Blueprint("ops_plans", __name__, url_prefix="/api/v1/ops/tenants")


def _target(tenant: str) -> tenant_plans.TenantPlan:
    found = tenant_plans.find(get_db(), tenant[:200], admission().default)
    if found is None:
        raise ApiError(404, "not-found", "No such tenant (give its name or id).")
    return found


def _applied(result: tuple[tenant_plans.TenantPlan, bool]) -> dict:
    now, changed = result
    if changed:
        admission().forget_plans()
        tenant_plans.announce(get_redis())
    return now.as_dict() | {"changed": changed}


@bp.get("")
@admin_required
def list_tenants():
    """Customer tenants by name, each with its plan (own or default)."""
    q = validate_query(TenantQuery, request.args)
    found = tenant_plans.list_tenants(get_db(), admission().default, limit=q.limit + 1, after=q.after)
    more = len(found) > q.limit
    found = found[:q.limit]
    return {"items": [t.as_dict() for t in found], "next_after": found[-1].tenant if more else None}


@bp.get("/<tenant>")
@admin_required
def show(tenant: str):
    """One tenant's plan, by name or id."""
    return _target(tenant).as_dict()


@bp.put("/<tenant>/plan")
@admin_required
def set_plan(tenant: str):
    """Give the tenant a plan of its own (every field required); audited; applies within one request."""
    try:
        body = PlanBody.model_validate(_json_body())
    except ValidationError as e:
        raise ApiError(422, "invalid-plan", "Some fields are invalid.", errors=field_errors(e)) from None
    target = _target(tenant)
    plan = Plan(body.name, float(body.rate_per_second), body.burst, body.weight)
    try:
        return _applied(tenant_plans.set_plan(get_db(), target, plan, actor=actor_name(),
                                              default=admission().default))
    except InvalidPlan as e:
        raise ApiError(422, "invalid-plan", "Some fields are invalid.",
                       errors=[{"field": e.field, "message": e.message}]) from None


@bp.delete("/<tenant>/plan")
@admin_required
def reset_plan(tenant: str):
    """Put the tenant back on the default plan; audited."""
    return _applied(tenant_plans.reset_plan(get_db(), _target(tenant), actor=actor_name(),
                                            default=admission().default))
