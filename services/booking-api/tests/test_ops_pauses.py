"""Pausing and resuming a queue through the ops API, on real Postgres and Redis.

Admin tokens only; the actor in the audit trail is the token; an unknown
queue is a 404 problem and a bad body a 422 naming the field, both changing
nothing.  Responses match the OpenAPI document.
"""

from __future__ import annotations

import jsonschema
import pytest

from booking_api.openapi_doc import document
from booking_core.messaging.contracts import QUEUES
from booking_core.queues import pauses


def schema_errors(instance, name: str) -> list[str]:
    """Why `instance` does not match the document's schema `name` ([] if it does)."""
    root = {"$ref": f"#/components/schemas/{name}", "components": document()["components"]}
    validator = jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [e.message for e in validator.iter_errors(instance)]


pytestmark = pytest.mark.usefixtures("no_queue_pauses")


def queues(client, headers) -> dict[str, dict]:
    resp = client.get("/api/v1/ops/queues", headers=headers)
    assert resp.status_code == 200
    assert schema_errors(resp.get_json(), "QueueDepths") == []
    return {q["queue"]: q for q in resp.get_json()["queues"]}


def test_pause_shows_in_the_queue_list_with_who_and_why_and_resume_clears_it(client, admin_auth, tenant, db_conn):
    assert all(q["paused"] is False and "paused_by" not in q for q in queues(client, admin_auth).values())
    # When an admin pauses the email queue with a reason
    resp = client.post("/api/v1/ops/queues/email/pause", json={"reason": "  SMTP incident #42 "}, headers=admin_auth)
    assert resp.status_code == 200
    body = resp.get_json()
    assert schema_errors(body, "QueuePauseResult") == []
    prefix = admin_auth["Authorization"].split()[1][:10]
    actor = f"token:{prefix} (tenant {tenant['name']})"
    assert (body["queue"], body["changed"], body["paused"], body["paused_by"], body["reason"]) == (
        "email", True, True, actor, "SMTP incident #42")
    # Then the list shows it, with the depths still there, and the others running
    listed = queues(client, admin_auth)
    assert listed["email"]["paused"] is True and listed["email"]["paused_by"] == actor
    assert listed["email"]["paused_at"] == body["paused_at"] and "ready" in listed["email"]
    assert listed["invoice"]["paused"] is False and listed["audit"]["paused"] is False
    # And it was audited as done by that token
    (kind,) = [r["payload"]["kind"] for r in db_conn.execute(
        "SELECT payload FROM outbox WHERE payload->>'actor' = %s", (actor,))]
    assert kind == "queue.paused"
    # A second pause changes nothing; a pause without a body works
    again = client.post("/api/v1/ops/queues/email/pause", headers=admin_auth).get_json()
    assert (again["changed"], again["reason"]) == (False, "SMTP incident #42")
    assert client.post("/api/v1/ops/queues/audit/pause", headers=admin_auth).get_json()["reason"] == ""
    # When resumed
    resumed = client.post("/api/v1/ops/queues/email/resume", headers=admin_auth)
    assert resumed.status_code == 200 and resumed.get_json() == {"queue": "email", "changed": True, "paused": False}
    assert schema_errors(resumed.get_json(), "QueuePauseResult") == []
    assert client.post("/api/v1/ops/queues/email/resume", headers=admin_auth).get_json()["changed"] is False
    assert set(pauses.paused(db_conn)) == {"audit"}


@pytest.mark.parametrize("action", ["pause", "resume"])
@pytest.mark.parametrize("queue", ["sms", "EMAIL", "email.DQ"])
def test_an_unknown_queue_is_a_404_problem_naming_the_queues(client, admin_auth, db_conn, action, queue):
    resp = client.post(f"/api/v1/ops/queues/{queue}/{action}", headers=admin_auth)
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    assert ", ".join(QUEUES) in resp.get_json()["detail"]
    assert pauses.paused(db_conn) == {}


@pytest.mark.parametrize(("body", "field"), [
    ({"reason": "x" * 201}, "reason"),
    ({"reason": ""}, "reason"),
    ({"reason": "one\nline two"}, "reason"),
    ({"reason": 5}, "reason"),
    ({"why": "typo"}, "why"),
    ([], ""),
])
def test_a_bad_body_is_a_422_naming_the_field_and_pauses_nothing(client, admin_auth, db_conn, body, field):
    resp = client.post("/api/v1/ops/queues/invoice/pause", json=body, headers=admin_auth)
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    assert [e["field"] for e in resp.get_json()["errors"]] == [field]
    assert pauses.paused(db_conn) == {}


@pytest.mark.parametrize(("data", "content_type", "status"), [
    ("{not json", "application/json", 400),
    ("reason=x", "application/x-www-form-urlencoded", 415),
])
def test_a_body_that_is_not_json_is_refused(client, admin_auth, db_conn, data, content_type, status):
    resp = client.post("/api/v1/ops/queues/invoice/pause", data=data, content_type=content_type, headers=admin_auth)
    assert resp.status_code == status
    assert pauses.paused(db_conn) == {}


def test_a_client_token_cannot_pause_resume_or_see_pauses(client, auth, admin_auth, db_conn):
    for action in ("pause", "resume"):
        resp = client.post(f"/api/v1/ops/queues/email/{action}", headers=auth)
        assert resp.status_code == 403 and resp.mimetype == "application/problem+json"
    assert client.get("/api/v1/ops/queues", headers=auth).status_code == 403
    assert pauses.paused(db_conn) == {}
    assert client.post("/api/v1/ops/queues/email/pause").status_code == 401
