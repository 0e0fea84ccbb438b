"""/ops/audit: a booking's audit entries (who did what to it), and a tenant's chain verified.

Both are booking_core.audit.chain's: `entries_for_booking` and `verify`, the same
check `bookingctl audit verify` runs.  Verification walks the tenant's whole
chain, so it runs only for the tenant asked for, when asked.
"""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from booking_events import ops_data
from booking_events.keys import SETTINGS
from booking_events.ops_auth import operator_required
from booking_events.ops_render import error, page


@operator_required
async def audit_page(request: web.Request) -> web.StreamResponse:
    """GET /ops/audit?booking=<id>&tenant=<name>: either or both, each a GET form."""
    settings = request.app[SETTINGS]
    booking_id = request.query.get("booking", "").strip()
    tenant = request.query.get("tenant", "").strip()
    booking, entries, report = None, None, None
    if booking_id:
        try:
            booking_id = str(uuid.UUID(booking_id))
        except ValueError:
            return error(request, 400, "Invalid booking id",
                         "The field “booking” must be a booking id (a UUID). Nothing was looked up.")
        booking, entries = await asyncio.to_thread(ops_data.booking_audit, settings, booking_id)
    tenants = await asyncio.to_thread(ops_data.tenant_list, settings)
    if tenant:
        tid = next((t["id"] for t in tenants if t["name"] == tenant), None)
        if tid is None:
            return error(request, 400, "Unknown tenant", f"The field “tenant”: no tenant is called “{tenant}”.")
        report = await asyncio.to_thread(ops_data.verify_tenant, settings, tid)
    return page(request, "audit.html", booking_id=booking_id, booking=booking, entries=entries,
                tenant=tenant, tenants=tenants, report=report)
