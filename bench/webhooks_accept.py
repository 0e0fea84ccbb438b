"""The accept path's own statement with webhooks off and on, measured in Postgres alone.

    .venv/bin/python bench/webhooks_accept.py [--bookings 500] [--rounds 5] [--endpoints 10]

`bookings.create` (the whole write of "Confirm booking", one statement) run
sequentially on one connection to an embedded Postgres with the migrations applied,
in three modes taken in turns, `--rounds` times: the tenant has no endpoint (what a
tenant without webhooks pays: the trigger's index probe), the tenant has
`--endpoints` endpoints (one event, that many deliveries and outbox rows written in
the same statement), and the trigger disabled (the code before webhooks). Reports the
median statement latency per mode and the ratios; no HTTP, no workers, so it isolates
the database cost that `bench/webhooks.py` measures end to end. The outbox is emptied
between rounds (no relay runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import loadgen  # bench/loadgen.py: a script's own folder is on sys.path
import report

from booking_core import db
from booking_core.model import bookings, tenants
from booking_core.webhooks import endpoints, sealing

BOOKING = bookings.NewBooking("Bench Mark", "bench@example.com", "Sea-view room", date(2027, 3, 1),
                              date(2027, 3, 4), Decimal("360.00"), "EUR")


def round_ms(conn, tenant_id: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        bookings.create(conn, tenant_id=tenant_id, booking=BOOKING, actor="bench")
        out.append((time.perf_counter() - start) * 1000)
    return out


def two_tenants(conn, n_endpoints: int) -> tuple[str, str]:
    """(a tenant without webhooks, one with `n_endpoints` endpoints): the ids."""
    sealer = sealing.Sealer([sealing.new_key()])
    without = tenants.ensure_tenant(conn, "no-webhooks")["id"]
    with_ = tenants.ensure_tenant(conn, "webhooks")["id"]
    for i in range(n_endpoints):
        endpoints.create(conn, sealer, with_, {"url": f"https://hooks{i}.example/in"})
    return without, with_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bookings", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("bench/results/webhooks_accept.json"))
    args = ap.parse_args()
    with loadgen.embedded_settings() as settings:  # Postgres (and a Redis, unused), migrated
        url = settings.database_url
        with db.connect(url, autocommit=True) as conn:
            without, with_ = two_tenants(conn, args.endpoints)
            modes = {"trigger_disabled": [], "no_endpoint": [], "endpoints": []}
            round_ms(conn, without, 100)  # warm-up
            for _ in range(args.rounds):
                for mode in modes:
                    if mode == "trigger_disabled":
                        conn.execute("ALTER TABLE bookings DISABLE TRIGGER bookings_webhook_events")
                    modes[mode] += round_ms(conn, with_ if mode == "endpoints" else without, args.bookings)
                    if mode == "trigger_disabled":
                        conn.execute("ALTER TABLE bookings ENABLE TRIGGER bookings_webhook_events")
                    conn.execute("DELETE FROM outbox")
    med = {m: round(statistics.median(v), 3) for m, v in modes.items()}
    report.write({"median_ms": med,
                  "p90_ms": {m: round(statistics.quantiles(v, n=10)[-1], 3) for m, v in modes.items()},
                  "no_endpoint_over_disabled": round(med["no_endpoint"] / med["trigger_disabled"], 3),
                  "endpoints_over_disabled": round(med["endpoints"] / med["trigger_disabled"], 3),
                  "bookings_per_mode": len(modes["endpoints"]), "endpoints": args.endpoints,
                  "command": report.command()}, args.out)


if __name__ == "__main__":
    main()
