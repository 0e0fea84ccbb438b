"""The ops console over real HTTP, on the session's real Postgres and Redis.

Sign-in with admin and client tokens, the session cookie's attributes,
revocation, CSRF and Origin checks, the dead-letter filters, the actions (each
audited with the operator), the bulk job, and the audit pages.  The browser
test (tests/test_ops_console_browser.py) drives the same pages in Chromium.
"""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import urlencode

import pytest
from console_client import Client

from booking_core.audit import chain
from booking_core.messaging.contracts import audit_payload
from booking_core.model import tenants
from booking_core.tasks import deadletters
from e2e_helpers import wait_until


@pytest.fixture
def dead_letter(db_conn, tenant, make_booking, set_task):
    """Factory: a booking whose email task is dead, with its letter recorded as the worker records it."""

    def make(error: str = "SMTP refused: connection refused (smtp.internal:25)") -> tuple[str, str]:
        booking_id = make_booking()
        set_task(booking_id, "email", "dead", attempts=4, last_error=error)
        row = db_conn.execute(
            "INSERT INTO dead_letters (message_id, queue, actor, task, tenant_id, booking_id, kwargs, error, attempts)"
            " VALUES (%s, 'email', 'send_confirmation_email', 'email', %s, %s, %s, %s, 4) RETURNING id::text",
            (str(uuid.uuid4()), tenant["id"], booking_id,
             f'{{"task": "email", "booking_id": "{booking_id}", "tenant_id": "{tenant["id"]}"}}', error)).fetchone()
        return row["id"], booking_id

    return make


def test_an_admin_token_signs_in_to_a_strict_session_cookie(events_port, admin, db_conn):
    c = Client(events_port)
    status, headers, _ = c.sign_in(admin["token"])
    assert status == 303
    cookie = next(h for h in headers["set-cookie-all"] if h.startswith("ops_session="))
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path=/ops", "samesite=strict"} <= attrs
    assert "secure" not in attrs, "plain HTTP without a trusted proxy: a Secure cookie would never come back"
    session_id = cookie.split(";")[0].split("=", 1)[1]
    stored = db_conn.execute("SELECT id_hash, operator FROM ops_sessions WHERE token_id = %s",
                             (admin["id"],)).fetchall()
    assert len(stored) == 1 and session_id.encode() not in bytes(stored[0]["id_hash"])
    assert stored[0]["operator"].startswith("ops:Grace <on call> (tenant ")
    status, _, html = c.get("/ops/queues")
    assert status == 200 and "Grace &lt;on call&gt;" in html and "<on call>" not in html


def test_a_client_token_cannot_sign_in(events_port, token, db_conn):
    c = Client(events_port)
    before = db_conn.execute("SELECT count(*) AS n FROM ops_sessions").fetchone()["n"]
    status, headers, html = c.sign_in(token)
    assert status == 401 and "This is a client token" in html and "needs an admin token" in html
    assert not headers["set-cookie-all"]
    assert db_conn.execute("SELECT count(*) AS n FROM ops_sessions").fetchone()["n"] == before
    status, headers, _ = c.get("/ops/queues")
    assert status == 303 and headers["location"] == "/ops/"


@pytest.mark.parametrize("bad", ["", "bk_not-a-real-token", "x" * 5000])
def test_an_unknown_token_is_refused_without_a_session(events_port, bad):
    status, headers, html = Client(events_port).sign_in(bad)
    assert status in (400, 401) and not headers["set-cookie-all"]
    assert "token" in html.lower()


def test_a_revoked_token_ends_its_session(console, admin, db_conn):
    assert console.get("/ops/queues")[0] == 200
    tenants.revoke_token(db_conn, admin["id"])
    status, headers, _ = console.get("/ops/queues")
    assert status == 303 and headers["location"] == "/ops/"


def test_https_behind_a_trusted_proxy_makes_the_cookie_secure(events_port, admin):
    # The test app does not trust X-Forwarded-Proto (the default): the header changes nothing.
    _, headers, _ = Client(events_port).sign_in(admin["token"], headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in headers["set-cookie-all"][0].lower()


def test_sign_out_needs_the_csrf_token_and_deletes_the_session(console, admin, db_conn):
    status, _, html = console.post("/ops/sign-out", {})
    assert status == 403 and "Nothing was changed" in html
    assert console.get("/ops/queues")[0] == 200
    status, headers, _ = console.post("/ops/sign-out", {"csrf": console.csrf()})
    assert status == 303 and headers["location"] == "/ops/"
    assert db_conn.execute("SELECT count(*) AS n FROM ops_sessions WHERE token_id = %s",
                           (admin["id"],)).fetchone()["n"] == 0
    assert console.get("/ops/queues")[0] == 303


def test_a_forged_post_changes_nothing(console, dead_letter, db_conn):
    dead_id, _ = dead_letter()
    csrf = console.csrf()
    forged = [({}, {}), ({"csrf": "guess"}, {}), ({"csrf": csrf}, {"Origin": "https://evil.example"}),
              ({"csrf": csrf}, {"Origin": "null"})]
    for form, headers in forged:
        status, _, html = console.post(f"/ops/dead-letters/{dead_id}/requeue", form, headers=headers)
        assert status == 403, (form, headers)
        assert "Request refused" in html
    status, _, _ = console.post("/ops/dead-letters/bulk", {"action": "discard"})
    assert status == 403
    assert db_conn.execute("SELECT resolved_at FROM dead_letters WHERE id = %s", (dead_id,)).fetchone()[
        "resolved_at"] is None


def test_the_queues_page_shows_every_queue_and_its_dead_letters(console, dead_letter):
    dead_letter()
    status, headers, html = console.get("/ops/queues")
    assert status == 200
    assert "form-action 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    for q in ("email", "invoice", "audit"):
        assert f'data-queue="{q}"' in html and f'data-field="{q}.busy"' in html
    dead = re.search(r'data-field="email\.dead">(\d+)<', html)
    assert dead and int(dead.group(1)) >= 1
    assert "<script>" not in html and " style=" not in html


@pytest.mark.usefixtures("no_queue_pauses")
def test_an_operator_pauses_and_resumes_a_queue_from_the_console(console, db_conn):
    # Given the invoice queue running
    _, _, html = console.get("/ops/queues")
    assert 'data-field="invoice.paused">running<' in html and 'action="/ops/queues/invoice/pause"' in html
    # When the operator pauses it with a reason (one that needs escaping)
    status, headers, _ = console.post("/ops/queues/invoice/pause",
                                      {"csrf": console.csrf(), "reason": "PDF <b>upgrade</b>"})
    # Then the pause is stored as theirs, shown escaped, and the form now resumes
    assert status == 303 and headers["location"] == "/ops/queues"
    row = db_conn.execute("SELECT paused_by, reason FROM queue_pauses WHERE queue = 'invoice'").fetchone()
    assert row["paused_by"].startswith("ops:Grace <on call>") and row["reason"] == "PDF <b>upgrade</b>"
    _, _, html = console.get("/ops/queues")
    assert "PDF &lt;b&gt;upgrade&lt;/b&gt;" in html and 'action="/ops/queues/invoice/resume"' in html
    # And its audit entry names the operator
    audited = db_conn.execute("SELECT payload FROM outbox WHERE payload->>'kind' = 'queue.paused'"
                              " ORDER BY id DESC LIMIT 1").fetchone()
    assert audited["payload"]["actor"].startswith("ops:Grace <on call>")
    # A forged resume changes nothing; a bad reason is a clear 400
    assert console.post("/ops/queues/invoice/resume", {"csrf": "forged"})[0] == 403
    status, _, html = console.post("/ops/queues/email/pause", {"csrf": console.csrf(), "reason": "x" * 201})
    assert status == 400 and "at most 200" in html
    assert db_conn.execute("SELECT count(*) AS n FROM queue_pauses").fetchone()["n"] == 1
    # When resumed, it runs again
    assert console.post("/ops/queues/invoice/resume", {"csrf": console.csrf()})[0] == 303
    assert db_conn.execute("SELECT count(*) AS n FROM queue_pauses").fetchone()["n"] == 0


def test_the_queues_stream_sends_the_same_figures(open_stream, console):
    s = open_stream("/ops/queues/stream", {"Cookie": console.cookie})
    assert s.resp.status == 200 and s.resp.getheader("Content-Type").startswith("text/event-stream")
    event = s.next()
    assert event.event == "fields" and {"email.ready", "invoice.dead", "audit.per_min_5m", "workers.live",
                                        "email.workers", "audit.paused"} <= set(event.data)


def test_the_queues_stream_refuses_without_a_session(open_stream):
    s = open_stream("/ops/queues/stream")
    assert s.resp.status == 401


def test_dead_letters_filter_by_queue_error_and_tenant_in_the_url(console, dead_letter, tenant):
    dead_letter("SMTP refused: mailbox full")
    dead_letter("SMTP timeout")
    q = urlencode({"queue": "email", "error": "MAILBOX", "tenant": tenant["name"]})
    status, _, html = console.get(f"/ops/dead-letters?{q}")
    assert status == 200
    assert "1 open dead letter match" in html and "mailbox full" in html and "SMTP timeout" not in html
    assert f'value="{tenant["name"]}" selected' in html and 'value="MAILBOX"' in html
    assert "/ops/dead-letters/bulk?" in html


@pytest.mark.parametrize("query, field", [
    ({"queue": "nope"}, "queue"), ({"dead_since": "yesterday"}, "dead_since"),
    ({"tenant": "no-such-tenant"}, "tenant"), ({"page": "0"}, "page"),
    ({"dead_since": "2026-11-30T12:00", "dead_before": "2026-11-30T11:00"}, "dead_before"),
])
def test_a_bad_filter_is_a_clear_422(console, query, field):
    status, _, html = console.get(f"/ops/dead-letters?{urlencode(query)}")
    assert status == 422 and f"The field “{field}”" in html and "Nothing was listed or changed" in html


def test_an_inverted_range_is_refused_on_the_bulk_pages_too(console, dead_letter, db_conn):
    """The list, the dry run and the bulk start share the API's rule (deadletters.RANGE_RULE)."""
    dead_letter("inverted range")
    inverted = {"action": "requeue", "dead_since": "2026-11-30T12:00", "dead_before": "2026-11-30T11:00"}
    jobs = db_conn.execute("SELECT count(*) AS n FROM ops_bulk_jobs").fetchone()["n"]
    status, _, html = console.get(f"/ops/dead-letters/bulk?{urlencode(inverted)}")
    assert status == 422 and 'The field “dead_before” <span class="message">must be later than dead_since' in html
    status, _, html = console.post("/ops/dead-letters/bulk", {**inverted, "csrf": console.csrf()})
    assert status == 422 and 'The field “dead_before” <span class="message">must be later than dead_since' in html
    assert db_conn.execute("SELECT count(*) AS n FROM ops_bulk_jobs").fetchone()["n"] == jobs


def test_the_detail_page_escapes_the_error_and_links_the_trace(console, dead_letter, db_conn):
    dead_id, booking_id = dead_letter("boom <img src=x onerror=alert(1)>")
    db_conn.execute("UPDATE bookings SET trace_id = %s WHERE id = %s", ("ab" * 16, booking_id))
    status, _, html = console.get(f"/ops/dead-letters/{dead_id}")
    assert status == 200
    assert "boom &lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html
    assert "ab" * 16 in html and booking_id in html and "Attempts</dt><dd>4<" in html
    assert console.get(f"/ops/dead-letters/{uuid.uuid4()}")[0] == 404


def test_requeue_one_is_audited_with_the_operator(console, dead_letter, db_conn, tenant):
    dead_id, booking_id = dead_letter()
    status, _, html = console.post(f"/ops/dead-letters/{dead_id}/requeue", {"csrf": console.csrf()})
    assert status == 200 and "Dead letter requeued" in html
    row = db_conn.execute("SELECT resolution, resolved_by FROM dead_letters WHERE id = %s", (dead_id,)).fetchone()
    assert row["resolution"] == "requeued" and row["resolved_by"].startswith("ops:Grace <on call>")
    assert db_conn.execute("SELECT state FROM booking_tasks WHERE booking_id = %s AND task = 'email'",
                           (booking_id,)).fetchone()["state"] == "pending"
    status, _, _ = console.post(f"/ops/dead-letters/{dead_id}/discard", {"csrf": console.csrf()})
    assert status == 409, "a letter already resolved is not acted on twice"


def test_bulk_requeue_confirms_with_a_dry_run_then_runs_in_batches(console, dead_letter, db_conn, tenant,
                                                                   bulk_runner):
    marker = uuid.uuid4().hex
    ids = [dead_letter(f"bulk {marker}")[0] for _ in range(3)]
    other, _ = dead_letter("something else")
    q = urlencode({"action": "requeue", "error": marker, "tenant": tenant["name"]})
    status, _, html = console.get(f"/ops/dead-letters/bulk?{q}")
    assert status == 200 and '<strong id="dry-run-count">3</strong>' in html
    assert f"error containing “{marker}”" in html
    assert db_conn.execute("SELECT count(*) AS n FROM dead_letters WHERE id = ANY(%s) AND resolved_at IS NULL",
                           (ids,)).fetchone()["n"] == 3, "the dry run changes nothing"
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    status, headers, _ = console.post("/ops/dead-letters/bulk", form)
    assert status == 303 and headers["location"].startswith("/ops/jobs/")
    job_path = headers["location"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, _, page = console.get(job_path)
        if 'id="job-state">finished<' in page:
            break
        time.sleep(0.2)
    assert 'id="job-state">finished<' in page and '<strong data-field="done">3</strong>' in page
    rows = db_conn.execute("SELECT id::text, resolution, resolved_by FROM dead_letters WHERE id = ANY(%s)",
                           (ids + [other],)).fetchall()
    by_id = {r["id"]: r for r in rows}
    assert all(by_id[i]["resolution"] == "requeued" and by_id[i]["resolved_by"].startswith("ops:Grace")
               for i in ids)
    assert by_id[other]["resolution"] is None, "a letter outside the filter is untouched"


def test_the_job_stream_ends_with_done(open_stream, console, dead_letter, tenant, bulk_runner):
    marker = uuid.uuid4().hex
    dead_letter(marker)
    form = {"csrf": console.csrf(), "action": "discard", "error": marker, "tenant": tenant["name"]}
    _, headers, _ = console.post("/ops/dead-letters/bulk", form)
    s = open_stream(headers["location"] + "/stream", {"Cookie": console.cookie})
    events = []
    while (e := s.next()) is not None:
        events.append(e)
    assert events[-1].event == "done" and events[-1].data["state"] == "finished"
    assert events[-2].data["done"] == "1"


def test_the_audit_page_lists_a_bookings_entries_and_verifies_a_tenant(console, db_conn, tenant, make_booking):
    booking_id = make_booking()
    chain.append(db_conn, audit_payload(event_id=str(uuid.uuid4()), kind="deadletter.requeued",
                                        tenant_id=tenant["id"], booking_id=booking_id, actor="ops:Grace (tenant x)",
                                        occurred_at="2026-11-30T12:00:00+00:00", details={"queue": "email"}))
    status, _, html = console.get(f"/ops/audit?booking={booking_id}&tenant={tenant['name']}")
    assert status == 200
    assert "deadletter.requeued" in html and "ops:Grace (tenant x)" in html
    assert "Intact: 1 entry" in html
    assert console.get("/ops/audit?booking=not-a-uuid")[0] == 400
    assert console.get("/ops/audit?tenant=nobody-here")[0] == 400


def test_the_console_pages_need_a_session(events_port):
    c = Client(events_port)
    for path in ("/ops/queues", "/ops/dead-letters", "/ops/audit", f"/ops/jobs/{uuid.uuid4()}"):
        status, headers, _ = c.get(path)
        assert status == 303 and headers["location"] == "/ops/", path
    status, _, html = c.get("/ops/")
    assert status == 200 and 'name="token"' in html and 'type="password"' in html


def test_deadletters_list_pages_with_offset(db_conn, dead_letter, tenant):
    marker = uuid.uuid4().hex
    made = [dead_letter(marker)[0] for _ in range(3)]
    f = deadletters.Filter(error=marker, tenant_id=tenant["id"])
    pages = [d.id for off in (0, 2) for d in deadletters.list_dead(db_conn, f, limit=2, offset=off)]
    assert pages == made


@pytest.mark.parametrize("trust, proto, secure", [(False, "https", False), (True, "https", True),
                                                  (True, "http", False), (True, None, False)])
def test_x_forwarded_proto_counts_only_when_trusted(settings, trust, proto, secure):
    import dataclasses

    from aiohttp.test_utils import make_mocked_request

    from booking_events.ops_auth import is_https, origin_ok

    s = dataclasses.replace(settings, trust_forwarded_proto=trust)
    headers = {"Host": "ops.example", **({"X-Forwarded-Proto": proto} if proto else {})}
    assert is_https(make_mocked_request("GET", "/ops/", headers=headers), s) is secure
    own = f"{'https' if secure else 'http'}://ops.example"
    assert origin_ok(make_mocked_request("POST", "/ops/sign-in", headers={**headers, "Origin": own}), s)
    other = f"{'http' if secure else 'https'}://ops.example"
    assert not origin_ok(make_mocked_request("POST", "/ops/sign-in", headers={**headers, "Origin": other}), s)


def test_settings_read_the_console_variables():
    from booking_core.config import Settings

    base = {"DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"}
    s = Settings.from_env({**base, "BOOKING_TRUST_FORWARDED_PROTO": "true", "BOOKING_OPS_SESSION_MAX_SECONDS": "60",
                           "BOOKING_TRACE_URL_TEMPLATE": "https://jaeger.example/trace/{trace_id}"})
    assert s.trust_forwarded_proto and s.ops_session_max_seconds == 60
    assert s.trace_url_template == "https://jaeger.example/trace/{trace_id}"
    for bad in ({"BOOKING_TRUST_FORWARDED_PROTO": "maybe"}, {"BOOKING_TRACE_URL_TEMPLATE": "javascript:{trace_id}"},
                {"BOOKING_TRACE_URL_TEMPLATE": "https://j.example/{trace_id}/{other}"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Settings.from_env({**base, **bad})


def test_an_expired_session_is_dead(console, admin, db_conn):
    db_conn.execute("UPDATE ops_sessions SET expires_at = now() - interval '1 second' WHERE token_id = %s",
                    (admin["id"],))
    status, headers, _ = console.get("/ops/dead-letters")
    assert status == 303 and headers["location"] == "/ops/"


def test_the_trace_link_takes_only_a_hex_trace_id():
    from booking_events.ops_data import trace_id, trace_link

    def letter(traceparent: str) -> deadletters.DeadLetter:
        return deadletters.DeadLetter("x", "email", "a", "m", None, 0, None, None, None, {},
                                      {"trace_context": {"traceparent": traceparent}})

    good = "0af7651916cd43dd8448eb211c80319c"
    assert trace_id(letter(f"00-{good}-b7ad6b7169203331-01"), None) == good
    assert trace_id(letter(f"00-{good}-b7ad6b7169203331-01"), {"trace_id": "ab" * 16}) == "ab" * 16
    assert trace_id(letter('00-"><script>alert(1)</script>xxxxxxxxxxxx-b7-01'), {"trace_id": None}) is None
    assert trace_link("https://jaeger.example/trace/{trace_id}", good) == f"https://jaeger.example/trace/{good}"
    assert trace_link("", good) is None and trace_link("https://j.example/{trace_id}", None) is None


def test_the_console_pages_through_many_letters(console, dead_letter, tenant):
    marker = uuid.uuid4().hex
    for _ in range(52):
        dead_letter(f"many {marker}")
    q = {"error": marker, "tenant": tenant["name"]}
    _, _, first = console.get(f"/ops/dead-letters?{urlencode(q)}")
    assert "52 open dead letters match" in first and first.count("/ops/dead-letters/") - first.count(
        "/ops/dead-letters/bulk") == 50
    assert "Page 1 of 2" in first and 'rel="next"' in first and 'rel="prev"' not in first
    _, _, second = console.get(f"/ops/dead-letters?{urlencode({**q, 'page': 2})}")
    assert "Page 2 of 2" in second and 'rel="prev"' in second
    assert second.count('<a href="/ops/dead-letters/') == 2


def test_the_queues_figures_survive_redis_being_unreachable(settings):
    import redis

    from booking_embedded import free_port
    from booking_events.ops_data import queue_fields

    down = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1, socket_timeout=1)
    fields = queue_fields(settings, down)
    assert fields["redis_error"].startswith("Redis did not answer")
    assert fields["email.ready"] == "?" and fields["workers.live"] == "?"
    assert fields["email.dead"].isdigit(), "dead letters come from Postgres, which still answers"


def test_the_queues_page_shows_who_fills_each_queue_escaped(console, db_conn, tenant, open_stream):
    from psycopg.types.json import Jsonb

    hostile = "<img src=x onerror=alert(1)>"
    # The session's outbox holds other tests' rows (no relay runs here): these are the most, by far.
    ours = db_conn.execute("SELECT max(n) AS n FROM (SELECT count(*) AS n FROM outbox WHERE queue = 'audit'"
                           " GROUP BY tenant_id) g").fetchone()["n"] or 0
    rows = [(tenant["id"], ours + 50, 120), (hostile, ours + 40, 0)]
    inserted = time.monotonic()
    try:
        for tenant_id, n, age_s in rows:
            db_conn.execute(
                "INSERT INTO outbox (message_id, queue, actor, payload, created_at)"
                " SELECT gen_random_uuid(), 'audit', 'x', %s, clock_timestamp() - make_interval(secs => %s)"
                " FROM generate_series(1, %s)", (Jsonb({"tenant_id": tenant_id, "test": "tenant-backlog"}), age_s, n))
        def page_shows_them() -> str | None:  # the page's reading is shared for up to 2 s
            html = console.get("/ops/queues")[2]
            return html if f'data-field="audit.tenant0.name">{tenant["name"]}<' in html else None

        html = wait_until(page_shows_them, timeout=10, interval=0.5, what="this test's rows on the page")
        first = re.search(r'<th scope="row" data-field="audit\.tenant0\.name">([^<]*)</th>\s*'
                          r'<td data-field="audit\.tenant0\.waiting">(\d+)</td>\s*'
                          r'<td data-field="audit\.tenant0\.later">0</td>\s*'
                          r'<td data-field="audit\.tenant0\.oldest">([^<]*)</td>', html)
        assert first and first.group(1) == tenant["name"] and int(first.group(2)) >= ours + 50, html
        # The oldest row was 120 s old at its insert; the page read it since, at most as long ago as that.
        age = re.fullmatch(r"2 min (\d+) s", first.group(3))
        assert age and int(age.group(1)) <= time.monotonic() - inserted + 1, first.group(3)
        assert "&lt;img src=x onerror=alert(1)&gt;" in html and hostile not in html
        event = open_stream("/ops/queues/stream", {"Cookie": console.cookie}).next()
        assert event.data["audit.tenant0.name"] == tenant["name"]
        assert event.data["audit.tenant1.name"] == f"(unknown tenant {hostile!r})"
    finally:
        db_conn.execute("DELETE FROM outbox WHERE payload->>'test' = 'tenant-backlog'")


def test_the_tenant_slots_show_the_top_hide_the_spare_and_sum_the_rest():
    from booking_core.queues.tenant_backlog import QueueTenants, TenantRows
    from booking_events.ops_data import tenant_fields

    backlog = {"email": QueueTenants("email", [TenantRows("id-a", 7, 2, 40_000), TenantRows("", 1)],
                                     rest_tenants=3, rest_messages=5, rest_oldest_ms=10_000)}
    fields = tenant_fields(backlog, {"id-a": "hotel-a"}, now_ms=100_000, queues=("email", "audit"), n=3)
    assert [fields[f"email.tenant0.{k}"] for k in ("name", "waiting", "later", "oldest")] == [
        "hotel-a", "7", "2", "1 min 0 s"]
    assert (fields["email.tenant1.name"], fields["email.tenant1.oldest"]) == ("(no tenant)", "–")
    assert fields["email.tenant2.name"] == "", "a spare slot is empty: its row is hidden"
    assert fields["email.tenants.rest"] == (
        "and 3 more tenants: 5 waiting or retrying later, the oldest waiting 1 min 30 s")
    assert fields["email.tenants.none"] == ""
    assert fields["audit.tenant0.name"] == "" and fields["audit.tenants.none"] == "nothing waits in the outbox"
    assert len([k for k in fields if k.startswith("email.")]) == 3 * 4 + 2, "bounded: n slots, whatever the tenants"


def test_one_reading_of_who_fills_the_queues_serves_every_viewer_for_its_ttl(settings, db_conn, tenant):
    from psycopg.types.json import Jsonb

    from booking_events.ops_data import SharedReading

    shared, fresh = SharedReading(ttl=600), SharedReading(ttl=0)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    try:
        before = shared.get(settings)
        assert fresh.get(settings)[0].get(queue) is None
        db_conn.execute("INSERT INTO outbox (message_id, queue, actor, payload) VALUES (%s, %s, 'x', %s)",
                        (uuid.uuid4(), queue, Jsonb({"tenant_id": tenant["id"]})))
        assert shared.get(settings) is before, "within its ttl: the same reading, no query"
        assert [t.tenant_id for t in fresh.get(settings)[0][queue].top] == [tenant["id"]]
    finally:
        db_conn.execute("DELETE FROM outbox WHERE queue = %s", (queue,))
