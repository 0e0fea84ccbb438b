"""The customer's progress page in a real headless Chromium, on a real local platform.

Debian's /usr/bin/chromium is driven by Playwright for Python (never `playwright
install`).  Each test checks what a customer would notice: the steps turn over
without a reload, the invoice link gives a real PDF, a failing email reads as
"retrying" then as a clear dead end, nothing is fetched from another origin, the
Content-Security-Policy is never violated, and axe-core finds no serious or
critical accessibility problem.  Screenshots go to tests/artifacts/.  One Chromium
serves the module (a context per page) and one platform: the two tests that stop
SMTP or the workers start them again when they end, pass or fail (a platform of
their own would cost a whole start for a process they merely hold down).
"""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pypdf import PdfReader

from booking_core import db
from browser_helpers import assert_clean, chromium, record
from conftest import api_for

pytestmark = pytest.mark.e2e

#: Recorded in the page before its own scripts run: the time each step changed.
WATCH = """
window.__changes = [];
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver(records => {
    for (const r of records) {
      if (r.attributeName === "class" && r.target.dataset.task) {
        window.__changes.push({task: r.target.dataset.task, state: r.target.className.replace("step state-", ""),
                               t: Date.now()});
      }
    }
  }).observe(document.getElementById("progress"), {attributes: true, subtree: true, attributeFilter: ["class"]});
});
"""


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module; each test opens its own context (cookies, JavaScript on or off)."""
    with chromium() as b:
        yield b


@pytest.fixture
def open_page(browser):
    """Factory: a page that records requests, navigations and console CSP reports."""
    opened = []

    def make(url: str):
        context = browser.new_context(accept_downloads=True)
        page = record(context.new_page())
        page.add_init_script(WATCH)
        page.goto(url)
        opened.append(context)
        return page

    yield make
    for c in opened:
        c.close()


def step(page, task: str):
    return page.locator(f'li[data-task="{task}"]')


def test_the_page_opened_right_after_the_post_turns_every_step_done_live(module_platform, open_page):
    platform = module_platform
    booking = api_for(platform).book(name="Grace Hopper")
    url = booking["links"]["status_page"]
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    page = open_page(url)
    assert page.locator("h1").inner_text() == "Your booking is confirmed"
    assert "Grace Hopper" in page.locator(".details").inner_text()
    for task in ("email", "invoice", "audit"):
        step(page, task).and_(page.locator(".state-done")).wait_for(timeout=60_000)
    assert len(page.navigations) == 1, "the steps must turn done without a reload"
    assert "Your invoice is ready to download." in step(page, "invoice").inner_text()

    link = page.get_by_role("link", name="Download your invoice (PDF)")
    link.wait_for(state="visible")
    with page.expect_download() as download:
        link.click()
    pdf = PdfReader(io.BytesIO(Path(download.value.path()).read_bytes()))
    text = "".join(p.extract_text() for p in pdf.pages)
    assert "Grace Hopper" in text and "360.00" in text

    changes = page.evaluate("window.__changes")
    assert {(c["task"], c["state"]) for c in changes} >= {("email", "done"), ("invoice", "done"), ("audit", "done")}
    report_latency(platform, booking["id"], changes)
    assert_clean(page, origin, "progress-page")


def report_latency(platform, booking_id: str, changes: list[dict]) -> None:
    """Print (for the report) how long each state change took from its Postgres event to the page's DOM.

    Only changes made after the page's stream had delivered its history count: the
    history replays changes made before the page was open.
    """
    with db.connect(platform.urls["DATABASE_URL"]) as conn:
        rows = conn.execute("SELECT task, state, extract(epoch FROM at) * 1000 AS ms FROM booking_events"
                            " WHERE booking_id = %s ORDER BY id", (booking_id,)).fetchall()
    if not changes:
        return
    connected = min(c["t"] for c in changes)
    live = {(r["task"], r["state"], r["ms"]) for r in rows if float(r["ms"]) > connected}
    lags = []
    for task, state, ms in live:
        seen = [c["t"] for c in changes if (c["task"], c["state"]) == (task, state) and c["t"] >= float(ms)]
        if seen:
            lags.append(min(seen) - float(ms))
    if lags:
        print("\nPOSTGRES->BROWSER ms", json.dumps({"n": len(lags), "median": round(statistics.median(lags), 1),
                                                    "max": round(max(lags), 1)}))


@pytest.fixture
def held_down(module_platform):
    """`hold(*names)`: stop those processes of the module's platform; each is started again after the test."""
    held: list[str] = []

    def hold(*names: str) -> None:
        for name in names:
            module_platform.stop_component(name)
            held.append(name)

    yield hold
    for name in held:
        module_platform.start_component(name)


def test_with_smtp_down_the_page_says_retrying_then_dead(module_platform, held_down, open_page):
    platform = module_platform
    held_down("smtp")
    booking = api_for(platform).book()
    url = booking["links"]["status_page"]
    page = open_page(url)
    email = step(page, "email")
    # The badge and the sentence are read in one snapshot of the DOM: the next attempt
    # may start (badge and sentence both turn to "in progress") between two reads.
    page.wait_for_function(
        """() => {
            const li = document.querySelector('li[data-task="email"]');
            return li.querySelector('.badge').innerText === 'Retrying'
                && li.innerText.includes("We're retrying your confirmation email");
        }""", timeout=60_000)
    email.get_by_text("We could not finish your confirmation email").wait_for(timeout=60_000)
    assert email.locator(".badge").inner_text() == "Needs attention"
    assert "your booking itself is confirmed" in email.inner_text()
    assert len(page.navigations) == 1
    report_latency(platform, booking["id"], page.evaluate("window.__changes"))
    assert_clean(page, "{0.scheme}://{0.netloc}".format(urlsplit(url)), "progress-page-dead")


def test_the_page_is_readable_with_javascript_off(module_platform, browser):
    platform = module_platform
    api = api_for(platform)
    booking = api.book()
    api.wait_states(booking["id"], {"email": "done", "invoice": "done", "audit": "done"})
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(booking["links"]["status_page"])
    assert page.locator(".state-done").count() == 3
    assert page.get_by_role("link", name="Download your invoice (PDF)").is_visible()
    context.close()


def test_a_change_committed_in_postgres_reaches_the_open_page_within_a_poll_or_two(module_platform, held_down,
                                                                                   open_page):
    """Changes written by SQL (as the workers' middleware writes them) while the page is open.

    The workers are stopped so only these changes happen; each one's `at` (Postgres'
    clock_timestamp in the changing transaction) is compared with the moment the page's
    DOM changed (Date.now(), same machine clock).
    """
    platform = module_platform
    held_down(*[n for n in platform.children if "-worker-" in n])
    booking = api_for(platform).book()
    page = open_page(booking["links"]["status_page"])
    page.locator("#live-status").wait_for(state="visible")  # the stream is open
    with db.connect(platform.urls["DATABASE_URL"], autocommit=True) as conn:
        for attempt in range(1, 11):
            state = "running" if attempt % 2 else "retrying"
            conn.execute("UPDATE booking_tasks SET state = %s, attempts = %s, updated_at = clock_timestamp()"
                         " WHERE booking_id = %s AND task = 'email'", (state, attempt, booking["id"]))
            step(page, "email").get_by_text(f"attempt {attempt} did not go through" if state == "retrying"
                                            else "We are sending your confirmation email").wait_for(timeout=5000)
        rows = conn.execute("SELECT attempts, extract(epoch FROM at) * 1000 AS ms FROM booking_events"
                            " WHERE booking_id = %s AND task = 'email' AND attempts > 0 ORDER BY id",
                            (booking["id"],)).fetchall()
    changes = [c for c in page.evaluate("window.__changes") if c["task"] == "email" and c["state"] != "pending"]
    assert len(changes) == len(rows) == 10
    lags = [c["t"] - float(r["ms"]) for c, r in zip(changes, rows, strict=True)]
    print("\nPOSTGRES->BROWSER ms (SQL-driven)", json.dumps({
        "n": len(lags), "median": round(statistics.median(lags), 1), "max": round(max(lags), 1)}))
    assert max(lags) < 2000, lags
