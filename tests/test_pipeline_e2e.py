"""End to end: a booking POSTed to the real API ends with an email, an invoice and an audit row."""

from __future__ import annotations

import io

import psycopg
import pytest
from pypdf import PdfReader

from e2e_helpers import messages_to, wait_until

pytestmark = pytest.mark.e2e


def count(url: str, sql: str, *params) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_booking_ends_with_one_email_one_invoice_one_audit_row(make_platform, api_of):
    platform = make_platform()
    api = api_of(platform)
    booking = api.book(name="Grace Hopper", email="grace@example.com")
    tasks = api.wait_states(booking["id"], {"email": "done", "invoice": "done", "audit": "done"})
    assert all(t["attempts"] == 1 and t["last_error"] is None for t in tasks.values()), tasks

    mails = messages_to(platform.data_dir, "grace@example.com")
    assert len(mails) == 1
    assert {p.get_content_type() for p in mails[0].walk()} >= {"text/plain", "text/html"}

    status, headers, pdf = api.request("GET", f"/api/v1/bookings/{booking['id']}/invoice")
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    db = platform.urls["DATABASE_URL"]
    with psycopg.connect(db) as conn:
        number = conn.execute("SELECT number FROM invoices WHERE booking_id = %s",
                              (booking["id"],)).fetchone()[0]
    assert "Grace Hopper" in text and number in text

    assert count(db, "SELECT count(*) FROM audit_log WHERE booking_id = %s AND kind = 'booking.created'",
                 booking["id"]) == 1
    # The email and invoice events reach the trail too, once each.
    wait_until(lambda: count(db, "SELECT count(*) FROM audit_log WHERE booking_id = %s",
                             booking["id"]) == 3, what="email.sent and invoice.issued audit rows")
