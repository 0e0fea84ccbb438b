"""`helm test`: POST a booking through the API Service and wait until its three tasks are done.

Runs in the booking-api image.  It mints a short-lived token for the test
tenant straight in the database (as `booking-admin tokens create` does),
revokes it at the end, and exits non-zero with the tasks' states when the
email, invoice or audit task is dead or not done in time.

Env: API_URL, DATABASE_URL, TEST_TENANT, TIMEOUT_SECONDS.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import date, timedelta

from booking_core import db
from booking_core.model import tenants

TASKS = ("email", "invoice", "audit")


def call(method: str, url: str, token: str, body: dict | None = None, headers: dict | None = None) -> dict:
    """One JSON request; raises with the problem document on an HTTP error."""
    data = json.dumps(body).encode() if body is not None else None
    h = {"Authorization": f"Bearer {token}", "Accept": "application/json", **(headers or {})}
    if data is not None:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"FAIL: {method} {url} -> {e.code}: {e.read()[:500]!r}") from None


def wait_done(api: str, token: str, booking_id: str, timeout: float) -> dict:
    """Poll the booking until every task is done; fail at once on a dead one."""
    deadline = time.monotonic() + timeout
    states: dict = {}
    while time.monotonic() < deadline:
        tasks = call("GET", f"{api}/api/v1/bookings/{booking_id}", token)["tasks"]
        now = {t: tasks[t]["state"] for t in TASKS}
        if now != states:
            print(f"tasks: {now}", flush=True)
            states = now
        if all(s == "done" for s in now.values()):
            return tasks
        dead = {t: tasks[t]["last_error"] for t in TASKS if tasks[t]["state"] == "dead"}
        if dead:
            raise SystemExit(f"FAIL: dead task(s): {dead}")
        time.sleep(2)
    raise SystemExit(f"FAIL: tasks not done after {timeout:.0f}s: {states}")


def main() -> int:
    api = os.environ["API_URL"].rstrip("/")
    timeout = float(os.environ.get("TIMEOUT_SECONDS", "180"))
    with db.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        tenant = tenants.ensure_tenant(conn, os.environ.get("TEST_TENANT", "helm-test"))
        made = tenants.create_token(conn, tenant["id"], label="helm test")
    try:
        check_in = date.today() + timedelta(days=30)
        booking = call("POST", f"{api}/api/v1/bookings", made["token"], {
            "customer": {"name": "Helm Test", "email": "helm-test@example.com"},
            "item": "Smoke-test room",
            "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=2)).isoformat(),
            "amount": "100.00",
            "currency": "EUR",
        }, headers={"Idempotency-Key": str(uuid.uuid4())})
        print(f"created booking {booking['id']}", flush=True)
        wait_done(api, made["token"], booking["id"], timeout)
        print(f"PASS: booking {booking['id']}: email, invoice and audit tasks are done", flush=True)
        return 0
    finally:
        with db.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            tenants.revoke_token(conn, made["id"])


if __name__ == "__main__":
    sys.exit(main())
