"""The console's tenants page over real HTTP, on real Postgres and Redis: plans shown, changed as the operator."""

from __future__ import annotations

import html
import http.client
import re
from urllib.parse import urlencode

import pytest

from booking_core.model import plans, tenants
from booking_core.queues.pauses import OPS_TENANT_ID


class Console:
    """A signed-in browser: its session cookie and CSRF token."""

    def __init__(self, port: int, token: str):
        self.port, self.cookie = port, ""
        status, headers, _ = self.request("POST", "/ops/sign-in", {"token": token})
        assert status == 303, status
        self.cookie = next(c.split(";")[0] for c in headers["set-cookie"] if c.startswith("ops_session="))

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict, str]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Cookie": self.cookie} if self.cookie else {}
        if form is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=urlencode(form) if form is not None else None, headers=h)
        r = c.getresponse()
        out = {"location": r.headers.get("Location"), "set-cookie": r.headers.get_all("Set-Cookie") or []}
        text = r.read().decode()
        c.close()
        return r.status, out, text

    def post(self, path: str, form: dict) -> tuple[int, dict, str]:
        page = self.request("GET", "/ops/tenants")[2]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        return self.request("POST", path, form | {"csrf": csrf})


@pytest.fixture
def console(events_port, db_conn, tenant) -> Console:
    admin = tenants.create_token(db_conn, tenant["id"], admin=True, label="Grace")
    return Console(events_port, admin["token"])


def audited(db_conn, tenant_id: str) -> list[dict]:
    return [r["payload"] for r in db_conn.execute(
        "SELECT payload FROM outbox WHERE payload->>'tenant_id' = %s AND payload->>'kind' LIKE 'plan.%%'"
        " AND payload->'details'->>'tenant_id' = %s ORDER BY id", (OPS_TENANT_ID, tenant_id))]


def row_of(page: str, name: str) -> str:
    return re.search(rf'<th scope="row">{re.escape(name)}</th>(.*?)</tr>', page, re.S).group(1)


def test_the_page_shows_each_tenants_plan_and_sets_and_resets_one_as_the_operator(console, db_conn, tenant):
    status, _, page = console.request("GET", "/ops/tenants")
    assert status == 200 and "(default)" in row_of(page, tenant["name"])
    form = {"tenant": tenant["name"], "name": "gold", "rate_per_second": "12.5", "burst": "120", "weight": "3"}
    status, headers, _ = console.post("/ops/tenants/set", form)
    assert status == 303 and headers["location"] == "/ops/tenants"
    assert plans.own_plan(db_conn, tenant["id"]) == plans.Plan("gold", 12.5, 120, 3)
    row = html.unescape(row_of(console.request("GET", "/ops/tenants")[2], tenant["name"]))
    assert "gold" in row and "12.5" in row and "120" in row and "(default)" not in row and "Grace" in row
    assert console.post("/ops/tenants/reset", {"tenant": tenant["name"]})[0] == 303
    assert plans.own_plan(db_conn, tenant["id"]) is None
    events = audited(db_conn, tenant["id"])
    assert [e["kind"] for e in events] == ["plan.changed", "plan.reset"]
    assert all("Grace" in e["actor"] for e in events)


@pytest.mark.parametrize(("change", "field"), [
    ({"rate_per_second": "fast"}, "rate_per_second"),
    ({"rate_per_second": "0"}, "rate_per_second"),
    ({"burst": "2.5"}, "burst"),
    ({"weight": "0"}, "weight"),
    ({"name": "<b>Gold</b>"}, "name"),
])
def test_a_bad_field_is_named_and_changes_nothing(console, db_conn, tenant, change, field):
    form = {"tenant": tenant["name"], "name": "gold", "rate_per_second": "1", "burst": "1", "weight": "1"} | change
    status, _, page = console.post("/ops/tenants/set", form)
    assert status == 400 and f"The field “{field}”" in page and "<b>Gold</b>" not in page
    assert plans.own_plan(db_conn, tenant["id"]) is None and audited(db_conn, tenant["id"]) == []


def test_an_unknown_tenant_or_a_forged_form_changes_nothing(console, events_port, db_conn, tenant):
    assert console.post("/ops/tenants/reset", {"tenant": "no-such-tenant"})[0] == 404
    form = {"tenant": tenant["name"], "name": "gold", "rate_per_second": "1", "burst": "1", "weight": "1"}
    assert console.request("POST", "/ops/tenants/set", form | {"csrf": "forged"})[0] == 403
    assert plans.own_plan(db_conn, tenant["id"]) is None
