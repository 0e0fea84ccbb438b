"""The ops console in a real headless Chromium, on a real local platform (issue 11, sections 3 and 4).

An operator signs in with the admin token, filters the dead letters to an
email that died while SMTP was down, sees the dry-run count, brings SMTP
back, requeues all that match and watches the booking complete; the audit view
names who requeued it.  Every console page is checked to fetch nothing from
another origin, to cause no CSP violation and to have no serious or critical
axe-core finding, and is saved as a screenshot in tests/artifacts/.
The tests run on one platform and one Chromium (a context each): only the first
creates a dead letter, so its counts hold in any order.  The third floods one
tenant's audit work while the audit queue is paused and reads, live, who is
filling the queue.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from webhook_receiver import VerifyingReceiver

from booking_core import db
from booking_core.audit import chain
from booking_core.model import tenants
from booking_core.queues import pauses
from browser_helpers import assert_clean, chromium, record
from conftest import api_for
from e2e_helpers import Api, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module; each test opens its own context (cookies, JavaScript on or off)."""
    with chromium() as b:
        yield b


def _dead_error(platform, booking_id: str) -> str:
    """The email's recorded final error (the worker writes it to Postgres as the task goes dead)."""
    with db.connect(platform.urls["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT error FROM dead_letters WHERE booking_id = %s AND resolved_at IS NULL",
                           (booking_id,)).fetchone()
    assert row and row["error"], "the dead email has its letter recorded in Postgres"
    return row["error"]


def test_an_operator_requeues_a_dead_email_and_watches_the_booking_complete(module_platform, browser):
    platform = module_platform
    api = api_for(platform)
    platform.stop_component("smtp")
    booking = api.book(name="Katherine Johnson")
    api.wait_states(booking["id"], {"email": "dead", "invoice": "done", "audit": "done"}, timeout=90)
    needle = _dead_error(platform, booking["id"])[:20].strip()
    origin = platform.events_url

    page = record(browser.new_context().new_page())
    page.goto(origin + "/ops/")
    assert_clean(page, origin, "ops-sign-in")
    page.get_by_label("Admin API token").fill(platform.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(origin + "/ops/queues")
    assert "ops:bookingctl up (tenant demo)" in page.locator(".who").inner_text()
    # The queues page goes live (its stream delivered a refresh) and counts the dead email.
    page.locator("caption .live").wait_for(state="visible")
    assert int(page.locator('[data-field="email.dead"]').inner_text()) == 1
    assert_clean(page, origin, "ops-queues")

    # Filter to that dead email: queue, tenant and error text, all in the URL.
    page.get_by_role("link", name="Dead letters", exact=True).first.click()
    page.get_by_label("Queue").select_option("email")
    page.get_by_label("Tenant").select_option("demo")
    page.get_by_label("Error contains").fill(needle)
    page.get_by_role("button", name="Apply filter").click()
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"queue": ["email"], "tenant": ["demo"], "error": [needle]}, page.url
    assert page.get_by_role("heading", name="1 open dead letter match").is_visible()
    assert_clean(page, origin, "ops-dead-letters")

    page.locator("table.letters tbody a").first.click()
    assert page.get_by_role("heading", name="Dead letter in email").is_visible()
    assert booking["id"] in page.locator("main").inner_text()
    assert needle in page.locator(".error-text").inner_text()
    assert_clean(page, origin, "ops-dead-letter")
    page.go_back()

    # Requeue all matching: the dry run first, then the confirmed bulk job.
    page.get_by_role("link", name="Requeue all 1 matching…").click()
    assert page.locator("#dry-run-count").inner_text() == "1"
    assert "queue email, tenant demo, error containing" in page.locator("main").inner_text()
    assert_clean(page, origin, "ops-confirm-bulk")
    with db.connect(platform.urls["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) AS n FROM dead_letters WHERE resolved_at IS NULL").fetchone()["n"] == 1
    # The operator mends the cause (SMTP comes back) before the requeue, as a runbook says: a
    # requeue into a still-broken SMTP spends the fresh retries in seconds and dies again (a
    # second dead letter, which a loaded machine's slow page let happen before this order).
    platform.start_component("smtp")
    page.get_by_role("button", name="Yes, requeue 1 dead letter").click()
    page.wait_for_url(f"{origin}/ops/jobs/*")
    page.locator("#job-state").get_by_text("finished").wait_for(timeout=30_000)
    assert page.locator('[data-field="done"]').inner_text() == "1"
    assert_clean(page, origin, "ops-bulk-job")

    # The requeued email is sent and the booking completes.
    api.wait_states(booking["id"], {"email": "done", "invoice": "done", "audit": "done"}, timeout=90)

    # The audit view shows who requeued it, then the email sent; the tenant's chain verifies.
    def audit_shows_both() -> bool:
        page.goto(f"{origin}/ops/audit?booking={booking['id']}&tenant=demo")
        text = page.locator("main").inner_text()
        return "deadletter.requeued" in text and "email.sent" in text
    wait_until(audit_shows_both, timeout=60, interval=1, what="the requeue and the email in the audit view")
    requeued = page.locator("table.audit tr", has_text="deadletter.requeued")
    assert requeued.locator(".actor").inner_text() == "ops:bookingctl up (tenant demo)"
    assert page.locator("#verify-result").inner_text().startswith("Intact:")
    assert_clean(page, origin, "ops-audit")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(origin + "/ops/")
    page.goto(origin + "/ops/queues")
    assert page.url == origin + "/ops/", "the session is gone after signing out"


def test_a_client_token_cannot_sign_in_and_pages_read_without_javascript(module_platform, browser):
    platform = module_platform
    origin = platform.events_url
    with db.connect(platform.urls["DATABASE_URL"], autocommit=True) as conn:
        client_token = tenants.create_token(conn, tenants.ensure_tenant(conn, "demo")["id"])["token"]
    context = browser.new_context(java_script_enabled=False)
    page = record(context.new_page())
    page.goto(origin + "/ops/")
    page.get_by_label("Admin API token").fill(client_token)
    page.get_by_role("button", name="Sign in").click()
    assert "This is a client token" in page.get_by_role("alert").inner_text()
    assert page.url == origin + "/ops/sign-in" and context.cookies() == []

    page.get_by_label("Admin API token").fill(platform.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(origin + "/ops/queues")
    cookie = next(c for c in context.cookies() if c["name"] == "ops_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ops"
    for q in ("email", "invoice", "audit"):
        assert page.locator(f'[data-field="{q}.ready"]').inner_text().isdigit()
    assert int(page.locator('[data-field="workers.live"]').inner_text()) >= 3, "three workers heartbeat"


def test_an_operator_replays_a_dead_webhook_delivery_and_the_receiver_gets_it(module_platform, browser):
    """A receiver answers 410 (final: the delivery is dead at once); the operator replays it from the
    console once the receiver is fixed, and the receiver gets it with the same webhook-id."""
    platform = module_platform
    api = api_for(platform)
    origin = platform.events_url
    receiver = VerifyingReceiver()
    receiver.refuse = 410
    status, endpoint = api.json("POST", "/api/v1/webhooks/endpoints",
                                {"url": receiver.url, "event_types": ["booking.created"]})
    assert status == 201, endpoint
    receiver.secrets.append(endpoint["secret"])
    try:
        booking = api.book(name="Mary Jackson")

        def dead() -> str | None:
            with db.connect(platform.urls["DATABASE_URL"]) as conn:
                row = conn.execute(
                    "SELECT d.id::text FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id"
                    " WHERE ev.booking_id = %s AND d.state = 'dead'", (booking["id"],)).fetchone()
            return row["id"] if row else None
        delivery = wait_until(dead, timeout=90, interval=0.3, what="the delivery refused with 410 to go dead")
        refused = [r["id"] for r in receiver.requests]
        assert len(refused) == 1

        page = record(browser.new_context().new_page())
        page.goto(origin + "/ops/")
        page.get_by_label("Admin API token").fill(platform.admin_token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(origin + "/ops/queues")
        page.get_by_role("link", name="Webhooks", exact=True).click()
        page.wait_for_url(origin + "/ops/webhooks")
        assert_clean(page, origin, "ops-webhooks")
        page.get_by_role("link", name=receiver.url).click()
        row = page.locator(f'tr[data-delivery="{delivery}"]')
        assert row.locator(".state").inner_text() == "dead" and "410" in row.inner_text()
        assert endpoint["secret"] not in page.content()
        assert_clean(page, origin, "ops-webhook-endpoint")

        receiver.refuse = None  # the receiver is fixed
        row.get_by_role("button", name="Replay").click()
        page.wait_for_url(f"{origin}/ops/webhooks/endpoints/{endpoint['id']}")

        def delivered() -> bool:
            page.reload()
            return page.locator(f'tr[data-delivery="{delivery}"] .state').inner_text() == "delivered"
        wait_until(delivered, timeout=90, interval=1, what="the replayed delivery to be delivered")
        events = receiver.events()
        assert [e["type"] for e in events] == ["booking.created"] and events[0]["data"]["booking_id"] == booking["id"]
        assert receiver.requests[-1]["id"] == refused[0], "the replay carries the same webhook-id"
        assert receiver.bad_signatures == 0

        def replay_audited() -> dict | None:
            with db.connect(platform.urls["DATABASE_URL"]) as conn:
                return conn.execute("SELECT tenant_id::text, actor FROM audit_log WHERE kind = 'webhook.replayed'"
                                    " AND details->>'delivery_id' = %s", (delivery,)).fetchone()
        entry = wait_until(replay_audited, timeout=60, interval=0.3, what="the audit worker to record the replay")
        assert entry["actor"].startswith("ops:")  # the signed-in operator
        with db.connect(platform.urls["DATABASE_URL"]) as conn:
            assert all(r.ok for r in chain.verify(conn, entry["tenant_id"]))
    finally:
        api.json("DELETE", f"/api/v1/webhooks/endpoints/{endpoint['id']}")
        receiver.close()


def _outbox_audit_rows(platform, tenant_id: str) -> int:
    with db.connect(platform.urls["DATABASE_URL"]) as conn:
        return conn.execute("SELECT count(*) AS n FROM outbox WHERE queue = 'audit' AND tenant_id = %s",
                            (tenant_id,)).fetchone()["n"]


def test_the_queues_page_shows_who_fills_a_queue_and_since_when_live(module_platform, browser):
    platform = module_platform
    origin = platform.events_url
    with db.connect(platform.urls["DATABASE_URL"], autocommit=True) as conn:
        flood = tenants.ensure_tenant(conn, "flood-import")
        flood_api = Api(platform.api_url, tenants.create_token(conn, flood["id"])["token"])
        pauses.pause(conn, "audit", actor="test", reason="hold the audit work in the outbox")
    try:
        page = record(browser.new_context().new_page())
        page.goto(origin + "/ops/")
        page.get_by_label("Admin API token").fill(platform.admin_token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(origin + "/ops/queues")
        page.locator("caption .live").first.wait_for(state="visible")
        audit = page.locator('tbody[data-queue-tenants="audit"]')

        # One tenant floods; the relay keeps only its publish-ahead in Redis, the rest waits in the outbox.
        for i in range(40):
            flood_api.book(name=f"Guest {i}")
        seen: list[int] = []

        def held_steady() -> bool:  # the relay filled the room and left the rest: two equal readings
            seen.append(_outbox_audit_rows(platform, flood["id"]))
            return len(seen) > 1 and seen[-1] == seen[-2] > 0
        wait_until(held_steady, timeout=30, interval=1, what="the flood's audit rows held in the outbox")
        held = seen[-1]
        api_for(platform).book(name="Quiet Guest")  # tenant demo: one task, and no room left for it

        # The page shows both, most first, without a reload (the stream), with the oldest's age.
        first, second = audit.locator("tr").nth(0), audit.locator("tr").nth(1)
        second.get_by_role("rowheader", name="demo").wait_for(timeout=15_000)
        assert first.get_by_role("rowheader").inner_text() == "flood-import"
        assert int(first.locator('[data-field="audit.tenant0.waiting"]').inner_text()) == held
        assert second.locator('[data-field="audit.tenant1.waiting"]').inner_text() == "1"
        assert first.locator('[data-field="audit.tenant0.oldest"]').inner_text().endswith(" s")
        assert audit.locator("tr:visible").count() == 2, "spare slots, the rest and 'nothing waits' are hidden"
        assert_clean(page, origin, "ops-queues-tenants")

        # Resumed, the queue drains and the page says so, live.
        with db.connect(platform.urls["DATABASE_URL"], autocommit=True) as conn:
            pauses.resume(conn, "audit", actor="test")
        audit.get_by_text("nothing waits in the outbox").wait_for(timeout=60_000)
        assert audit.locator("tr:visible").count() == 1
    finally:
        with db.connect(platform.urls["DATABASE_URL"], autocommit=True) as conn:
            pauses.resume(conn, "audit", actor="test")
