"""The OpenAPI document: valid OpenAPI 3.1, in step with the routes, true to real responses.

The document is checked by `openapi-spec-validator`; real responses are
validated against its schemas with `jsonschema` (both dev dependencies).
"""

from __future__ import annotations

import re
import time
import uuid

import jsonschema
import pytest
from dramatiq import Message

from booking_api import idempotency
from booking_api.contract import MAX_BODY_BYTES
from booking_api.openapi_doc import document
from booking_api.problems import ApiError
from booking_core import db
from booking_core.tasks import deadletters
from booking_core.worker.broker import make_broker

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
DOCUMENTED_PREFIXES = ("/api/v1", "/healthz", "/readyz")


# --- JSON Schema ----------------------------------------------------------------------------


def _resolve(root: dict, ref: str) -> dict:
    """The node a local `#/...` reference points at (KeyError if it does not exist)."""
    assert ref.startswith("#/"), f"only local refs are supported: {ref}"
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def schema_errors(instance, schema_name: str, doc: dict | None = None) -> list[str]:
    """Why `instance` does not match components/schemas/<schema_name> ([] if it does)."""
    doc = doc or document()
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    validator = jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(instance)]


# --- helpers ------------------------------------------------------------------------------


def _operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def _refs(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                found.append(v)
            else:
                _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)
    return found


def _deref(doc: dict, node: dict) -> dict:
    while "$ref" in node:
        node = _resolve(doc, node["$ref"])
    return node


def _flask_rules(app) -> dict[str, set[str]]:
    """Flask's routes below the documented prefixes as OpenAPI paths -> methods."""
    rules: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(DOCUMENTED_PREFIXES):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        rules.setdefault(path, set()).update(
            m.lower() for m in rule.methods if m not in ("HEAD", "OPTIONS"))
    return rules


def _dead_letter(settings, booking: dict, queue: str = "email") -> str:
    """Put a real dead letter in Redis the way Dramatiq does (fetch, then nack) and record it in Postgres.

    Returns the Postgres record's id, the id the API lists.
    """
    broker = make_broker(settings)
    try:
        broker.enqueue(Message(
            queue_name=queue, actor_name="send_confirmation_email", args=(),
            kwargs={"task": queue, "booking_id": booking["id"], "tenant_id": booking["tenant_id"]},
            options={"traceback": "Traceback (most recent call last):\nSMTPError: 550 refused"},
        ))
        consumer = broker.consume(queue, prefetch=1, timeout=100)
        deadline = time.monotonic() + 5
        message = None
        while message is None and time.monotonic() < deadline:
            message = next(consumer)
        assert message is not None, "the enqueued message never arrived"
        consumer.nack(message)
        consumer.close()
        with db.connect(settings.database_url, autocommit=True) as conn:
            deadletters.record(conn, message, error="SMTPError: 550 refused", attempts=1)
            return deadletters.list_dead(conn, deadletters.Filter(booking_id=booking["id"]))[0].id
    finally:
        broker.close()


# --- the document itself ------------------------------------------------------------------


def test_document_is_served_without_a_token_as_json(client):
    # Given no Authorization header, when the document is fetched
    resp = client.get("/api/v1/openapi.json")
    # Then it is the document, as JSON
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert resp.get_json() == document()


def test_document_validates_with_openapi_spec_validator():
    import openapi_spec_validator as validator

    # Given the document, when the reference validator checks it as OpenAPI 3.1
    validator.validate(document())  # Then it raises nothing


def test_document_is_structurally_valid_openapi_3_1():
    # Given the document
    doc = document()
    # Then it has the OpenAPI 3.1 top level
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    assert set(doc) <= {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks",
                        "components", "security", "tags", "externalDocs"}
    # And every $ref points at something that exists
    for ref in _refs(doc, []):
        _resolve(doc, ref)
    # And every security requirement names a declared scheme
    schemes = doc["components"]["securitySchemes"]
    requirements = [r for _, _, op in _operations(doc) for r in op.get("security", [])]
    for req in doc["security"] + requirements:
        assert set(req) <= set(schemes)
    op_ids = []
    for path, method, op in _operations(doc):
        assert path.startswith("/")
        op_ids.append(op["operationId"])
        # And every operation has responses keyed by status code, each with a description
        assert op["responses"], (path, method)
        for status, resp in op["responses"].items():
            assert re.fullmatch(r"[1-5](\d\d|XX)|default", status), (path, status)
            resp = _deref(doc, resp)
            assert isinstance(resp["description"], str)
            for header in resp.get("headers", {}).values():
                assert "schema" in header or "content" in header
        # And parameters are well formed; path templates match required path parameters
        params = [_deref(doc, p) for p in
                  doc["paths"][path].get("parameters", []) + op.get("parameters", [])]
        for p in params:
            assert p["in"] in {"query", "header", "path", "cookie"}
            assert "schema" in p
            if p["in"] == "path":
                assert p["required"] is True
        path_params = {p["name"] for p in params if p["in"] == "path"}
        assert path_params == set(re.findall(r"\{([^}]+)\}", path)), path
        assert len({(p["name"], p["in"]) for p in params}) == len(params), (path, method)
        if "requestBody" in op:
            assert _deref(doc, op["requestBody"])["content"]
    # And operation ids are unique
    assert len(op_ids) == len(set(op_ids))


def test_every_route_is_documented_with_its_methods_and_nothing_more(app):
    # Given Flask's routes and the document's paths
    routed = _flask_rules(app)
    documented = {path: {m for m in item if m in METHODS}
                  for path, item in document()["paths"].items()}
    # Then they name the same paths with the same methods
    assert documented == routed


def test_error_responses_are_documented_for_every_operation():
    doc = document()
    for path, method, op in _operations(doc):
        statuses = set(op["responses"])
        public = op.get("security", doc["security"]) == []
        # Then every problem response is application/problem+json with the Problem schema
        for status, resp in op["responses"].items():
            if status.startswith(("4", "5")):
                content = _deref(doc, resp)["content"]
                assert content == {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"}}}
        # And every token-protected operation documents 401; admin ones 403; lookups 404
        if not public:
            assert "401" in statuses, (path, method)
        if path.startswith("/api/v1/ops/"):
            assert "403" in statuses, (path, method)
        if "{" in path:
            assert "404" in statuses, (path, method)
    create = doc["paths"]["/api/v1/bookings"]["post"]
    assert {"201", "400", "401", "409", "413", "415", "422"} <= set(create["responses"])
    assert any(_deref(doc, p)["name"] == "Idempotency-Key" and _deref(doc, p)["in"] == "header"
               for p in create["parameters"])
    listing = doc["paths"]["/api/v1/bookings"]["get"]
    assert {_deref(doc, p)["name"] for p in listing["parameters"]} == {
        "limit", "cursor", "state", "task"}
    bearer = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")


def test_request_schema_agrees_with_the_api_on_valid_and_invalid_bodies(booking_body):
    # Given the request schema, a valid body matches and bodies the API refuses do not
    assert schema_errors(booking_body(), "BookingRequest") == []
    assert schema_errors(booking_body(amount="100", currency="JPY"), "BookingRequest") == []
    for bad in (booking_body(amount="1.005"), booking_body(amount=360), booking_body(amount="-1"),
                booking_body(currency="eur"), booking_body(currency="ABC"), booking_body(check_outt="2027-03-05"),
                booking_body(customer={"name": "Ada"}), booking_body(item=""),
                {k: v for k, v in booking_body().items() if k != "item"}):
        assert schema_errors(bad, "BookingRequest"), bad


# --- real responses against the schemas ---------------------------------------------------


def test_documented_idempotency_key_pattern_is_the_one_the_api_enforces():
    # Given the header's documented pattern and the API's parser
    doc = document()
    (param,) = [p for p in doc["paths"]["/api/v1/bookings"]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
    pattern = re.compile(param["schema"]["pattern"])
    # Then keys the parser accepts match it, and keys it refuses do not
    for key in ("k", "a" * 255, '"quoted-key"', "!~{}", "x" * 255):
        assert idempotency.parse_key(key) and pattern.search(key), key
    for key in ("", "a" * 256, "with space", "tab\tkey", "é"):
        with pytest.raises(ApiError):
            idempotency.parse_key(key)
        assert not pattern.search(key), key


def test_documented_limits_are_the_enforced_ones(client, auth):
    # Given the documented page size bounds
    (limit,) = [p for p in document()["paths"]["/api/v1/bookings"]["get"]["parameters"] if p["name"] == "limit"]
    low, high = limit["schema"]["minimum"], limit["schema"]["maximum"]
    # Then the API accepts exactly that range
    for value, status in ((low - 1, 422), (low, 200), (high, 200), (high + 1, 422)):
        assert client.get(f"/api/v1/bookings?limit={value}", headers=auth).status_code == status, value
    too_large = document()["components"]["responses"]["ContentTooLarge"]["description"]
    assert f"{MAX_BODY_BYTES // 1024} KiB" in too_large


@pytest.mark.parametrize(("amount", "currency"), [("360.00", "EUR"), ("100", "JPY")])
def test_real_booking_responses_match_the_booking_and_page_schemas(client, auth, booking_body, amount, currency):
    # Given a created booking
    created = client.post("/api/v1/bookings", json=booking_body(amount=amount, currency=currency), headers=auth)
    assert created.status_code == 201
    # Then the 201 body, the single read and the list page match their schemas
    assert schema_errors(created.get_json(), "Booking") == []
    got = client.get(created.headers["Location"], headers=auth)
    assert schema_errors(got.get_json(), "Booking") == []
    page = client.get("/api/v1/bookings?limit=1", headers=auth)
    assert page.status_code == 200
    assert schema_errors(page.get_json(), "BookingPage") == []


def test_real_problems_match_the_problem_schema(client, auth, booking_body):
    # Given an invalid body, a missing token and an unknown booking
    invalid = client.post("/api/v1/bookings", json=booking_body(amount="0"), headers=auth)
    no_token = client.get("/api/v1/bookings")
    missing = client.get(f"/api/v1/bookings/{uuid.uuid4()}", headers=auth)
    # Then each is a problem matching the schema, the 422 with its errors list
    for resp, status in ((invalid, 422), (no_token, 401), (missing, 404)):
        assert resp.status_code == status
        assert resp.mimetype == "application/problem+json"
        assert schema_errors(resp.get_json(), "Problem") == []
    assert invalid.get_json()["errors"] == [{"field": "amount", "message": "must be above zero"}]


def test_real_ops_responses_match_the_queue_and_dead_letter_schemas(
        client, auth, admin_auth, booking_body, settings, tenant):
    # Given a booking whose email message died
    booking = client.post("/api/v1/bookings", json=booking_body(), headers=auth).get_json()
    dead_id = _dead_letter(settings, {**booking, "tenant_id": tenant["id"]})
    # When an admin reads the queues and the dead letters, then requeues it
    queues = client.get("/api/v1/ops/queues", headers=admin_auth)
    letters = client.get("/api/v1/ops/dead-letters", query_string={"tenant_id": tenant["id"]}, headers=admin_auth)
    requeued = client.post(f"/api/v1/ops/dead-letters/{dead_id}/requeue", headers=admin_auth)
    # Then each response matches its schema
    assert schema_errors(queues.get_json(), "QueueDepths") == []
    assert len(letters.get_json()["items"]) == 1
    assert schema_errors(letters.get_json(), "DeadLetterList") == []
    assert requeued.status_code == 200
    assert schema_errors(requeued.get_json(), "RequeueResult") == []


def test_real_health_responses_match_their_schemas(client):
    assert schema_errors(client.get("/healthz").get_json(), "Health") == []
    assert schema_errors(client.get("/readyz").get_json(), "Readiness") == []


def test_schema_checker_rejects_a_response_that_breaks_the_schema(client, auth, booking_body):
    # Given a real booking with a field the schema does not allow and a missing one
    body = client.post("/api/v1/bookings", json=booking_body(), headers=auth).get_json()
    body["surprise"] = 1
    del body["tasks"]["invoice"]
    body["tasks"]["email"]["state"] = "lost"
    # Then the checker reports it (so the passing checks above mean something)
    assert len(schema_errors(body, "Booking")) >= 3
