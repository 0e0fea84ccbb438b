"""The renderer's memory stays flat however many invoices it renders (issue 18: +0.1 MB per invoice, for ever).

A worker process that renders for days must not grow.  The test renders a few
hundred different invoices on two threads at a time (new threads for each
batch: reuse must not hang on a thread's life) in a fresh process, and fits a
line to RSS after each batch, past a warm-up in which caches (fonts, styles,
allocator arenas) fill.  The slope is the growth per
invoice: a bound far under the old 0.2 MB and far over the noise of a flat
process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: Batches (of 10 invoices) before the caches are expected full, and batches measured after.
WARM_UP, MEASURED = 4, 18
#: Allowed growth per invoice after warm-up.  Without a reused font configuration it was 0.2 MB.
MAX_MB_PER_INVOICE = 0.02


def slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of y over x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    return (sum((x - mean_x) * (y - mean_y) for x, y in points)
            / sum((x - mean_x) ** 2 for x, _ in points))


def test_slope_is_the_least_squares_fit():
    assert slope([(0, 1.0), (10, 2.0), (20, 3.0)]) == 0.1
    assert abs(slope([(0, 5.0), (10, 5.2), (20, 4.8), (30, 5.0)])) < 0.01


def test_rss_stays_flat_over_hundreds_of_invoices():
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("render_loop.py")), "--batches", str(WARM_UP + MEASURED),
         "--batch", "10", "--threads", "2"],
        capture_output=True, text=True, timeout=280, check=True).stdout
    samples = [json.loads(line) for line in out.splitlines()]
    measured = [(s["invoices"], s["rss_mb"]) for s in samples[WARM_UP - 1:]]
    growth = slope(measured)
    assert growth < MAX_MB_PER_INVOICE, (
        f"RSS grows {growth:.3f} MB per invoice after warm-up (bound {MAX_MB_PER_INVOICE}): {measured}")
