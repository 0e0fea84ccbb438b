"""What one invoice PDF costs: CPU per render, and PDFs per second from a worker's threads.

The real renderer (`invoice_worker.render`: escaped template, refusing fetcher,
reused font configurations) on a typical invoice and on one with long values.
Two stylesheets, alternated within each round so both see the same machine:

- `flex`: the layout the invoice had before, header and parties in flexboxes
  and the facts in a CSS grid (the three rules are restated below, the rest of
  the stylesheet is shared);
- `now`: `render.CSS` as it is, floats and tables only.

Reported per stylesheet: the median CPU seconds per render (process time, one
thread), PDFs per second with `--threads` threads rendering at once (as an
invoice worker process does; the GIL is what they share), and now ÷ flex.
The machine is shared: read the ratios, not the absolute figures.

    .venv/bin/python bench/invoice_render.py [--rounds 5] [--renders 20] [--threads 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path

import report  # bench/report.py: a script's own folder is on sys.path

from invoice_worker import render

#: The rules the `now` stylesheet replaced, keyed by the selector they start with.
FLEX_RULES = {
    "header {": "header { display: flex; justify-content: space-between; align-items: flex-start;\n"
                "         border-bottom: 2pt solid #1f2937; padding-bottom: 6mm; margin-bottom: 8mm; }",
    ".seller {": ".seller { font-size: 14pt; font-weight: bold; max-width: 95mm; }",
    ".title {": ".title { text-align: right; }",
    ".parties {": ".parties { display: flex; justify-content: space-between; margin-bottom: 10mm; }",
    ".parties .customer {": ".parties .customer { width: 44%; }",
    ".parties .meta {": ".parties .meta { width: 54%; }",
    "dl {": "dl { margin: 0; display: grid; grid-template-columns: 30mm auto; row-gap: 1mm; }",
    "dt {": "dt { color: #6b7280; }",
    "dd {": "dd { margin: 0; }",
}


def flex_css(css: str) -> str:
    """`css` with each rule of FLEX_RULES in place of the rule that starts with the same selector."""
    out, rules = [], dict(FLEX_RULES)
    lines = iter(css.splitlines())
    for line in lines:
        start = next((sel for sel in rules if line.startswith(sel)), None)
        if start is None:
            out.append(line)
            continue
        while "}" not in line:  # a rule spread over lines: skip to its end
            line = next(lines)
        out.append(rules.pop(start))
    if rules:
        raise SystemExit(f"render.CSS no longer has the rules {sorted(rules)}: update FLEX_RULES")
    return "\n".join(out)


def invoice(**changes) -> render.InvoiceData:
    base = dict(number="INV-2026-000123", issue_date=date(2026, 1, 1), tenant_name="Grand Hotel Lakeside",
                booking_id="7f1c2a9e-0b4d-4c55-9a1e-3d2f6b8c9e01", customer_name="Ann Lee",
                customer_email="ann.lee@example.com", item="Double room, lake view", check_in=date(2026, 2, 1),
                check_out=date(2026, 2, 3), amount=Decimal("1234.50"), currency="EUR")
    return render.InvoiceData(**{**base, **changes})


def documents() -> dict[str, dict[str, str]]:
    """{case: {stylesheet: html}} for a typical invoice and one with long client values."""
    cases = {"typical": invoice(),
             "long values": invoice(customer_name="A" * 300, item="B" * 400, customer_email="c" * 120 + "@example.com")}
    out = {}
    for case, data in cases.items():
        page = render.invoice_html(data)
        out[case] = {"flex": page.replace(render.CSS, flex_css(render.CSS)), "now": page}
        assert out[case]["flex"] != page
    return out


def cpu_per_render(doc: str, renders: int) -> float:
    times = []
    for _ in range(renders):
        t = time.process_time()
        render.render_pdf(doc)
        times.append(time.process_time() - t)
    return statistics.median(times)


def pdfs_per_second(doc: str, renders: int, threads: int) -> float:
    with ThreadPoolExecutor(threads) as pool:
        t = time.perf_counter()
        list(pool.map(lambda _: render.render_pdf(doc), range(renders)))
        return renders / (time.perf_counter() - t)


def measure(rounds: int, renders: int, threads: int) -> dict:
    docs = documents()
    for styles in docs.values():  # warm: fonts, caches, imports
        for doc in styles.values():
            render.render_pdf(doc)
    rows: dict[str, dict[str, dict[str, list[float]]]] = {
        case: {s: {"cpu": [], "rate": []} for s in ("flex", "now")} for case in docs}
    for r in range(rounds):
        order = ("flex", "now") if r % 2 == 0 else ("now", "flex")
        for case, styles in docs.items():
            for style in order:
                rows[case][style]["cpu"].append(cpu_per_render(styles[style], renders))
                rows[case][style]["rate"].append(pdfs_per_second(styles[style], renders, threads))
    result = {}
    for case, styles in rows.items():
        med = {s: {"cpu_ms_per_render": round(statistics.median(v["cpu"]) * 1000, 1),
                   "pdfs_per_second": round(statistics.median(v["rate"]), 2)} for s, v in styles.items()}
        result[case] = {**med, "now_over_flex": {
            "cpu": round(med["now"]["cpu_ms_per_render"] / med["flex"]["cpu_ms_per_render"], 2),
            "pdfs_per_second": round(med["now"]["pdfs_per_second"] / med["flex"]["pdfs_per_second"], 2)}}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--renders", type=int, default=20, help="renders per stylesheet, case and round")
    ap.add_argument("--threads", type=int, default=4, help="threads rendering at once (a worker's default)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "invoice_render.json")
    args = ap.parse_args()
    results = measure(args.rounds, args.renders, args.threads)
    report.write({"command": report.command(), "load_average_after": os.getloadavg(), "results": results}, args.out)


if __name__ == "__main__":
    main()
