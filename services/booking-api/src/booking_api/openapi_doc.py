"""The OpenAPI 3.1 document, generated: schemas from `contract.py`, paths from the table below.

Component schemas are pydantic's JSON Schema of the contract's models (the
same models that validate requests and shape responses); query parameters are
the fields of the query models; problem responses are named after the titles
in `problems.TITLES`.  `QueueDepth` and `DeadLetter` come from booking_core's
dataclasses, less the fields the API does not show.  What is left by hand is
what only a human can say: summaries, descriptions and which status each
operation can answer.  The tests check that every Flask route is documented
with the same methods and that real responses validate against these schemas.
"""

from __future__ import annotations

import copy
from functools import cache

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from booking_api import contract as c
from booking_api import ops_contract as oc
from booking_api import webhooks_contract as wc
from booking_core.web.problems import TITLES

_SCHEMAS = "#/components/schemas/{model}"


class _Schema(GenerateJsonSchema):
    """pydantic's generator, without a `title` on every property (the property name says it)."""

    def field_title_should_be_set(self, schema) -> bool:
        return False


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(model: type[BaseModel] | None, media: str = "application/json") -> dict:
    return {media: {"schema": _ref("schemas", model.__name__) if model else {"type": "object"}}}


def _problem_name(status: int) -> str:
    return TITLES[status].replace(" ", "")


def _ok(description: str, model: type[BaseModel] | None = None, *, content: dict | None = None,
        headers: dict | None = None) -> dict:
    """A success response: a model's JSON, other `content`, or no body when neither is given."""
    out = {"description": description}
    if model is not None or content is not None:
        out["content"] = content if content is not None else _json(model)
    return out | ({"headers": headers} if headers else {})


def _op(op_id: str, tag: str, summary: str, ok: tuple[int, dict], *problems: int, **more) -> dict:
    """One operation: its success `(status, response)`, then the statuses of its problem responses."""
    status, success = ok
    responses = {str(status): success} | {str(s): _ref("responses", _problem_name(s)) for s in problems}
    return {"operationId": op_id, "tags": [tag], "summary": summary, **more, "responses": responses}


def _query(model: type[BaseModel]) -> list[dict]:
    """The fields of a query model as OpenAPI query parameters."""
    schema = model.model_json_schema(schema_generator=_Schema)
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        if "anyOf" in prop:  # `X | None = None`: an absent parameter, never a JSON null
            prop = {**next(s for s in prop.pop("anyOf") if s.get("type") != "null"), **prop}
            prop.pop("default", None)
        param = {"name": name, "in": "query", "required": name in schema.get("required", ()), "schema": prop}
        out.append(param | ({"description": description} if description else {}))
    return out


_PUBLIC = {"security": []}
_PATH_BOOKING = {"name": "booking_id", "in": "path", "required": True,
                 "schema": {"type": "string", "format": "uuid"}}
_PATH_TENANT = {"name": "tenant", "in": "path", "required": True, "description": "The tenant's name or id.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
_PATH_QUEUE = {"name": "queue", "in": "path", "required": True,
               "schema": {"type": "string", "enum": list(c.QUEUES)}}
_PATH_DEAD = {"name": "dead_id", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "The `id` of a dead letter as listed."}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "IETF httpapi idempotency key (a structured-field string; quotes optional). The same key "
                   "and body replay the stored response; the same key with another body is 422; a request "
                   "with the key still in flight is 409. Keys are per tenant and expire after 24 hours.",
    "schema": {"type": "string", "pattern": c.IDEMPOTENCY_HEADER_PATTERN},
}
_ETAG = {"ETag": {"required": True, "description": "Strong validator: a hash of this exact body.",
                  "schema": {"type": "string", "pattern": '^"[0-9a-f]{32}"$'}}}
_IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False,
                  "description": "The `ETag` of a previous response; unchanged → 304.",
                  "schema": {"type": "string"}}


def _conditional(op: dict) -> dict:
    """Add the bodiless 304 that answers a matching `If-None-Match`."""
    op["responses"]["304"] = {"description": "Not modified since the given ETag.", "headers": _ETAG}
    return op


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
#: The IETF httpapi ratelimit-headers draft's fields, on every answer of a limited operation.
_RATE_LIMIT = {
    "RateLimit-Policy": {"description": 'The tenant\'s limit: `"bookings";q=<burst>;w=<seconds to refill it>`.',
                         "schema": {"type": "string"}},
    "RateLimit": {"description": 'What is left: `"bookings";r=<tokens left>;t=<seconds until full, or until '
                                 'one is back when refused>`.', "schema": {"type": "string"}},
}


def _with_job_started(op: dict) -> dict:
    """Add the 202 of a bulk action that started its job."""
    op["responses"]["202"] = _ok("Started: the job, as `GET` on its `Location` shows it.", oc.BulkJob, headers={
        "Location": {"required": True, "schema": {"type": "string", "format": "uri-reference"},
                     "description": "The job: `/api/v1/ops/jobs/{id}`."}})
    return op


def _paths() -> dict:
    created_headers = {
        "Location": {"required": True, "schema": {"type": "string", "format": "uri-reference"}},
        "Idempotent-Replayed": {"description": "`true` when this is a stored response replayed.",
                                "schema": {"type": "string", "enum": ["true"]}},
        **_RATE_LIMIT,
    }
    #: What a client does next with a created booking (OpenAPI links; stateful fuzzing follows them too).
    created_links = {
        "getBooking": {"operationId": "getBooking", "parameters": {"booking_id": "$response.body#/id"},
                       "description": "The booking with its live task states."},
        "getInvoice": {"operationId": "getInvoice", "parameters": {"booking_id": "$response.body#/id"},
                       "description": "Its invoice PDF, once the invoice task is done."},
    }
    webhooks = _webhook_paths()
    pdf = {"application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}}}
    admin = "Admin tokens only."
    return {
        "/healthz": {"get": _op("healthz", "health", "Liveness probe", (200, _ok("The process is alive.", c.Health)),
                                **_PUBLIC)},
        "/readyz": {"get": _op("readyz", "health", "Readiness probe",
                               (200, _ok("Postgres answers: bookings are accepted. `degraded` lists what does "
                                         "not answer but is not needed for that (Redis).", c.Readiness)), 503,
                               **_PUBLIC)},
        "/api/v1/openapi.json": {"get": _op("openapi", "meta", "This document",
                                            (200, _ok("The OpenAPI 3.1 document.", content=_json(None))), **_PUBLIC)},
        "/api/v1/bookings": {
            "post": _op("createBooking", "bookings", "Confirm a booking",
                        (201, _ok("Created (or replayed for a repeated Idempotency-Key).", c.Booking,
                                  headers=created_headers) | {"links": created_links}),
                        400, 401, 409, 413, 415, 422, 429,
                        description="Saves the booking, its three tasks (email, invoice, audit) and their "
                                    "messages in one transaction. A rejected request writes nothing. Each "
                                    "tenant is admitted up to its plan's rate (a token bucket: a sustained "
                                    "rate and a burst); a replay of a stored Idempotency-Key costs nothing.",
                        parameters=[_IDEMPOTENCY_KEY],
                        requestBody={"required": True, "content": _json(c.BookingRequest)}),
            "get": _op("listBookings", "bookings", "The caller's bookings, newest first",
                       (200, _ok("One page of bookings.", c.BookingPage)), 401, 422,
                       parameters=_query(c.BookingQuery)),
        },
        "/api/v1/bookings/{booking_id}": {
            "parameters": [_PATH_BOOKING],
            "get": _conditional(_op(
                "getBooking", "bookings", "One booking with its live task states",
                (200, _ok("The booking.", c.Booking, headers=_ETAG)), 401, 404,
                description="The polling fallback of the progress stream (`links.events`, Server-Sent Events "
                            "served by the booking-events service): send the last `ETag` as `If-None-Match` and "
                            "an unchanged booking answers 304 without a body.",
                parameters=[_IF_NONE_MATCH])),
        },
        "/api/v1/bookings/{booking_id}/invoice": {
            "parameters": [_PATH_BOOKING],
            "get": _op("getInvoice", "bookings", "The invoice PDF",
                       (200, _ok("The invoice.", content=pdf,
                                 headers={"Content-Disposition": {"schema": {"type": "string"}}})),
                       401, 404, 409),
        },
        "/api/v1/ops/queues": {"get": _op(
            "queueDepths", "ops", "Depth of every queue", (200, _ok("Depth per queue.", c.QueueDepths)), 401, 403,
            description=f"{admin} Ready, in flight, delayed and dead per queue, read in one atomic snapshot, "
                        "whether each is paused (by whom, since when, why), and who is filling it: the 10 tenants "
                        "with the most tasks waiting in the outbox (where the fair order keeps a backlog), the "
                        "age of each one's oldest, and the rest summed. The outbox part is read at most once "
                        "every 2 s per API process.")},
        "/api/v1/ops/queues/{queue}/pause": {
            "parameters": [_PATH_QUEUE],
            "post": _op("pauseQueue", "ops", "Pause a queue", (200, _ok("Paused (or already paused).",
                                                                       oc.QueuePauseResult)),
                        400, 401, 403, 404, 413, 415, 422,
                        description=f"{admin} Every worker stops starting the queue's messages within about a "
                                    "second; running ones finish; the others wait in the queue, none lost. Kept "
                                    "in Postgres: survives restarts. The body is optional. Audited.",
                        requestBody={"required": False, "content": _json(oc.PauseRequest)}),
        },
        "/api/v1/ops/queues/{queue}/resume": {
            "parameters": [_PATH_QUEUE],
            "post": _op("resumeQueue", "ops", "Resume a paused queue",
                        (200, _ok("Resumed (or was not paused).", oc.QueuePauseResult)), 401, 403, 404,
                        description=f"{admin} Workers take the queue's messages again. Audited."),
        },
        "/api/v1/ops/tenants": {"get": _op(
            "listTenants", "ops", "Tenants and their plans", (200, _ok("One page of tenants, by name.", oc.TenantList)),
            401, 403, 422, description=f"{admin} Each customer tenant with the plan it is on: its own, or the "
                                       "default (the deployment's `BOOKING_PLAN_DEFAULT_*`).",
            parameters=_query(oc.TenantQuery))},
        "/api/v1/ops/tenants/{tenant}": {
            "parameters": [_PATH_TENANT],
            "get": _op("getTenant", "ops", "A tenant's plan", (200, _ok("The tenant and its plan.", oc.TenantPlan)),
                       401, 403, 404, description=admin),
        },
        "/api/v1/ops/tenants/{tenant}/plan": {
            "parameters": [_PATH_TENANT],
            "put": _op("setTenantPlan", "ops", "Give a tenant a plan of its own",
                       (200, _ok("The tenant on its plan (`changed` false when it already was).",
                                 oc.TenantPlanResult)), 400, 401, 403, 404, 413, 415, 422,
                       description=f"{admin} Rate and burst bound how fast its bookings are admitted (a token "
                                   "bucket); the weight is its share of the workers. Audited in the platform's "
                                   "ops chain with the plan before and after; every API process applies it on "
                                   "its next booking. 422 names the field out of bounds and changes nothing.",
                       requestBody={"required": True, "content": _json(oc.PlanBody)}),
            "delete": _op("resetTenantPlan", "ops", "Put a tenant back on the default plan",
                          (200, _ok("The tenant on the default plan (`changed` false when it already was).",
                                    oc.TenantPlanResult)), 401, 403, 404, description=f"{admin} Audited."),
        },
        "/api/v1/ops/dead-letters": {"get": _op(
            "listDeadLetters", "ops", "Open dead letters, oldest first", (200, _ok("Dead letters.", c.DeadLetterList)),
            401, 403, 422, description=f"{admin} Read from the Postgres record, whether or not Redis still holds "
                                       "the message.", parameters=_query(oc.DeadLetterQuery))},
        **{f"/api/v1/ops/dead-letters/{action}": {"post": _with_job_started(_op(
            f"{action}DeadLetters", "ops", f"{action.capitalize()} every open dead letter that matches",
            (200, _ok("Dry run: how many match now; nothing changed.", oc.DryRunResult)),
            400, 401, 403, 413, 415, 422,
            description=f"{admin} Starts a bulk job (202, `Location` → its progress), which a runner of the "
                        "platform does in batches, each letter audited, whether or not this request, or the "
                        "process that served it, lasts; the ops console starts the same jobs. `dry_run` only "
                        "counts (200).",
            requestBody={"required": True, "content": _json(oc.BulkDeadLetterRequest)}))}
           for action in ("requeue", "discard")},
        "/api/v1/ops/jobs/{job_id}": {
            "parameters": [{"name": "job_id", "in": "path", "required": True,
                            "schema": {"type": "string", "format": "uuid"}}],
            "get": _op("getBulkJob", "ops", "A bulk job's state and progress", (200, _ok("The job.", oc.BulkJob)),
                       401, 403, 404,
                       description=f"{admin} Jobs started from the API and from the ops console alike."),
        },
        "/api/v1/ops/bookings/{booking_id}/tasks/{task}/retry": {
            "parameters": [_PATH_BOOKING, {"name": "task", "in": "path", "required": True,
                                           "schema": {"type": "string", "enum": list(c.TASKS)}}],
            "post": _op("retryTask", "ops", "Retry a dead task", (202, _ok("Re-published.", oc.TaskRetryResult)),
                        401, 403, 404, 409,
                        description=f"{admin} Re-publishes the task through the outbox with fresh retries and "
                                    "its trace kept, from its dead-letter record or, without one, from the "
                                    "booking. Audited. 409 when the task is not dead."),
        },
        "/api/v1/ops/dead-letters/{dead_id}/requeue": {
            "parameters": [_PATH_DEAD],
            "post": _op("requeueDeadLetter", "ops", "Send a dead letter back to its queue",
                        (200, _ok("Requeued.", c.RequeueResult)), 401, 403, 404, 422,
                        description=f"{admin} Retries start afresh; the action is audited.",
                        parameters=_query(c.QueueQuery)),
        },
        "/api/v1/ops/dead-letters/{dead_id}": {
            "parameters": [_PATH_DEAD],
            "delete": _op("discardDeadLetter", "ops", "Discard a dead letter for good", (204, _ok("Discarded.")),
                          401, 403, 404, 422, description=f"{admin} The action is audited.",
                          parameters=_query(c.QueueQuery)),
        },
        **webhooks,
    }


_PATH_ENDPOINT = {"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_PATH_DELIVERY = {"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


def _webhook_paths() -> dict:
    """The tenant's webhook endpoints, their delivery log and replay."""
    no_store = {"Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}}}
    return {
        "/api/v1/webhooks/endpoints": {
            "post": _op("createWebhookEndpoint", "webhooks", "Add a webhook endpoint",
                        (201, _ok("Created. The signing secret is in this answer only.", wc.WebhookEndpointWithSecret,
                                  headers={"Location": {"required": True, "schema": {"type": "string"}}} | no_store)),
                        400, 401, 413, 415, 422, 503,
                        description="The tenant's booking events are signed (Standard Webhooks) and sent to `url`. "
                                    "503 when the platform has no BOOKING_WEBHOOKS_KEY.",
                        requestBody={"required": True, "content": _json(wc.WebhookEndpointRequest)}),
            "get": _op("listWebhookEndpoints", "webhooks", "The tenant's webhook endpoints",
                       (200, _ok("Every endpoint (never its secret).", wc.WebhookEndpointList)), 401),
        },
        "/api/v1/webhooks/endpoints/{endpoint_id}": {
            "parameters": [_PATH_ENDPOINT],
            "get": _op("getWebhookEndpoint", "webhooks", "One webhook endpoint",
                       (200, _ok("The endpoint.", wc.WebhookEndpoint)), 401, 404),
            "patch": _op("updateWebhookEndpoint", "webhooks", "Change a webhook endpoint",
                         (200, _ok("The endpoint as changed.", wc.WebhookEndpoint)), 400, 401, 404, 413, 415, 422,
                         description="Enabling an endpoint the platform disabled clears its failure record.",
                         requestBody={"required": True, "content": _json(wc.WebhookEndpointPatch)}),
            "delete": _op("deleteWebhookEndpoint", "webhooks", "Delete a webhook endpoint", (204, _ok("Deleted.")),
                          401, 404, description="No more deliveries; open ones go dead at their next attempt."),
        },
        "/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret": {
            "parameters": [_PATH_ENDPOINT],
            "post": _op("rotateWebhookSecret", "webhooks", "Rotate the signing secret",
                        (200, _ok("The new secret, shown only here.", wc.WebhookEndpointWithSecret, headers=no_store)),
                        400, 401, 404, 413, 415, 422, 503,
                        description="During the overlap every delivery carries two signatures, one per secret.",
                        requestBody={"required": False, "content": _json(wc.RotateRequest)}),
        },
        "/api/v1/webhooks/endpoints/{endpoint_id}/deliveries": {
            "parameters": [_PATH_ENDPOINT],
            "get": _op("listWebhookDeliveries", "webhooks", "The endpoint's delivery log, newest first",
                       (200, _ok("Deliveries.", wc.WebhookDeliveryPage)), 401, 404, 422,
                       parameters=_query(wc.DeliveryQuery)),
        },
        "/api/v1/webhooks/endpoints/{endpoint_id}/replay": {
            "parameters": [_PATH_ENDPOINT],
            "post": _op("replayWebhookDeliveries", "webhooks", "Replay every dead delivery since a time",
                        (200, _ok("How many matched (dry run) or were replayed.", wc.ReplaySinceResult)),
                        400, 401, 404, 413, 415, 422,
                        requestBody={"required": True, "content": _json(wc.ReplaySinceRequest)}),
        },
        "/api/v1/webhooks/deliveries/{delivery_id}": {
            "parameters": [_PATH_DELIVERY],
            "get": _op("getWebhookDelivery", "webhooks", "One delivery with every attempt",
                       (200, _ok("The delivery.", wc.WebhookDeliveryDetail)), 401, 404),
        },
        "/api/v1/webhooks/deliveries/{delivery_id}/replay": {
            "parameters": [_PATH_DELIVERY],
            "post": _op("replayWebhookDelivery", "webhooks", "Send a dead or delivered delivery again",
                        (202, _ok("Queued, with the same webhook-id.", wc.ReplayResult)), 401, 404, 409),
        },
    }


_PROBLEM_DESCRIPTIONS = {
    400: "The body is not valid JSON, or the Idempotency-Key header is malformed.",
    401: "No bearer token, or the token is unknown or revoked.",
    403: "The endpoint needs an admin token.",
    404: "No such resource for the caller's tenant.",
    409: "The request conflicts with the resource's state (an Idempotency-Key in flight, an invoice not "
         "issued yet, a webhook delivery still being tried); retry later.",
    413: f"The body is larger than {c.MAX_BODY_TEXT}.",
    415: "The body is not application/json.",
    422: "Invalid fields or query parameters (see `errors`), or an Idempotency-Key reused with another body.",
    429: "The tenant's plan rate is used up (the `detail` names the limit and the plan); retry after "
         "`Retry-After` seconds.",
    503: "A dependency does not answer.",
}
_PROBLEM_HEADERS = {401: {"WWW-Authenticate": {"schema": {"type": "string"}}}, 409: _RETRY_AFTER,
                    429: _RETRY_AFTER | _RATE_LIMIT}


def _responses() -> dict:
    return {_problem_name(status): {"description": description, "content": _json(c.Problem, "application/problem+json"),
                                    **({"headers": _PROBLEM_HEADERS[status]} if status in _PROBLEM_HEADERS else {})}
            for status, description in _PROBLEM_DESCRIPTIONS.items()}


def _from_dataclass(schema: dict, *, hidden: tuple[str, ...] = ()) -> dict:
    """A dataclass's schema as the API shows it: `hidden` fields dropped, no other keys allowed.

    A field whose default is None is left out of the response when None (see `as_dict`), so it is
    optional; every other field is required.
    """
    props = {k: v for k, v in schema["properties"].items() if k not in hidden}
    if "queue" in props:
        props["queue"] = {**props["queue"], "enum": list(c.QUEUES)}
    required = [k for k, v in props.items() if not ("default" in v and v["default"] is None)]
    return {**schema, "properties": props, "required": required, "additionalProperties": False}


def _schemas() -> dict:
    models = [(m, "validation") for m in (c.BookingRequest,)] + [
        (m, "serialization") for m in (c.Booking, c.BookingPage, c.Problem, c.QueueDepths, c.DeadLetterList,
                                       c.RequeueResult, c.Health, c.Readiness, oc.DryRunResult, oc.BulkJob,
                                       oc.TaskRetryResult, oc.QueuePause, oc.QueueTenants, oc.QueuePauseResult,
                                       oc.TenantList,
                                       oc.TenantPlan, oc.TenantPlanResult,
                                       wc.WebhookEndpoint, wc.WebhookEndpointWithSecret, wc.WebhookEndpointList,
                                       wc.WebhookDeliveryPage, wc.WebhookDeliveryDetail, wc.ReplayResult,
                                       wc.ReplaySinceResult)] + [
        (m, "validation") for m in (oc.BulkDeadLetterRequest, oc.PauseRequest, oc.PlanBody, wc.WebhookEndpointRequest,
                                    wc.WebhookEndpointPatch, wc.RotateRequest, wc.ReplaySinceRequest)]
    _, top = models_json_schema(models, ref_template=_SCHEMAS, schema_generator=_Schema)
    schemas = top["$defs"]
    # The queue list shows each queue's depth (booking_core's dataclass), its pause state and who fills it.
    depth, pause, who = _from_dataclass(schemas["QueueDepth"]), schemas.pop("QueuePause"), schemas.pop("QueueTenants")
    schemas["QueueDepth"] = {**depth, "properties": depth["properties"] | pause["properties"] | who["properties"],
                             "required": [*depth["required"], *pause["required"], *who["required"]]}
    schemas["DeadLetter"] = _from_dataclass(schemas["DeadLetter"], hidden=c.DEAD_LETTER_HIDDEN)
    return schemas


@cache
def _components() -> dict:
    return {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                           "description": "An API token (`bk_…`)."}},
        "schemas": _schemas(),
        "responses": _responses(),
    }


def document() -> dict:
    """The whole OpenAPI document (a fresh dict on every call; the schemas are generated once)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Booking API",
            "version": "1",
            "description": "Confirm bookings in milliseconds; their email, invoice and audit entry happen in "
                           "background workers whose progress each booking shows. Errors are RFC 9457 problem "
                           "details.",
        },
        "tags": [{"name": "bookings"}, {"name": "ops", "description": "Admin tokens only."},
                 {"name": "webhooks", "description": "Signed webhooks to the tenant's own systems."},
                 {"name": "health"}, {"name": "meta"}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": copy.deepcopy(_components()),
    }
