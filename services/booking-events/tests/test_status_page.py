"""The progress page under its capability URL: readable without JS, strict headers, token checks."""

from __future__ import annotations

import http.client
import time

import pytest

from booking_core.model.status_links import sign


def get(port: int, path: str) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def link(booking_id: str, expires: int | None = None) -> str:
    return sign(SECRET, booking_id, expires or int(time.time()) + 3600)


SECRET = "test-secret-" + "x" * 20  # the events_settings fixture's secret


def test_the_page_shows_the_booking_and_its_three_steps_without_javascript(events_port, make_booking, set_task):
    booking_id = make_booking(name="Zoë <script>alert(1)</script>")
    set_task(booking_id, "email", "retrying", attempts=2, last_error="smtp.internal:25 refused")
    set_task(booking_id, "audit", "done", attempts=1)
    status, headers, body = get(events_port, f"/status/{link(booking_id)}")
    html = body.decode()
    assert status == 200
    assert "Zoë &lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "Sea-view room" in html and "360.00 EUR" in html
    assert "We&#39;re retrying your confirmation email" in html
    assert "Your booking is recorded in the audit trail." in html
    assert "smtp.internal" not in html, "internal error text is for the tenant's API, not the customer"
    assert html.count('class="step ') == 3
    assert 'class="invoice" hidden' in html, "no invoice link before the invoice is ready"


def test_the_page_sends_a_strict_policy_and_leaks_no_token(events_port, make_booking):
    _, headers, body = get(events_port, f"/status/{link(make_booking())}")
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    html = body.decode()
    assert "<style" not in html and " style=" not in html and "<script>" not in html
    assert 'src="/status/assets/status.js"' in html


def test_the_vendored_assets_are_served_from_the_package(events_port):
    for asset, kind in (("status.js", "javascript"), ("status.css", "text/css")):
        status, headers, body = get(events_port, f"/status/assets/{asset}")
        assert status == 200 and kind in headers["content-type"] and len(body) > 200


@pytest.mark.parametrize("tamper", ["other-booking", "later-expiry", "garbage", "other-secret"])
def test_a_forged_token_is_refused(events_port, make_booking, tamper):
    mine, other = make_booking(), make_booking()
    token = link(mine)
    _, expires, mac = token.split(".")
    forged = {"other-booking": f"{other}.{expires}.{mac}", "later-expiry": f"{mine}.{int(expires) + 9999}.{mac}",
              "garbage": "not-a-token", "other-secret": sign("another-secret", mine, int(expires))}[tamper]
    for suffix in ("", "/events", "/invoice"):
        status, headers, body = get(events_port, f"/status/{forged}{suffix}")
        assert status == 404, (tamper, suffix)
        assert b"This link is not valid." in body and mine.encode() not in body


@pytest.mark.parametrize("spelling", ["uppercase-id", "undashed-id", "urn-id", "leading-zero-expiry",
                                      "plus-expiry", "underscore-expiry"])
def test_a_respelled_token_is_not_the_link(events_port, make_booking, spelling):
    booking_id = make_booking()
    token = link(booking_id)
    assert get(events_port, f"/status/{token}")[0] == 200
    _, expires, mac = token.split(".")
    respelled = {"uppercase-id": f"{booking_id.upper()}.{expires}.{mac}",
                 "undashed-id": f"{booking_id.replace('-', '')}.{expires}.{mac}",
                 "urn-id": f"urn:uuid:{booking_id}.{expires}.{mac}",
                 "leading-zero-expiry": f"{booking_id}.0{expires}.{mac}",
                 "plus-expiry": f"{booking_id}.+{expires}.{mac}",
                 "underscore-expiry": f"{booking_id}.{expires[0]}_{expires[1:]}.{mac}"}[spelling]
    for suffix in ("", "/events", "/invoice"):
        status, _, body = get(events_port, f"/status/{respelled}{suffix}")
        assert status == 404, suffix
        assert b"This link is not valid." in body


def test_an_expired_link_is_gone(events_port, make_booking):
    expired = link(make_booking(), expires=int(time.time()) - 1)
    for suffix in ("", "/events", "/invoice"):
        status, _, body = get(events_port, f"/status/{expired}{suffix}")
        assert status == 410 and b"This link has expired." in body


def test_the_invoice_downloads_once_issued(events_port, db_conn, tenant, make_booking):
    booking_id = make_booking()
    token = link(booking_id)
    status, _, body = get(events_port, f"/status/{token}/invoice")
    assert status == 409 and b"Your invoice is not ready yet" in body
    pdf = b"%PDF-1.7\n% a stand-in body: the browser test downloads a real WeasyPrint PDF\n%%EOF\n"
    db_conn.execute("INSERT INTO invoices (booking_id, tenant_id, number, pdf, issued_at)"
                    " VALUES (%s, %s, 'INV-TEST-1', %s, now())", (booking_id, tenant["id"], pdf))
    status, headers, body = get(events_port, f"/status/{token}/invoice")
    assert status == 200 and body == pdf
    assert headers["content-type"] == "application/pdf"
    assert headers["content-disposition"] == 'attachment; filename="INV-TEST-1.pdf"'


def test_the_pages_stream_speaks_to_the_customer(open_stream, make_booking, set_task):
    booking_id = make_booking()
    set_task(booking_id, "email", "dead", attempts=3, last_error="smtp.internal:25 refused")
    s = open_stream(f"/status/{link(booking_id)}/events")
    assert s.resp.status == 200 and s.resp.getheader("X-Accel-Buffering") == "no"
    events = [s.next() for _ in range(5)]
    dead = events[3]
    assert dead.data["state"] == "dead" and dead.data["label"] == "Confirmation email"
    assert "We could not finish your confirmation email after 3 attempts" in dead.data["message"]
    assert "last_error" not in dead.data
    assert events[4].event == "complete"


def test_one_attempt_is_said_in_the_singular_on_the_page_and_its_stream(events_port, open_stream, make_booking,
                                                                       set_task):
    booking_id = make_booking()
    set_task(booking_id, "invoice", "dead", attempts=1, last_error="RenderError")
    _, _, body = get(events_port, f"/status/{link(booking_id)}")
    assert b"We could not finish your invoice after 1 attempt." in body and b"1 attempts" not in body
    s = open_stream(f"/status/{link(booking_id)}/events")
    dead = [e for e in (s.next() for _ in range(5)) if e.data.get("state") == "dead"][0]
    assert "after 1 attempt." in dead.data["message"]
