"""Webhook endpoints of the caller's tenant, their delivery log, and replay.

Tenant-scoped like bookings: every query names the caller's tenant, and another
tenant's endpoint or delivery is as absent (404) as a missing one.  Bad input
is 422 naming the field and changes nothing.  The signing secret is generated
here and shown only in the answers to creation and rotation.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, g, json, request
from pydantic import ValidationError

from booking_api import webhooks_contract as wc
from booking_api.auth import actor_name
from booking_api.bookings_views import _json_body
from booking_api.database import get_db, settings
from booking_api.problems import ApiError
from booking_api.validation import field_errors, validate_query
from booking_core.webhooks import deliveries, endpoints
from booking_core.webhooks.payload import message_id
from booking_core.webhooks.sealing import Sealer

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")


def _sealer() -> Sealer:
    keys = settings().webhooks_keys
    if not keys:
        raise ApiError(503, "webhooks-not-configured",
                       "Webhooks are not configured on this platform (BOOKING_WEBHOOKS_KEY is not set).")
    return Sealer(list(keys))


def _checked(data: object, *, partial: bool) -> dict:
    try:
        return endpoints.check(data, partial=partial, allowed=settings().webhooks_allowed_networks)
    except endpoints.FieldError as e:
        field = "" if e.field == "body" else e.field[:50]
        raise ApiError(422, "invalid-endpoint", "Some fields are invalid.",
                       errors=[{"field": field, "message": e.message}]) from None


def _model(model, data: object):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ApiError(422, "invalid-request", "Some fields are invalid.", errors=field_errors(e)) from None


def _endpoint_json(row: dict, secret: str | None = None) -> dict:
    model = wc.WebhookEndpoint if secret is None else wc.WebhookEndpointWithSecret
    return model(**{k: row[k] for k in wc.WebhookEndpoint.model_fields},
                 **({"secret": secret} if secret else {})).model_dump(mode="json")


def _delivery_json(row: dict, detail: bool = False) -> dict:
    model = wc.WebhookDeliveryDetail if detail else wc.WebhookDelivery
    fields = {k: row[k] for k in model.model_fields if k != "webhook_id"}
    return model(**fields, webhook_id=message_id(row["event_id"])).model_dump(mode="json")


def _endpoint_or_404(endpoint_id: str) -> dict:
    row = endpoints.get(get_db(), g.identity["tenant_id"], endpoint_id)
    if row is None:
        raise ApiError(404, "not-found", "No such webhook endpoint.")
    return row


@bp.post("/endpoints")
def create_endpoint():
    fields = _checked(_json_body(), partial=False)
    row, secret = endpoints.create(get_db(), _sealer(), g.identity["tenant_id"], fields)
    resp = Response(json.dumps(_endpoint_json(row, secret)), status=201, mimetype="application/json")
    resp.headers["Location"] = f"/api/v1/webhooks/endpoints/{row['id']}"
    resp.headers["Cache-Control"] = "no-store"  # it holds the secret
    return resp


@bp.get("/endpoints")
def list_endpoints():
    return {"items": [_endpoint_json(r) for r in endpoints.list_(get_db(), g.identity["tenant_id"])]}


@bp.get("/endpoints/<endpoint_id>")
def get_endpoint(endpoint_id: str):
    return _endpoint_json(_endpoint_or_404(endpoint_id))


@bp.patch("/endpoints/<endpoint_id>")
def update_endpoint(endpoint_id: str):
    data = _json_body()
    _endpoint_or_404(endpoint_id)
    fields = _checked(data, partial=True)
    if not fields:
        raise ApiError(422, "invalid-endpoint", "Nothing to change.",
                       errors=[{"field": "", "message": f"give one of {', '.join(endpoints.FIELDS)}"}])
    row = endpoints.update(get_db(), g.identity["tenant_id"], endpoint_id, fields)
    if row is None:
        raise ApiError(404, "not-found", "No such webhook endpoint.")
    return _endpoint_json(row)


@bp.delete("/endpoints/<endpoint_id>")
def delete_endpoint(endpoint_id: str):
    if not endpoints.delete(get_db(), g.identity["tenant_id"], endpoint_id):
        raise ApiError(404, "not-found", "No such webhook endpoint.")
    return Response(status=204)


@bp.post("/endpoints/<endpoint_id>/rotate-secret")
def rotate_secret(endpoint_id: str):
    data = _json_body() if request.content_length or request.mimetype else {}
    req = _model(wc.RotateRequest, data)
    overlap = settings().webhooks_rotation_overlap_seconds if req.overlap_seconds is None else req.overlap_seconds
    done = endpoints.rotate(get_db(), _sealer(), g.identity["tenant_id"], endpoint_id, overlap_seconds=overlap)
    if done is None:
        raise ApiError(404, "not-found", "No such webhook endpoint.")
    resp = Response(json.dumps(_endpoint_json(*done)), mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/endpoints/<endpoint_id>/deliveries")
def list_deliveries(endpoint_id: str):
    endpoint = _endpoint_or_404(endpoint_id)
    q = validate_query(wc.DeliveryQuery, request.args)
    rows = deliveries.page(get_db(), g.identity["tenant_id"], endpoint["id"], state=q.state, limit=q.limit)
    return {"items": [_delivery_json(r) for r in rows]}


@bp.get("/deliveries/<delivery_id>")
def get_delivery(delivery_id: str):
    row = deliveries.get(get_db(), g.identity["tenant_id"], delivery_id)
    if row is None:
        raise ApiError(404, "not-found", "No such delivery.")
    return _delivery_json(row, detail=True)


@bp.post("/deliveries/<delivery_id>/replay")
def replay_delivery(delivery_id: str):
    outcome = deliveries.replay(get_db(), g.identity["tenant_id"], delivery_id, actor=actor_name())
    if outcome is None:
        raise ApiError(404, "not-found", "No such delivery.")
    if outcome == "open":
        raise ApiError(409, "delivery-open", "The delivery is still being tried; replay it once it is dead or "
                                             "delivered.")
    return Response(json.dumps({"status": "replayed"}), status=202, mimetype="application/json")


@bp.post("/endpoints/<endpoint_id>/replay")
def replay_since(endpoint_id: str):
    req = _model(wc.ReplaySinceRequest, _json_body())
    try:
        since = datetime.fromisoformat(req.since)
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise ApiError(422, "invalid-request", "Some fields are invalid.",
                       errors=[{"field": "since", "message": "must be an ISO 8601 date-time with a time zone"}])
    endpoint = _endpoint_or_404(endpoint_id)
    n = deliveries.replay_since(get_db(), g.identity["tenant_id"], endpoint["id"], since, dry_run=req.dry_run,
                                actor=actor_name())
    return {"matched": n, "dry_run": req.dry_run}
