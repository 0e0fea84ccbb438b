"""The API and the ops console act on dead letters one way: the same filter errors, the same bulk jobs.

Both front ends are real here: the Flask API (its test client) and the console
over HTTP, on one Postgres.  The same bad filter goes to the API's list, its
bulk body and the console's list and bulk pages; every answer names the same
fields with the same messages (booking_core.ops.filters).  A bulk job started
from either is the same job on the other.  It lives with the console's tests
because the console is the one served from a thread here.
"""

from __future__ import annotations

import html as html_lib
import re
from urllib.parse import urlencode

import pytest

from booking_api import create_app
from e2e_helpers import wait_until

#: Bad filters, as a query string would carry them (one or several bad fields each).
BAD = [
    {"queue": "sms"},
    {"tenant": "no-such-tenant"},
    {"tenant": "Not A Name!"},
    {"error": "x" * 201},
    {"error": "bell \x07"},
    {"dead_since": "yesterday"},
    {"dead_since": "2026-02-30T12:00:00Z"},
    {"dead_since": "2026-11-30T12:00:00Z", "dead_before": "2026-11-30T11:00:00Z"},
    {"queue": "sms", "dead_before": "soon"},
]


def page_errors(page: str) -> list[dict]:
    """The field errors an invalid-filter page lists, as the API's `errors`."""
    return [{"field": f, "message": html_lib.unescape(m)}
            for f, m in re.findall(r'<li data-field="([^"]+)">The field “[^”]+” <span class="message">(.*?)</span>',
                                   page)]


@pytest.fixture
def api(settings):
    return create_app({"TESTING": True, "SETTINGS": settings}).test_client()


@pytest.mark.parametrize("bad", BAD, ids=lambda b: "+".join(b))
def test_the_same_bad_filter_gets_the_same_field_errors_from_the_api_and_the_console(api, console, admin, bad,
                                                                                     db_conn):
    auth = {"Authorization": f"Bearer {admin['token']}"}
    jobs = db_conn.execute("SELECT count(*) AS n FROM ops_bulk_jobs").fetchone()["n"]
    listed = api.get("/api/v1/ops/dead-letters", query_string=bad, headers=auth)
    assert listed.status_code == 422 and listed.content_type == "application/problem+json"
    expected = listed.get_json()["errors"]
    assert expected and {e["field"] for e in expected} <= set(bad), expected
    bulk = api.post("/api/v1/ops/dead-letters/requeue", json=bad, headers=auth)
    assert (bulk.status_code, bulk.get_json()["errors"]) == (422, expected)

    status, _, page = console.get(f"/ops/dead-letters?{urlencode(bad)}")
    assert (status, page_errors(page)) == (422, expected)
    status, _, page = console.get(f"/ops/dead-letters/bulk?{urlencode({'action': 'requeue', **bad})}")
    assert (status, page_errors(page)) == (422, expected)
    status, _, page = console.post("/ops/dead-letters/bulk", {"action": "requeue", **bad, "csrf": console.csrf()})
    assert (status, page_errors(page)) == (422, expected)
    assert db_conn.execute("SELECT count(*) AS n FROM ops_bulk_jobs").fetchone()["n"] == jobs, "no job started"


def _letter(db_conn, tenant, make_booking, error: str) -> str:
    booking_id = make_booking()
    db_conn.execute("UPDATE booking_tasks SET state = 'dead' WHERE booking_id = %s AND task = 'email'",
                    (booking_id,))
    return db_conn.execute(
        "INSERT INTO dead_letters (message_id, queue, actor, task, tenant_id, booking_id, kwargs, error, attempts)"
        " VALUES (gen_random_uuid(), 'email', 'send_confirmation_email', 'email', %s, %s, '{}', %s, 4)"
        " RETURNING id::text", (tenant["id"], booking_id, error)).fetchone()["id"]


def test_a_job_started_from_the_api_is_the_consoles_and_the_reverse(api, console, admin, db_conn, tenant,
                                                                    make_booking, bulk_runner):
    auth = {"Authorization": f"Bearer {admin['token']}"}
    _letter(db_conn, tenant, make_booking, "from the API")
    _letter(db_conn, tenant, make_booking, "from the console")

    started = api.post("/api/v1/ops/dead-letters/discard", json={"tenant": tenant["name"], "error": "from the API"},
                       headers=auth)
    assert started.status_code == 202
    job_id = started.get_json()["id"]
    def finished_page() -> str | None:
        page = console.get(f"/ops/jobs/{job_id}")[2]
        return page if 'id="job-state">finished<' in page else None

    page = wait_until(finished_page, timeout=30, what="the API's job finished on the console's page")
    assert '<strong data-field="done">1</strong>' in page and "token:" in page

    status, headers, _ = console.post("/ops/dead-letters/bulk", {"action": "requeue", "tenant": tenant["name"],
                                                                "error": "from the console",
                                                                "csrf": console.csrf()})
    assert status == 303
    job_path = "/api/v1" + headers["location"]
    def finished_job() -> dict | None:
        job = api.get(job_path, headers=auth).get_json()
        return job if job["state"] == "finished" else None

    job = wait_until(finished_job, timeout=30, what="the console's job finished in the API")
    assert (job["action"], job["counts"]) == ("requeue", {"done": 1, "total": 1})
    assert job["actor"].startswith("ops:Grace")


def test_the_api_and_booking_events_send_the_same_security_headers(api, events_port):
    """One definition (booking_core.web.headers): JSON from either carries it, pages add their stricter own."""
    import http.client

    from booking_core.web.headers import BASE_SECURITY_HEADERS, FORM_SECURITY_HEADERS

    c = http.client.HTTPConnection("127.0.0.1", events_port, timeout=10)
    c.request("GET", "/healthz")
    events = c.getresponse()
    events.read()
    c.request("GET", "/ops/")
    page = c.getresponse()
    page.read()
    c.close()
    from_api = api.get("/healthz")
    for name, value in BASE_SECURITY_HEADERS.items():
        assert events.getheader(name) == from_api.headers.get(name) == value, name
    assert {k: page.getheader(k) for k in FORM_SECURITY_HEADERS} == FORM_SECURITY_HEADERS
