"""/ops/tenants: each tenant's plan (rate, burst, weight), and an operator's change of one, audited.

The work is `booking_core.ops.tenant_plans`, the same functions `booking-admin
tenants` and the admin API call: the change and its audit entry (in the
platform's ops chain, as this operator) commit together, then every API process
is told through Redis.  A field out of bounds is a 400 page naming it, and
nothing changes.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from booking_core.config import Settings
from booking_core.model.plans import InvalidPlan, Plan, default_plan
from booking_core.ops import tenant_plans
from booking_events.keys import OPS_FORM, OPS_SESSION, REDIS, SETTINGS
from booking_events.ops_auth import operator_required
from booking_events.ops_data import conn
from booking_events.ops_render import error, page

#: Tenants shown on one page, by name; `?after=<the last name shown>` is the next page.
PAGE = 500
#: Longer than any tenant name can be (`booking_core.model.tenants`): a longer `after` names nobody.
_MAX_AFTER = 200


def _listing(settings: Settings, after: str | None) -> tuple[list[tenant_plans.TenantPlan], Plan]:
    default = default_plan(settings)
    with conn(settings) as c:
        return tenant_plans.list_tenants(c, default, limit=PAGE, after=after), default


@operator_required
async def tenants_page(request: web.Request) -> web.StreamResponse:
    """GET /ops/tenants[?after=NAME]: a page of tenants' plans, and the form to change any tenant's.

    Paged, because a platform with thousands of tenants must still reach each of them here.
    """
    after = request.query.get("after") or None
    if after is not None and len(after) > _MAX_AFTER:
        return error(request, 400, "Bad page", f"after: at most {_MAX_AFTER} characters.")
    found, default = await asyncio.to_thread(_listing, request.app[SETTINGS], after)
    next_after = found[-1].tenant if len(found) == PAGE else None
    return page(request, "tenants.html", tenants=found, default=default, after=after, next_after=next_after)


def _number(form: dict, field: str, kind):
    raw = (form.get(field) or "").strip()
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise InvalidPlan(field, f"must be {what}, got {raw[:20]!r}") from None


def _change(settings: Settings, tenant: str, form: dict | None, actor: str) -> tuple[tenant_plans.TenantPlan, bool]:
    """Set (`form` given) or reset the tenant's plan; LookupError for an unknown tenant, InvalidPlan for a bad field."""
    default = default_plan(settings)
    plan = None
    if form is not None:
        plan = Plan((form.get("name") or "").strip(), _number(form, "rate_per_second", float),
                    _number(form, "burst", int), _number(form, "weight", int))
    with conn(settings) as c:
        target = tenant_plans.find(c, tenant, default)
        if target is None:
            raise LookupError(tenant)
        if plan is None:
            return tenant_plans.reset_plan(c, target, actor=actor, default=default)
        return tenant_plans.set_plan(c, target, plan, actor=actor, default=default)


@operator_required
async def change_plan(request: web.Request) -> web.StreamResponse:
    """POST /ops/tenants/{set|reset} (the tenant a form field): change the plan as this operator (audited)."""
    action = request.match_info["action"]
    tenant = (request[OPS_FORM].get("tenant") or "").strip()[:200]
    form = request[OPS_FORM] if action == "set" else None
    try:
        _, changed = await asyncio.to_thread(_change, request.app[SETTINGS], tenant, form,
                                             request[OPS_SESSION].operator)
    except LookupError:
        return error(request, 404, "Unknown tenant", "No tenant has that name. Nothing was changed.")
    except InvalidPlan as e:
        return error(request, 400, "Plan not changed", f"The field “{e.field}” {e.message}. Nothing was changed.")
    if changed:
        await asyncio.to_thread(tenant_plans.announce, request.app[REDIS])
    raise web.HTTPSeeOther("/ops/tenants")
