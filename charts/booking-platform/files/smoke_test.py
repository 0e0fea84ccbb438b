"""`helm test`: check that the platform answers, and write nothing.

A smoke test runs against production releases, so it must leave no booking, email,
invoice or token behind. This one is read-only by construction: its HTTP calls are
GETs, and its one Postgres session is read-only (the chart sets
`default_transaction_read_only` in PGOPTIONS; the script sets it again and checks it
before its first query, which are all SELECTs). It fails, saying why, unless:

1. the API is ready (`/readyz` 200) and Redis answers too (not "degraded": bookings
   would be accepted but their work would wait in the outbox);
2. the events service (progress pages, streams, ops console) answers `/healthz`;
3. the API serves its OpenAPI document, with the bookings routes;
4. the database schema has every migration this image ships (the pods run the code
   that expects it).

It reports, without failing, how long ago the oldest unfinished task last moved: a
backlog is not a fault.
Env: API_URL, EVENTS_URL, DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

import psycopg

from booking_core.db.migrate import migration_files


def get(url: str) -> tuple[int, dict]:
    """GET a JSON document: (status, body); an unreachable URL fails the test."""
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:  # noqa: S310 - the release's own Services
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except (OSError, ValueError) as e:
        raise SystemExit(f"FAIL: GET {url}: {e}") from None


def check_http(api: str, events: str) -> str:
    status, ready = get(f"{api}/readyz")
    if status != 200:
        raise SystemExit(f"FAIL: the API is not ready ({status}): {ready.get('detail', ready)}")
    if ready.get("degraded"):
        raise SystemExit(f"FAIL: the API runs degraded, {', '.join(ready['degraded'])} unreachable "
                         f"({ready['checks']}): bookings are accepted but their work waits in the outbox")
    status, health = get(f"{events}/healthz")
    if status != 200:
        raise SystemExit(f"FAIL: the events service does not answer /healthz ({status}): {health}")
    status, doc = get(f"{api}/api/v1/openapi.json")
    if status != 200 or "/api/v1/bookings" not in doc.get("paths", {}):
        raise SystemExit(f"FAIL: GET /api/v1/openapi.json ({status}) has no bookings routes")
    return f"API ready ({ready['checks']}), events service up, OpenAPI {doc.get('info', {}).get('version', '?')}"


def check_database(url: str) -> str:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SET default_transaction_read_only = on")
        if conn.execute("SHOW transaction_read_only").fetchone()[0] != "on":
            raise SystemExit("FAIL: could not make the database session read-only")
        applied = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        oldest = conn.execute(
            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(updated_at)), 0) FROM booking_tasks"
            " WHERE state <> 'done' AND state <> 'dead'").fetchone()[0]
    missing = [name for name, _ in migration_files() if name not in applied]
    if missing:
        raise SystemExit(f"FAIL: the database lacks migrations {', '.join(missing)}: did the migrations hook run?")
    return f"schema at {max(applied)}, the oldest unfinished task last moved {float(oldest):.0f}s ago"


def main() -> int:
    http = check_http(os.environ["API_URL"].rstrip("/"), os.environ["EVENTS_URL"].rstrip("/"))
    database = check_database(os.environ["DATABASE_URL"])
    print(f"PASS: {http}; {database}; nothing written", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
