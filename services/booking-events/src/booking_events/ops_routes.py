"""The ops console's routes under /ops/, and its vendored assets under /ops/assets/."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from booking_events import ops_audit, ops_auth, ops_deadletters, ops_queues, ops_tenants, ops_webhooks

_UUID = "{dead_id:[0-9a-fA-F-]{36}}"


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/ops/")


def add_routes(app: web.Application) -> None:
    app.router.add_static("/ops/assets/", str(resources.files("booking_events") / "static" / "ops"),
                          name="ops-assets")
    app.router.add_get("/ops", _slash)
    app.router.add_get("/ops/", ops_auth.sign_in_page)
    app.router.add_post("/ops/sign-in", ops_auth.sign_in)
    app.router.add_post("/ops/sign-out", ops_auth.sign_out)
    app.router.add_get("/ops/queues", ops_queues.queues_page)
    app.router.add_get("/ops/queues/stream", ops_queues.queues_stream)
    app.router.add_post("/ops/queues/{queue}/{action:pause|resume}", ops_queues.pause_or_resume)
    app.router.add_get("/ops/dead-letters", ops_deadletters.list_letters)
    app.router.add_get("/ops/dead-letters/bulk", ops_deadletters.confirm_bulk)
    app.router.add_post("/ops/dead-letters/bulk", ops_deadletters.start_bulk)
    app.router.add_get(f"/ops/dead-letters/{_UUID}", ops_deadletters.letter)
    app.router.add_post(f"/ops/dead-letters/{_UUID}/{{action:requeue|discard}}", ops_deadletters.act_on_letter)
    app.router.add_get("/ops/jobs/{job_id}", ops_deadletters.job_page)
    app.router.add_get("/ops/jobs/{job_id}/stream", ops_deadletters.job_stream)
    app.router.add_get("/ops/audit", ops_audit.audit_page)
    app.router.add_get("/ops/tenants", ops_tenants.tenants_page)
    app.router.add_post("/ops/tenants/{action:set|reset}", ops_tenants.change_plan)
    app.router.add_get("/ops/webhooks", ops_webhooks.endpoints_page)
    app.router.add_get("/ops/webhooks/endpoints/{endpoint_id:[0-9a-fA-F-]{36}}", ops_webhooks.endpoint_page)
    app.router.add_post("/ops/webhooks/deliveries/{delivery_id:[0-9a-fA-F-]{36}}/replay", ops_webhooks.replay)
