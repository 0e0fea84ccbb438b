"""Invoice HTML and PDF, pure: every value is escaped and WeasyPrint may fetch nothing.

Booking fields come from API clients, so they are untrusted: each one is
HTML-escaped before it enters the template, the stylesheet is embedded, no base
URL is given, and the URL fetcher refuses every URL (file://, http://, data:
alike), so even markup that slipped through could not read a file or call out.

Font configurations are made once and reused.  Left to itself WeasyPrint makes
one per document: a fresh Fontconfig configuration and Pango font map, and with
Pango 1.50 (Debian 12) a font map given its own configuration does not give that
memory back when it is freed.  That cost about 0.2 MB of RSS per invoice, for
ever: an invoice worker grew from 247 to 610 MB over 3,500 invoices (issue 18).
Reused, a configuration's caches fill once (this template asks for a fixed set
of fonts) and RSS stays flat.  A render borrows a configuration from a free list
and gives it back, so no two renders share one at the same time (a Pango font
map is not meant for that) and there are never more than the most renders ever
run at once, however many threads come and go.

The stylesheet lays out with floats and tables only.  WeasyPrint's flex and grid
layout cost more than everything else in a render: with the header and the
parties in flexboxes and the facts in a grid, an invoice took 2.2x the CPU it
takes now, for the same page (bench/invoice_render.py).
"""

from __future__ import annotations

import html
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from string import Template

from weasyprint import HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher

from booking_core.model.currencies import format_amount


@dataclass(frozen=True)
class InvoiceData:
    """What one invoice shows; all text fields are untrusted client input."""

    number: str
    issue_date: date
    tenant_name: str
    booking_id: str
    customer_name: str
    customer_email: str
    item: str
    check_in: date
    check_out: date
    amount: Decimal
    currency: str

    @property
    def nights(self) -> int:
        """Nights between check-in and check-out, derived so it cannot disagree with them."""
        return (self.check_out - self.check_in).days


class RefusingFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that refuses everything: invoices are self-contained."""

    def __init__(self) -> None:
        super().__init__(allowed_protocols=(), allow_redirects=False)

    def fetch(self, url: str, headers: dict | None = None):
        """Refuse `url`; WeasyPrint logs the refusal and renders without the resource."""
        raise PermissionError(f"invoice rendering fetches nothing; refused {url[:100]!r}")


CSS = """
@page {
  size: A4;
  margin: 20mm 18mm 22mm 18mm;
  @bottom-left { content: "Thank you for your booking."; color: #6b7280; font-size: 8pt; }
  @bottom-right { content: "Page " counter(page) " of " counter(pages);
                  color: #6b7280; font-size: 8pt; }
}
* { box-sizing: border-box; }
html { font-family: "DejaVu Sans", "Liberation Sans", "Helvetica", "Arial", sans-serif;
       font-size: 10pt; color: #111827; line-height: 1.4; }
body { margin: 0; overflow-wrap: anywhere; }
header { overflow: hidden; border-bottom: 2pt solid #1f2937; padding-bottom: 6mm; margin-bottom: 8mm; }
.seller { float: left; font-size: 14pt; font-weight: bold; width: 95mm; }
.title { float: right; text-align: right; }
.title h1 { margin: 0; font-size: 22pt; letter-spacing: 2pt; color: #1f2937; }
.title .number { font-size: 11pt; font-weight: bold; }
.parties { display: table; width: 100%; table-layout: fixed; margin-bottom: 10mm; }
.parties .customer { display: table-cell; width: 46%; vertical-align: top; padding-right: 2%; }
.parties .meta { display: table-cell; width: 54%; vertical-align: top; }
.label { text-transform: uppercase; font-size: 7.5pt; letter-spacing: 0.5pt; color: #6b7280;
         margin-bottom: 1.5mm; }
dl { margin: 0; }
dt { float: left; clear: left; width: 30mm; color: #6b7280; }
dd { margin: 0 0 1mm 30mm; }
.ref { font-family: "DejaVu Sans Mono", monospace; font-size: 8pt; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th { text-align: left; font-size: 8pt; text-transform: uppercase; color: #6b7280;
     border-bottom: 1pt solid #9ca3af; padding: 2mm 1.5mm; }
td { padding: 2.5mm 1.5mm; border-bottom: 0.5pt solid #e5e7eb; vertical-align: top; }
.num { text-align: right; white-space: nowrap; }
col.desc { width: auto; }
col.date { width: 25mm; }
col.nights { width: 16mm; }
col.amount { width: 34mm; }
tr.total td { border-bottom: none; border-top: 1.5pt solid #1f2937; font-weight: bold;
              font-size: 11pt; padding-top: 3mm; }
.note { margin-top: 12mm; color: #4b5563; font-size: 8.5pt; }
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Invoice $number</title>
<style>$css</style>
</head>
<body>
<header>
  <div class="seller">$tenant_name</div>
  <div class="title"><h1>INVOICE</h1><div class="number">$number</div></div>
</header>
<section class="parties">
  <div class="customer">
    <div class="label">Billed to</div>
    <div><strong>$customer_name</strong></div>
    <div>$customer_email</div>
  </div>
  <div class="meta">
    <dl>
      <dt>Invoice number</dt><dd>$number</dd>
      <dt>Issue date</dt><dd>$issue_date</dd>
      <dt>Booking ref.</dt><dd class="ref">$booking_id</dd>
    </dl>
  </div>
</section>
<table>
  <colgroup><col class="desc"><col class="date"><col class="date"><col class="nights">
  <col class="amount"></colgroup>
  <thead><tr><th>Description</th><th>Check-in</th><th>Check-out</th>
    <th class="num">Nights</th><th class="num">Amount</th></tr></thead>
  <tbody>
    <tr><td>$item</td><td>$check_in</td><td>$check_out</td>
      <td class="num">$nights</td><td class="num">$amount $currency</td></tr>
    <tr class="total"><td colspan="4">Total due</td><td class="num">$amount $currency</td></tr>
  </tbody>
</table>
<p class="note">All amounts in $currency. Please quote invoice number $number with any
payment or enquiry.</p>
</body>
</html>
""")


def invoice_html(data: InvoiceData) -> str:
    """The invoice as a self-contained HTML document, every value escaped."""
    values = {
        "number": data.number,
        "issue_date": data.issue_date.isoformat(),
        "tenant_name": data.tenant_name,
        "booking_id": data.booking_id,
        "customer_name": data.customer_name,
        "customer_email": data.customer_email,
        "item": data.item,
        "check_in": data.check_in.isoformat(),
        "check_out": data.check_out.isoformat(),
        "nights": str(data.nights),
        "amount": format_amount(data.amount, data.currency, grouping=True),
        "currency": data.currency.strip(),
    }
    escaped = {key: html.escape(value, quote=True) for key, value in values.items()}
    return PAGE.substitute(escaped, css=CSS)


#: Font configurations no render is using now (see the module's docstring).
_free_fonts: queue.SimpleQueue[FontConfiguration] = queue.SimpleQueue()


@contextmanager
def borrowed_fonts() -> Iterator[FontConfiguration]:
    """A font configuration for one render: a free one, or a new one when all are in use."""
    try:
        config = _free_fonts.get_nowait()
    except queue.Empty:
        config = FontConfiguration()
    try:
        yield config
    finally:
        _free_fonts.put(config)


def render_pdf(document: str) -> bytes:
    """Render `document` to PDF bytes with no base URL, a fetcher that refuses all, and reused fonts."""
    with borrowed_fonts() as fonts:
        return HTML(string=document, base_url=None, url_fetcher=RefusingFetcher()).write_pdf(font_config=fonts)
