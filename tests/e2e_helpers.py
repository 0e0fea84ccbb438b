"""Helpers for the cross-service tests: waiting on conditions, a JSON client."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


def wait_until(predicate, *, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class Api:
    """A tiny JSON client for the running API (urllib: no extra dependency)."""

    def __init__(self, base: str, token: str):
        self.base = base
        self.token = token

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        h = {"Authorization": f"Bearer {self.token}"}
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
        status, _, raw = self.request(method, path, body, headers)
        return status, (json.loads(raw) if raw else {})

    def book(self, name: str = "Ada Lovelace", email: str = "ada@example.com", **extra) -> dict:
        body = {"customer": {"name": name, "email": email}, "item": "Sea-view room",
                "check_in": "2027-03-01", "check_out": "2027-03-04", "amount": "360.00",
                "currency": "EUR", **extra}
        status, got = self.json("POST", "/api/v1/bookings", body)
        assert status == 201, got
        return got

    def tasks(self, booking_id: str) -> dict:
        status, got = self.json("GET", f"/api/v1/bookings/{booking_id}")
        assert status == 200, got
        return got["tasks"]

    def wait_states(self, booking_id: str, want: dict, timeout: float = 60.0) -> dict:
        """Wait until each named task is in the wanted state; return the tasks."""
        def check():
            tasks = self.tasks(booking_id)
            return tasks if all(tasks[t]["state"] == s for t, s in want.items()) else None
        return wait_until(check, timeout=timeout, what=f"tasks {want} of {booking_id}")
