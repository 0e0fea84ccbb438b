"""The OpenAPI 3.1 description of the API (kept next to the code it describes).

Enumerations (task names, task states, queues) and limits come from the code
that enforces them, so the document cannot drift from them; the tests check
that every Flask route is documented with the same methods and that real
responses validate against these schemas.
"""

from __future__ import annotations

from booking_api.validation import MAX_NIGHTS, MAX_TEXT
from booking_core.contracts import QUEUES, TASK_STATES, TASKS

_REF = "#/components/"


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"{_REF}{kind}/{name}"}


def _schema(name: str) -> dict:
    return _ref("schemas", name)


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema_name: str) -> dict:
    return {"description": description, "content": _json(_schema(schema_name))}


def _problems(*statuses: int) -> dict:
    """Problem responses by status, from components/responses."""
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
             409: "Conflict", 413: "ContentTooLarge", 415: "UnsupportedMediaType",
             422: "UnprocessableContent", 503: "ServiceUnavailable"}
    return {str(s): _ref("responses", names[s]) for s in statuses}


def _problem_response(description: str, headers: dict | None = None) -> dict:
    out = {"description": description,
           "content": {"application/problem+json": {"schema": _schema("Problem")}}}
    if headers:
        out["headers"] = headers
    return out


_NULLABLE_TS = {"type": ["string", "null"], "format": "date-time"}


def _schemas() -> dict:
    text = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": "\\S",
            "description": f"Trimmed; 1-{MAX_TEXT} characters, no control characters."}
    return {
        "Customer": {
            "type": "object",
            "required": ["name", "email"],
            "additionalProperties": False,
            "properties": {
                "name": text,
                "email": {"type": "string", "format": "email", "maxLength": 318,
                          "examples": ["ada@example.com"]},
            },
        },
        "BookingRequest": {
            "type": "object",
            "description": "A booking to confirm. Unknown fields are refused (422), not ignored.",
            "required": ["customer", "item", "check_in", "check_out", "amount", "currency"],
            "additionalProperties": False,
            "properties": {
                "customer": _schema("Customer"),
                "item": text,
                "check_in": {"type": "string", "format": "date", "examples": ["2027-03-01"]},
                "check_out": {"type": "string", "format": "date", "examples": ["2027-03-04"],
                              "description": "After check_in, by at most "
                                             f"{MAX_NIGHTS} nights."},
                "amount": {"type": "string", "pattern": "^(0|[1-9][0-9]{0,9})(\\.[0-9]{1,2})?$",
                           "examples": ["360.00"],
                           "description": "A decimal string above zero, with at most as many "
                                          "decimals as the currency has (at most two)."},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["EUR"],
                             "description": "An active ISO 4217 currency code."},
            },
        },
        "Task": {
            "type": "object",
            "description": "One side effect of a booking and where it stands.",
            "required": ["state", "attempts", "last_error", "updated_at"],
            "additionalProperties": False,
            "properties": {
                "state": {"type": "string", "enum": list(TASK_STATES)},
                "attempts": {"type": "integer", "minimum": 0},
                "last_error": {"type": ["string", "null"]},
                "updated_at": _NULLABLE_TS,
                "trace_id": {"type": ["string", "null"]},
            },
        },
        "Booking": {
            "type": "object",
            "required": ["id", "customer", "item", "check_in", "check_out", "amount", "currency",
                         "status", "created_at", "tasks", "links"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "customer": _schema("Customer"),
                "item": {"type": "string"},
                "check_in": {"type": "string", "format": "date"},
                "check_out": {"type": "string", "format": "date"},
                "amount": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$",
                           "examples": ["360.00"]},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "status": {"type": "string", "examples": ["confirmed"]},
                "created_at": {"type": "string", "format": "date-time"},
                "trace_id": {"type": ["string", "null"]},
                "tasks": {
                    "type": "object",
                    "required": list(TASKS),
                    "additionalProperties": False,
                    "properties": {t: _schema("Task") for t in TASKS},
                },
                "links": {
                    "type": "object",
                    "required": ["self", "invoice"],
                    "additionalProperties": False,
                    "properties": {
                        "self": {"type": "string", "format": "uri-reference"},
                        "invoice": {"type": "string", "format": "uri-reference"},
                    },
                },
            },
        },
        "BookingPage": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "items": {"type": "array", "items": _schema("Booking")},
                "next_cursor": {"type": ["string", "null"],
                                "description": "Pass as `cursor` for the next page; null on the "
                                               "last page."},
            },
        },
        "FieldError": {
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": {"type": "string",
                          "description": "Dotted path of the field, e.g. `customer.email`; "
                                         "empty for the body as a whole."},
                "message": {"type": "string"},
            },
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri-reference"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "instance": {"type": "string", "format": "uri-reference"},
                "errors": {"type": "array", "items": _schema("FieldError"),
                           "description": "Field by field, for invalid input."},
            },
        },
        "QueueDepth": {
            "type": "object",
            "required": ["queue", "ready", "in_flight", "delayed", "dead", "oldest_ready_age_ms"],
            "additionalProperties": False,
            "properties": {
                "queue": {"type": "string", "enum": list(QUEUES)},
                "ready": {"type": "integer", "minimum": 0},
                "in_flight": {"type": "integer", "minimum": 0},
                "delayed": {"type": "integer", "minimum": 0},
                "dead": {"type": "integer", "minimum": 0},
                "oldest_ready_age_ms": {"type": "integer", "minimum": 0,
                                        "description": "How long the oldest ready message has waited (0 if none)."},
            },
        },
        "QueueDepths": {
            "type": "object",
            "required": ["queues"],
            "additionalProperties": False,
            "properties": {"queues": {"type": "array", "items": _schema("QueueDepth")}},
        },
        "DeadLetter": {
            "type": "object",
            "required": ["id", "queue", "actor", "message_id", "dead_since", "retries",
                         "last_error", "booking_id"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "description": "The broker's id of this dead letter."},
                "queue": {"type": "string", "enum": list(QUEUES)},
                "actor": {"type": "string"},
                "message_id": {"type": "string"},
                "dead_since": {"type": "string", "format": "date-time"},
                "retries": {"type": "integer", "minimum": 0},
                "last_error": {"type": ["string", "null"]},
                "booking_id": {"type": ["string", "null"]},
            },
        },
        "DeadLetterList": {
            "type": "object",
            "required": ["items"],
            "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": _schema("DeadLetter")}},
        },
        "RequeueResult": {
            "type": "object",
            "required": ["requeued"],
            "additionalProperties": False,
            "properties": {"requeued": _schema("DeadLetter")},
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "const": "ready"},
                "checks": {
                    "type": "object",
                    "required": ["postgres", "redis"],
                    "properties": {"postgres": {"type": "string"}, "redis": {"type": "string"}},
                },
            },
        },
    }


def _responses() -> dict:
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                   "schema": {"type": "integer"}}}
    return {
        "BadRequest": _problem_response(
            "The body is not valid JSON, or the Idempotency-Key header is malformed."),
        "Unauthorized": _problem_response(
            "No bearer token, or the token is unknown or revoked.",
            {"WWW-Authenticate": {"schema": {"type": "string"}}}),
        "Forbidden": _problem_response("The endpoint needs an admin token."),
        "NotFound": _problem_response("No such resource for the caller's tenant."),
        "Conflict": _problem_response("The request conflicts with the resource's state; retry "
                                      "later.", retry_after),
        "ContentTooLarge": _problem_response("The body is larger than 64 KiB."),
        "UnsupportedMediaType": _problem_response("The body is not application/json."),
        "UnprocessableContent": _problem_response(
            "Invalid fields or query parameters (see `errors`), or an Idempotency-Key reused "
            "with another body."),
        "ServiceUnavailable": _problem_response("A dependency does not answer."),
    }


def _parameters() -> dict:
    return {
        "BookingId": {"name": "booking_id", "in": "path", "required": True,
                      "schema": {"type": "string", "format": "uuid"}},
        "DeadLetterId": {"name": "dead_id", "in": "path", "required": True,
                         "schema": {"type": "string"},
                         "description": "The `id` of a dead letter as listed."},
        "IdempotencyKey": {
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "IETF httpapi idempotency key (a structured-field string; quotes "
                           "optional). The same key and body replay the stored response; the "
                           "same key with another body is 422; a request with the key still "
                           "in flight is 409. Keys are per tenant and expire after 24 hours.",
            "schema": {"type": "string", "pattern": "^\"?[!-~]{1,255}\"?$"},
        },
        "Limit": {"name": "limit", "in": "query", "required": False,
                  "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
        "Cursor": {"name": "cursor", "in": "query", "required": False,
                   "description": "`next_cursor` of the previous page.",
                   "schema": {"type": "string"}},
        "State": {"name": "state", "in": "query", "required": False,
                  "description": "Only bookings with a task in this state.",
                  "schema": {"type": "string", "enum": list(TASK_STATES)}},
        "Task": {"name": "task", "in": "query", "required": False,
                 "description": "With `state`: only that task must be in the state.",
                 "schema": {"type": "string", "enum": list(TASKS)}},
        "Queue": {"name": "queue", "in": "query", "required": False,
                  "schema": {"type": "string", "enum": list(QUEUES)}},
    }


def _param(name: str) -> dict:
    return _ref("parameters", name)


def _paths() -> dict:
    public = {"security": []}
    return {
        "/healthz": {"get": {
            "operationId": "healthz", "tags": ["health"], "summary": "Liveness probe", **public,
            "responses": {"200": _ok("The process is alive.", "Health")},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "tags": ["health"], "summary": "Readiness probe", **public,
            "responses": {"200": _ok("Postgres and Redis both answer.", "Readiness"),
                          **_problems(503)},
        }},
        "/api/v1/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["meta"], "summary": "This document", **public,
            "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                                  "content": _json({"type": "object"})}},
        }},
        "/api/v1/bookings": {
            "post": {
                "operationId": "createBooking", "tags": ["bookings"],
                "summary": "Confirm a booking",
                "description": "Saves the booking, its three tasks (email, invoice, audit) and "
                               "their messages in one transaction. A rejected request writes "
                               "nothing.",
                "parameters": [_param("IdempotencyKey")],
                "requestBody": {"required": True, "content": _json(_schema("BookingRequest"))},
                "responses": {
                    "201": {
                        "description": "Created (or replayed for a repeated Idempotency-Key).",
                        "headers": {
                            "Location": {"required": True,
                                         "schema": {"type": "string", "format": "uri-reference"}},
                            "Idempotent-Replayed": {
                                "description": "`true` when this is a stored response replayed.",
                                "schema": {"type": "string", "enum": ["true"]}},
                        },
                        "content": _json(_schema("Booking")),
                    },
                    **_problems(400, 401, 409, 413, 415, 422),
                },
            },
            "get": {
                "operationId": "listBookings", "tags": ["bookings"],
                "summary": "The caller's bookings, newest first",
                "parameters": [_param("Limit"), _param("Cursor"), _param("State"),
                               _param("Task")],
                "responses": {"200": _ok("One page of bookings.", "BookingPage"),
                              **_problems(401, 422)},
            },
        },
        "/api/v1/bookings/{booking_id}": {
            "parameters": [_param("BookingId")],
            "get": {
                "operationId": "getBooking", "tags": ["bookings"],
                "summary": "One booking with its live task states",
                "responses": {"200": _ok("The booking.", "Booking"), **_problems(401, 404)},
            },
        },
        "/api/v1/bookings/{booking_id}/invoice": {
            "parameters": [_param("BookingId")],
            "get": {
                "operationId": "getInvoice", "tags": ["bookings"],
                "summary": "The invoice PDF",
                "responses": {
                    "200": {
                        "description": "The invoice.",
                        "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                        "content": {"application/pdf": {
                            "schema": {"type": "string", "contentMediaType": "application/pdf"}}},
                    },
                    **_problems(401, 404),
                    "409": _problem_response(
                        "The invoice task is not done yet.",
                        {"Retry-After": {"schema": {"type": "integer"}}}),
                },
            },
        },
        "/api/v1/ops/queues": {"get": {
            "operationId": "queueDepths", "tags": ["ops"], "summary": "Depth of every queue",
            "description": "Admin tokens only. Ready, in flight, delayed and dead per queue, "
                           "read in one atomic snapshot.",
            "responses": {"200": _ok("Depth per queue.", "QueueDepths"),
                          **_problems(401, 403)},
        }},
        "/api/v1/ops/dead-letters": {"get": {
            "operationId": "listDeadLetters", "tags": ["ops"],
            "summary": "Dead letters, oldest first", "description": "Admin tokens only.",
            "parameters": [_param("Queue")],
            "responses": {"200": _ok("Dead letters.", "DeadLetterList"),
                          **_problems(401, 403, 422)},
        }},
        "/api/v1/ops/dead-letters/{dead_id}/requeue": {
            "parameters": [_param("DeadLetterId")],
            "post": {
                "operationId": "requeueDeadLetter", "tags": ["ops"],
                "summary": "Send a dead letter back to its queue",
                "description": "Admin tokens only. Retries start afresh; the action is audited.",
                "parameters": [_param("Queue")],
                "responses": {"200": _ok("Requeued.", "RequeueResult"),
                              **_problems(401, 403, 404, 422)},
            },
        },
        "/api/v1/ops/dead-letters/{dead_id}": {
            "parameters": [_param("DeadLetterId")],
            "delete": {
                "operationId": "discardDeadLetter", "tags": ["ops"],
                "summary": "Discard a dead letter for good",
                "description": "Admin tokens only. The action is audited.",
                "parameters": [_param("Queue")],
                "responses": {"204": {"description": "Discarded."},
                              **_problems(401, 403, 404, 422)},
            },
        },
    }


def document() -> dict:
    """The whole OpenAPI document (a fresh dict on every call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Booking API",
            "version": "1",
            "description": "Confirm bookings in milliseconds; their email, invoice and audit "
                           "entry happen in background workers whose progress each booking "
                           "shows. Errors are RFC 9457 problem details.",
        },
        "tags": [{"name": "bookings"}, {"name": "ops", "description": "Admin tokens only."},
                 {"name": "health"}, {"name": "meta"}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "An API token (`bk_…`)."}},
            "schemas": _schemas(),
            "responses": _responses(),
            "parameters": _parameters(),
        },
    }
