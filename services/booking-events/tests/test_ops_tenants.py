"""The console's tenants page over real HTTP, on real Postgres and Redis: plans shown, changed as the operator."""

from __future__ import annotations

import html
import http.client
import re
import uuid
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


def page_with(console, name: str) -> str:
    """The tenants page that lists `name`, reached as an operator would: following "Next page"."""
    path = "/ops/tenants"
    while True:
        status, _, page = console.request("GET", path)
        assert status == 200, page[:300]
        if f'<th scope="row">{html.escape(name)}</th>' in page:
            return page
        found = re.search(r'<a rel="next" href="([^"]+)"', page)
        assert found, f"{name} is on no page"
        path = html.unescape(found.group(1))


def test_the_page_shows_each_tenants_plan_and_sets_and_resets_one_as_the_operator(console, db_conn, tenant):
    assert "(default)" in row_of(page_with(console, tenant["name"]), tenant["name"])
    form = {"tenant": tenant["name"], "name": "gold", "rate_per_second": "12.5", "burst": "120", "weight": "3"}
    status, headers, _ = console.post("/ops/tenants/set", form)
    assert status == 303 and headers["location"] == "/ops/tenants"
    assert plans.own_plan(db_conn, tenant["id"]) == plans.Plan("gold", 12.5, 120, 3)
    row = html.unescape(row_of(page_with(console, tenant["name"]), tenant["name"]))
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


def test_the_page_pages_by_name_so_every_tenant_is_reachable(console, db_conn, monkeypatch):
    from booking_events import ops_tenants

    names = sorted(tenants.ensure_tenant(db_conn, f"paging-{i}-{uuid.uuid4().hex[:8]}")["name"] for i in range(3))
    monkeypatch.setattr(ops_tenants, "PAGE", 1)
    status, _, page = console.request("GET", "/ops/tenants?" + urlencode({"after": names[0]}))
    assert status == 200 and re.findall(r'<th scope="row">([^<]+)</th>', page) == [names[1]]
    assert f'href="/ops/tenants?after={names[1]}"' in page and ">First page<" in page
    assert "Next page" in console.request("GET", "/ops/tenants?" + urlencode({"after": names[1]}))[2]
    assert console.request("GET", "/ops/tenants?after=" + "x" * 201)[0] == 400
