"""The admin API's tenants' plans on real Postgres and Redis: list, show, set, reset; bad input changes nothing."""

from __future__ import annotations

import pytest

from booking_core.model import plans
from booking_core.queues.pauses import OPS_TENANT_ID

GOLD = {"name": "gold", "rate_per_second": 20, "burst": 200, "weight": 2}


def audited(db_conn, tenant_id: str) -> list[dict]:
    return [r["payload"] for r in db_conn.execute(
        "SELECT payload FROM outbox WHERE payload->>'tenant_id' = %s AND payload->>'kind' LIKE 'plan.%%'"
        " AND payload->'details'->>'tenant_id' = %s ORDER BY id", (OPS_TENANT_ID, tenant_id))]


def test_set_show_and_reset_a_tenants_plan_audited_as_the_admin_token(client, admin_auth, tenant, db_conn):
    url = f"/api/v1/ops/tenants/{tenant['name']}"
    shown = client.get(url, headers=admin_auth).get_json()
    assert shown == {"tenant_id": tenant["id"], "tenant": tenant["name"], "own": False,
                     "plan": {"name": "default", "rate_per_second": 50.0, "burst": 500, "weight": 1}}
    put = client.put(url + "/plan", json=GOLD, headers=admin_auth)
    assert put.status_code == 200
    body = put.get_json()
    assert body["changed"] is True and body["own"] is True and body["plan"] == {**GOLD, "rate_per_second": 20.0}
    assert body["updated_by"].startswith("token:")
    assert client.put(url + "/plan", json=GOLD, headers=admin_auth).get_json()["changed"] is False
    assert client.get(f"/api/v1/ops/tenants/{tenant['id']}", headers=admin_auth).get_json()["plan"]["name"] == "gold"
    reset = client.delete(url + "/plan", headers=admin_auth).get_json()
    assert reset["changed"] is True and reset["own"] is False
    assert client.delete(url + "/plan", headers=admin_auth).get_json()["changed"] is False
    events = audited(db_conn, tenant["id"])
    assert [e["kind"] for e in events] == ["plan.changed", "plan.reset"]
    assert events[0]["actor"] == body["updated_by"]


def test_a_new_plan_applies_to_the_tenants_next_booking(client, admin_auth, auth, tenant, booking_body):
    url = f"/api/v1/ops/tenants/{tenant['name']}/plan"
    assert client.put(url, json={**GOLD, "burst": 1, "rate_per_second": 0.01}, headers=admin_auth).status_code == 200
    assert [client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code for _ in range(2)] == [
        201, 429]
    assert client.put(url, json={**GOLD, "burst": 5, "rate_per_second": 0.01}, headers=admin_auth).status_code == 200
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 201


@pytest.mark.parametrize(("change", "field"), [
    ({"rate_per_second": 0}, "rate_per_second"),
    ({"rate_per_second": -3}, "rate_per_second"),
    ({"rate_per_second": 100_001}, "rate_per_second"),
    ({"rate_per_second": "5"}, "rate_per_second"),
    ({"rate_per_second": True}, "rate_per_second"),
    ({"burst": 0}, "burst"),
    ({"burst": 2.5}, "burst"),
    ({"burst": "5"}, "burst"),
    ({"weight": True}, "weight"),
    ({"burst": 1_000_001}, "burst"),
    ({"weight": 0}, "weight"),
    ({"weight": 1001}, "weight"),
    ({"name": "Gold Plan"}, "name"),
    ({"name": ""}, "name"),
    ({"name": 7}, "name"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_plan_is_a_422_naming_the_field_and_changes_nothing(client, admin_auth, tenant, db_conn, change, field):
    response = client.put(f"/api/v1/ops/tenants/{tenant['name']}/plan", json=GOLD | change, headers=admin_auth)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert [e["field"] for e in response.get_json()["errors"]] == [field]
    assert plans.own_plan(db_conn, tenant["id"]) is None and audited(db_conn, tenant["id"]) == []


def test_whole_numbers_may_be_written_with_a_zero_fraction_as_json_schema_counts_them(client, admin_auth, tenant,
                                                                                    db_conn):
    body = GOLD | {"burst": 200.0, "weight": 2.0}
    assert client.put(f"/api/v1/ops/tenants/{tenant['name']}/plan", json=body, headers=admin_auth).status_code == 200
    assert plans.own_plan(db_conn, tenant["id"]) == plans.Plan("gold", 20.0, 200, 2)


def test_a_missing_field_is_named(client, admin_auth, tenant, db_conn):
    response = client.put(f"/api/v1/ops/tenants/{tenant['name']}/plan", json={"name": "gold"}, headers=admin_auth)
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.get_json()["errors"]) == ["burst", "rate_per_second", "weight"]
    assert plans.own_plan(db_conn, tenant["id"]) is None


def test_plans_are_for_admin_tokens_only_and_unknown_tenants_are_404(client, auth, admin_auth, tenant, db_conn):
    url = f"/api/v1/ops/tenants/{tenant['name']}/plan"
    assert client.put(url, json=GOLD, headers=auth).status_code == 403
    assert client.get("/api/v1/ops/tenants", headers=auth).status_code == 403
    assert plans.own_plan(db_conn, tenant["id"]) is None
    assert client.put("/api/v1/ops/tenants/no-such-tenant/plan", json=GOLD, headers=admin_auth).status_code == 404
    assert client.get("/api/v1/ops/tenants/no-such-tenant", headers=admin_auth).status_code == 404


def test_the_list_pages_by_name_and_leaves_the_platforms_own_tenant_out(client, admin_auth, db_conn):
    from booking_core.model import tenants

    names = sorted(tenants.ensure_tenant(db_conn, f"zz-page-{i}-{OPS_TENANT_ID[:6]}")["name"] for i in range(3))
    first = client.get("/api/v1/ops/tenants", query_string={"after": "zz-page-", "limit": 2}, headers=admin_auth)
    page = first.get_json()
    assert [t["tenant"] for t in page["items"]] == names[:2] and page["next_after"] == names[1]
    rest = client.get("/api/v1/ops/tenants", query_string={"after": page["next_after"], "limit": 2},
                      headers=admin_auth).get_json()
    assert [t["tenant"] for t in rest["items"]][:1] == names[2:]
    everyone = client.get("/api/v1/ops/tenants", query_string={"limit": 500}, headers=admin_auth).get_json()
    assert "platform-ops" not in {t["tenant"] for t in everyone["items"]}
    assert client.get("/api/v1/ops/tenants", query_string={"limit": 0}, headers=admin_auth).status_code == 422
