"""Render invoices in a loop on a few threads and print RSS after each batch, as JSON lines.

Run by test_invoice_memory.py in a process of its own, so nothing else the test
session allocates shows in the figures.  Every invoice differs (names, numbers,
non-ASCII text), as a worker's do.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import threading
from datetime import date
from decimal import Decimal

from invoice_worker import render


def rss_mb() -> float:
    """This process's resident set size in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def invoice(i: int) -> render.InvoiceData:
    """The i-th invoice: every text field different from the others'."""
    return render.InvoiceData(
        number=f"INV-{i:06d}", issue_date=date(2027, 1, 1), tenant_name=f"Hôtel Nº {i % 7}",
        booking_id=f"00000000-0000-4000-8000-{i:012d}", customer_name=f"Zoë Łukasiewicz-{i} 東京 {i * 7919}",
        customer_email=f"guest{i}@example.com", item=f"Sea-view room {i}, breakfast ×{i % 5}",
        check_in=date(2027, 3, 1), check_out=date(2027, 3, 1 + 1 + i % 20), amount=Decimal(f"{100 + i}.50"),
        currency=("EUR", "JPY", "GBP", "CHF")[i % 4])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--batch", type=int, default=10, help="invoices per batch, shared by the threads")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    done = 0
    for _ in range(args.batches):
        share = [list(range(done + t, done + args.batch, args.threads)) for t in range(args.threads)]
        threads = [threading.Thread(target=lambda ids: [render.render_pdf(render.invoice_html(invoice(i)))
                                                        for i in ids], args=(ids,)) for ids in share]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done += args.batch
        gc.collect()
        print(json.dumps({"invoices": done, "rss_mb": round(rss_mb(), 2)}), flush=True)


if __name__ == "__main__":
    main()
