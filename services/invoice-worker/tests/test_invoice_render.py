"""The invoice document: readable, one A4 page, hostile input inert, nothing fetched."""

from __future__ import annotations

import io
import threading
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pypdf
import pytest

from invoice_worker import render
from invoice_worker.render import InvoiceData, invoice_html, render_pdf

A4_POINTS = (595, 842)

HOSTILE = {
    "customer_name": '<img src="file:///etc/passwd"> Mallory',
    "customer_email": '"><script>alert(1)</script>@evil.example',
    "item": "Suite </td></tr></table><h1>FREE</h1> & <style>*{display:none}</style>",
    "tenant_name": "<base href=\"http://127.0.0.1:1/\">acme",
}


def data(**fields) -> InvoiceData:
    values = {
        "number": "INV-000042",
        "issue_date": date(2030, 4, 2),
        "tenant_name": "acme-hotels",
        "booking_id": "3f1c2a4e-8b7d-4c1e-9a2b-1234567890ab",
        "customer_name": "Zoë O'Brien",
        "customer_email": "zoe@example.com",
        "item": "Deluxe double room",
        "check_in": date(2030, 5, 1),
        "check_out": date(2030, 5, 4),
        "amount": Decimal("1234.5"),
        "currency": "EUR",
    } | fields
    return InvoiceData(**values)


def pdf_text(pdf: bytes) -> tuple[int, str]:
    """Page count and the first page's text with all whitespace removed (lines wrap)."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return len(reader.pages), "".join(reader.pages[0].extract_text().split())


def squash(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def fetch_spy(monkeypatch) -> list[str]:
    """Every URL WeasyPrint asks the refusing fetcher for (it must still refuse)."""
    asked: list[str] = []
    refuse = render.RefusingFetcher.fetch

    def spy(self, url, headers=None):
        asked.append(url)
        return refuse(self, url, headers)

    monkeypatch.setattr(render.RefusingFetcher, "fetch", spy)
    return asked


@pytest.fixture
def http_server():
    """An HTTP server on 127.0.0.1 that records every request it is sent."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            seen.append(self.path)
            body = b"<svg xmlns='http://www.w3.org/2000/svg' width='9' height='9'/>"
            self.send_response(200)
            self.send_header("Content-Type", "image/svg+xml")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_pdf_is_one_a4_page_with_the_invoice_facts(fetch_spy):
    pdf = render_pdf(invoice_html(data()))
    assert pdf.startswith(b"%PDF-")
    pages, text = pdf_text(pdf)
    assert pages == 1
    page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
    assert tuple(round(float(v)) for v in page.mediabox.upper_right) == A4_POINTS
    for fact in ("INV-000042", "Zoë O'Brien", "zoe@example.com", "Deluxe double room",
                 "2030-05-01", "2030-05-04", "1,234.50EUR", "acme-hotels", "2030-04-02",
                 "3f1c2a4e-8b7d-4c1e-9a2b-1234567890ab"):
        assert squash(fact) in text
    assert "Nights" in invoice_html(data()) and ">3<" in invoice_html(data())
    assert fetch_spy == []


def test_nights_and_money_are_derived_and_formatted():
    d = data(check_in=date(2030, 12, 30), check_out=date(2031, 1, 2), amount=Decimal("1000000"))
    assert d.nights == 3
    assert "1,000,000.00 EUR" in invoice_html(d)


@pytest.mark.parametrize(("amount", "currency", "shown", "not_shown"), [
    (Decimal("123456.00"), "JPY", "123,456 JPY", "123,456.00"),
    (Decimal("100"), "KRW", "100 KRW", "100.00"),
    (Decimal("99.5"), "EUR", "99.50 EUR", "99.5 EUR"),
])
def test_pdf_prints_amounts_with_the_currency_minor_units(amount, currency, shown, not_shown):
    # Given an invoice in a currency with 0 or 2 minor units, as stored (numeric(12, 2))
    pdf = render_pdf(invoice_html(data(amount=amount, currency=currency)))
    # Then the PDF's own text shows the amount with exactly those decimals, line and total
    _, text = pdf_text(pdf)
    assert text.count(squash(shown)) == 2
    assert squash(not_shown) not in text


def test_every_value_is_escaped_in_the_html():
    document = invoice_html(data(**HOSTILE))
    for value in HOSTILE.values():
        assert value not in document
    for tag in ("<img", "<script", "<h1>FREE", "<base", "<style>*"):
        assert tag not in document
    assert "&lt;img src=&quot;file:///etc/passwd&quot;&gt; Mallory" in document
    assert document.count("</table>") == 1
    assert document.count("<style>") == 1


def test_hostile_input_is_printed_as_text_and_nothing_is_fetched(fetch_spy, http_server):
    url, seen = http_server
    hostile = dict(HOSTILE, customer_name=f'<img src="{url}/pixel"> <img src="file:///etc/passwd">')
    pdf = render_pdf(invoice_html(data(**hostile)))
    pages, text = pdf_text(pdf)
    assert pages == 1
    for value in hostile.values():
        assert squash(value) in text
    assert "root:" not in text
    assert fetch_spy == []
    assert seen == []


def test_the_renderer_refuses_urls_even_in_markup_it_is_given(fetch_spy, http_server, tmp_path):
    """Defence in depth: were markup ever to slip through, WeasyPrint still fetches nothing."""
    url, seen = http_server
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    document = f"""<html><head>
      <link rel="stylesheet" href="{url}/style.css">
      <style>@import url("{url}/import.css");
        @font-face {{ font-family: X; src: url("{url}/font.woff"); }}
        body {{ background: url("{url}/bg.png"); }}</style></head>
      <body><img src="{url}/img.svg"><img src="file://{secret}">
      <object data="file://{secret}"></object><iframe src="{url}/frame"></iframe>
      <p>still rendered</p></body></html>"""
    pdf = render_pdf(document)
    _, text = pdf_text(pdf)
    assert "stillrendered" in text
    assert "TOPSECRET" not in text
    assert seen == []
    assert fetch_spy  # WeasyPrint did ask, and was refused
    assert any(u.startswith(url) for u in fetch_spy)
    assert any(u.startswith("file://") for u in fetch_spy)


def test_long_values_wrap_instead_of_overflowing():
    pdf = render_pdf(invoice_html(data(customer_name="A" * 300, item="B" * 400,
                                       customer_email="c" * 120 + "@example.com")))
    pages, text = pdf_text(pdf)
    assert pages == 1
    assert "A" * 300 in text and "B" * 400 in text
