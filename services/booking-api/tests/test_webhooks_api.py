"""/api/v1/webhooks: endpoints (secret shown once, sealed at rest), tenant scope, named refusals, log and replay."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from booking_api import create_app
from booking_api.openapi_doc import document
from booking_core.model import tenants
from booking_core.webhooks import deliveries, sealing
from relay_helpers import webhook_audits

URL = "https://hooks.example/booking"


def schema_errors(instance, name: str) -> list[str]:
    doc = document()
    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    validator = jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


@pytest.fixture
def hooks_settings(settings):
    return dataclasses.replace(settings, webhooks_keys=(sealing.new_key(),), webhooks_rotation_overlap_seconds=600)


@pytest.fixture
def client(hooks_settings):
    return create_app({"TESTING": True, "SETTINGS": hooks_settings}).test_client()


@pytest.fixture
def other_auth(db_conn) -> dict:
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    return {"Authorization": f"Bearer {tenants.create_token(db_conn, other['id'])['token']}"}


def create(client, auth, **fields):
    resp = client.post("/api/v1/webhooks/endpoints", json={"url": URL, **fields}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp


def test_create_answers_201_with_the_secret_once(client, auth, db_conn):
    resp = create(client, auth, description="PMS", event_types=["booking.created"])
    body = resp.get_json()
    assert schema_errors(body, "WebhookEndpointWithSecret") == []
    assert body["secret"].startswith("whsec_") and body["url"] == URL and body["enabled"] is True
    assert resp.headers["Location"] == f"/api/v1/webhooks/endpoints/{body['id']}"
    assert resp.headers["Cache-Control"] == "no-store"
    listed = client.get("/api/v1/webhooks/endpoints", headers=auth).get_json()
    assert schema_errors(listed, "WebhookEndpointList") == []
    assert [e["id"] for e in listed["items"]] == [body["id"]]
    one = client.get(resp.headers["Location"], headers=auth)
    assert "secret" not in one.get_json() and body["secret"] not in one.get_data(as_text=True)
    stored = db_conn.execute("SELECT secret FROM webhook_endpoints WHERE id = %s", (body["id"],)).fetchone()
    assert body["secret"] not in stored["secret"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "url"), ({"url": "ftp://hooks.example/"}, "url"), ({"url": "http://169.254.169.254/latest"}, "url"),
    ({"url": "http://127.0.0.1:8080/"}, "url"), ({"url": "http://[::ffff:127.0.0.1]/"}, "url"),
    ({"url": URL, "event_types": ["booking.deleted"]}, "event_types"), ({"url": URL, "enabled": 1}, "enabled"),
    ({"url": URL, "secret": "whsec_mine"}, "secret"), ([URL], ""),
])
def test_bad_input_is_422_naming_the_field_and_creates_nothing(client, auth, body, field):
    resp = client.post("/api/v1/webhooks/endpoints", json=body, headers=auth)
    assert resp.status_code == 422
    assert [e["field"] for e in resp.get_json()["errors"]] == [field]
    assert schema_errors(resp.get_json(), "Problem") == []
    assert client.get("/api/v1/webhooks/endpoints", headers=auth).get_json()["items"] == []


def test_another_tenant_sees_nothing_and_changes_nothing(client, auth, other_auth):
    endpoint = create(client, auth).get_json()
    path = f"/api/v1/webhooks/endpoints/{endpoint['id']}"
    assert client.get("/api/v1/webhooks/endpoints", headers=other_auth).get_json()["items"] == []
    assert client.get(path, headers=other_auth).status_code == 404
    assert client.patch(path, json={"enabled": False}, headers=other_auth).status_code == 404
    assert client.delete(path, headers=other_auth).status_code == 404
    assert client.post(f"{path}/rotate-secret", headers=other_auth).status_code == 404
    assert client.get(f"{path}/deliveries", headers=other_auth).status_code == 404
    assert client.get(path, headers=auth).get_json()["enabled"] is True


def test_patch_delete_and_rotate(client, auth):
    endpoint = create(client, auth).get_json()
    path = f"/api/v1/webhooks/endpoints/{endpoint['id']}"
    resp = client.patch(path, json={"enabled": False, "description": "paused"}, headers=auth)
    assert resp.status_code == 200 and resp.get_json()["enabled"] is False
    assert client.patch(path, json={"url": "gopher://x"}, headers=auth).get_json()["errors"][0]["field"] == "url"
    assert client.patch(path, json={}, headers=auth).status_code == 422
    rotated = client.post(f"{path}/rotate-secret", headers=auth)
    assert rotated.status_code == 200
    body = rotated.get_json()
    assert schema_errors(body, "WebhookEndpointWithSecret") == []
    assert body["secret"] != endpoint["secret"] and body["previous_secret_until"] is not None
    until = datetime.fromisoformat(body["previous_secret_until"])
    assert timedelta(minutes=9) < until - datetime.now(UTC) <= timedelta(minutes=10)
    bad = client.post(f"{path}/rotate-secret", json={"overlap_seconds": -1}, headers=auth)
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "overlap_seconds"
    assert client.delete(path, headers=auth).status_code == 204
    assert client.get(path, headers=auth).status_code == 404
    assert client.delete(path, headers=auth).status_code == 404


def test_without_a_key_webhooks_are_unavailable(settings, auth):
    client = create_app({"TESTING": True, "SETTINGS": settings}).test_client()
    resp = client.post("/api/v1/webhooks/endpoints", json={"url": URL}, headers=auth)
    assert resp.status_code == 503 and "BOOKING_WEBHOOKS_KEY" in resp.get_json()["detail"]


def test_delivery_log_and_replay(client, auth, other_auth, booking_body, db_conn):
    endpoint = create(client, auth).get_json()
    booking = client.post("/api/v1/bookings", json=booking_body(), headers=auth).get_json()
    path = f"/api/v1/webhooks/endpoints/{endpoint['id']}"
    assert client.get(f"{path}/deliveries", headers=auth).get_json()["items"] == []  # the worker fans out
    [event] = db_conn.execute("SELECT id::text, tenant_id::text FROM webhook_events WHERE booking_id = %s",
                              (booking["id"],)).fetchall()
    deliveries.fan_out(db_conn, event["id"], event["tenant_id"])
    log = client.get(f"{path}/deliveries", headers=auth).get_json()
    assert schema_errors(log, "WebhookDeliveryPage") == []
    [delivery] = log["items"]
    assert (delivery["event_type"], delivery["booking_id"], delivery["sequence"], delivery["state"]) == (
        "booking.created", booking["id"], 1, "pending")
    assert delivery["webhook_id"].startswith("msg_")
    assert client.get(f"{path}/deliveries?state=bogus", headers=auth).get_json()["errors"][0]["field"] == "state"
    assert client.get(f"{path}/deliveries?limit=0", headers=auth).get_json()["errors"][0]["field"] == "limit"
    superscript = client.get(f"{path}/deliveries?limit=\u00b2", headers=auth)  # a digit int() cannot read
    assert superscript.status_code == 422 and superscript.get_json()["errors"][0]["field"] == "limit"
    one = f"/api/v1/webhooks/deliveries/{delivery['id']}"
    assert schema_errors(client.get(one, headers=auth).get_json(), "WebhookDeliveryDetail") == []
    assert client.get(one, headers=other_auth).status_code == 404
    assert client.post(f"{one}/replay", headers=auth).status_code == 409  # still being tried
    db_conn.execute("UPDATE webhook_deliveries SET state = 'dead' WHERE id = %s", (delivery["id"],))
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    dry = client.post(f"{path}/replay", json={"since": since, "dry_run": True}, headers=auth)
    assert dry.get_json() == {"matched": 1, "dry_run": True}
    assert client.post(f"{path}/replay", json={"since": "yesterday"}, headers=auth).get_json()[
        "errors"][0]["field"] == "since"
    assert client.post(f"{one}/replay", headers=other_auth).status_code == 404
    replayed = client.post(f"{one}/replay", headers=auth)
    assert replayed.status_code == 202 and schema_errors(replayed.get_json(), "ReplayResult") == []
    assert client.get(one, headers=auth).get_json()["state"] == "pending"
    assert client.post(f"{path}/replay", json={"since": since}, headers=auth).get_json() == {
        "matched": 0, "dry_run": False}


def test_each_replay_is_audited_once_as_the_calling_token(client, auth, other_auth, booking_body, db_conn, tenant):
    endpoint = create(client, auth).get_json()
    booking = client.post("/api/v1/bookings", json=booking_body(), headers=auth).get_json()
    [event] = db_conn.execute("SELECT id::text FROM webhook_events WHERE booking_id = %s", (booking["id"],))
    deliveries.fan_out(db_conn, event["id"], tenant["id"])
    db_conn.execute("UPDATE webhook_deliveries SET state = 'dead' WHERE endpoint_id = %s", (endpoint["id"],))
    [delivery] = db_conn.execute("SELECT id::text FROM webhook_deliveries WHERE endpoint_id = %s", (endpoint["id"],))
    prefix = db_conn.execute("SELECT prefix FROM api_tokens WHERE tenant_id = %s", (tenant["id"],)).fetchone()["prefix"]
    actor = f"token:{prefix} (tenant {tenant['name']})"
    one = f"/api/v1/webhooks/deliveries/{delivery['id']}/replay"
    # Refused replays (another tenant's delivery, no such delivery) write nothing.
    assert client.post(one, headers=other_auth).status_code == 404
    assert client.post(f"/api/v1/webhooks/deliveries/{uuid.uuid4()}/replay", headers=auth).status_code == 404
    assert webhook_audits(db_conn, tenant["id"]) == []
    assert client.post(one, headers=auth).status_code == 202
    [entry] = webhook_audits(db_conn, tenant["id"])
    assert (entry["kind"], entry["actor"], entry["details"]["delivery_id"]) == ("webhook.replayed", actor,
                                                                               delivery["id"])
    db_conn.execute("UPDATE webhook_deliveries SET state = 'dead' WHERE id = %s", (delivery["id"],))
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    path = f"/api/v1/webhooks/endpoints/{endpoint['id']}/replay"
    assert client.post(path, json={"since": since, "dry_run": True}, headers=auth).get_json()["matched"] == 1
    assert len(webhook_audits(db_conn, tenant["id"])) == 1  # a dry run writes nothing
    assert client.post(path, json={"since": since}, headers=auth).get_json() == {"matched": 1, "dry_run": False}
    entry = webhook_audits(db_conn, tenant["id"])[-1]
    assert (entry["kind"], entry["actor"]) == ("webhook.replayed_since", actor)
    assert entry["details"] == {"endpoint_id": endpoint["id"], "since": datetime.fromisoformat(since).isoformat(),
                                "count": 1}
    assert len(webhook_audits(db_conn, tenant["id"])) == 2
