"""Who is filling each queue in `GET /api/v1/ops/queues`: the top tenants by outbox backlog, bounded, as documented."""

from __future__ import annotations

import json
import uuid

import jsonschema
import pytest

from booking_api import ops_views
from booking_api.openapi_doc import document
from booking_core.model import tenants
from booking_core.queues.tenant_backlog import SharedReading
from relay_helpers import fill_outbox

#: An outbox row's tenant id is payload text, not a tenant's: JSON, markup and control characters.
ODD_ID = 'x"}],"name":"<b>\x1b[31m\u202e'


def schema_errors(instance) -> list[str]:
    """Why `instance` does not match the document's `QueueDepths` ([] if it does)."""
    root = {"$ref": "#/components/schemas/QueueDepths", "components": document()["components"]}
    return [e.message for e in jsonschema.Draft202012Validator(root).iter_errors(instance)]


@pytest.fixture
def outbox(db_conn, monkeypatch):
    """An outbox of this test's rows only, read afresh on every request."""
    monkeypatch.setattr(ops_views, "WHO_FILLS", SharedReading(ttl=0))
    db_conn.execute("DELETE FROM outbox")
    yield
    db_conn.execute("DELETE FROM outbox")


def test_the_queues_list_names_the_top_tenants_by_backlog_and_sums_the_rest(client, admin_auth, db_conn, outbox):
    name = f"flood-{uuid.uuid4().hex[:8]}"
    flood = tenants.ensure_tenant(db_conn, name)["id"]
    fill_outbox(db_conn, flood, "invoice", 40)
    db_conn.execute("UPDATE outbox SET created_at = created_at - interval '90 seconds'")
    fill_outbox(db_conn, ODD_ID, "invoice", 25)
    db_conn.execute("UPDATE outbox SET available_at = clock_timestamp() + interval '1 hour' WHERE id IN "
                    "(SELECT id FROM outbox WHERE payload->>'tenant_id' = %s LIMIT 5)", (ODD_ID,))
    for _ in range(12):
        fill_outbox(db_conn, str(uuid.uuid4()), "invoice", 1)
    resp = client.get("/api/v1/ops/queues", headers=admin_auth)
    assert resp.status_code == 200
    assert schema_errors(resp.get_json()) == []
    queues = {q["queue"]: q for q in resp.get_json()["queues"]}
    top = queues["invoice"]["top_tenants"]
    assert len(top) == 10, "bounded: ten tenants, whatever the count"
    assert {k: top[0][k] for k in ("tenant_id", "name", "waiting", "later")} == {
        "tenant_id": flood, "name": name, "waiting": 40, "later": 0}
    assert 90 <= top[0]["oldest_waiting_age_seconds"] < 3600
    assert (top[1]["tenant_id"], top[1]["name"], top[1]["waiting"], top[1]["later"]) == (ODD_ID, None, 20, 5)
    assert queues["invoice"]["other_tenants"] | {"oldest_waiting_age_seconds": 0} == {
        "tenants": 4, "messages": 4, "oldest_waiting_age_seconds": 0}
    assert queues["email"]["top_tenants"] == [] and queues["email"]["other_tenants"]["tenants"] == 0
    # The odd id travels as JSON text: escaped in the body, the same string back
    assert "\x1b" not in resp.get_data(as_text=True) and json.loads(resp.get_data())["queues"]


def test_the_queues_list_reads_who_fills_them_on_the_requests_own_connection(client, admin_auth, db_conn, outbox,
                                                                             monkeypatch):
    """The API bounds its connections with its own pool (booking_api.database); this reading must not open
    booking_core's beside it, an unbounded one holding a connection per process."""
    from booking_core import db

    def refused(*args, **kwargs):
        raise AssertionError("booking_core.db.pool opened in the API process")

    fill_outbox(db_conn, "", "email", 3)
    monkeypatch.setattr(db, "pool", refused)
    resp = client.get("/api/v1/ops/queues", headers=admin_auth)
    assert resp.status_code == 200
    email = {q["queue"]: q for q in resp.get_json()["queues"]}["email"]
    assert [(t["tenant_id"], t["waiting"]) for t in email["top_tenants"]] == [("", 3)]
