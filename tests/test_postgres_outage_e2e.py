"""A Postgres outage gets fast, clear answers from the API, and everything recovers by itself.

Real processes, nothing mocked: a whole local platform (embedded Postgres, Redis,
SMTP sink, relay, workers, gunicorn with 4 threads). Postgres is made to hang
the hard way, every one of its processes SIGSTOPped, so the server accepts bytes
and answers nothing and no server-side timeout can fire; then its postmaster is
stopped outright. Meanwhile the API must answer each POST and GET with a 503
problem+json and `Retry-After` within 5 s, `/healthz` with 200 at once, and
`/readyz` with 503 within 2 s; afterwards, POSTs are 201 again and every booking
completes. The POST answer times measured during the freeze are printed.

Both tests run on one platform (`module_platform`; each start costs ~10 CPU-s): each lets Postgres
back, proves the API and the pipeline recovered, and reads only its own bookings and the API log
written since it began.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from e2e_helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

FREEZE_SECONDS = 15
BOOKING = {"customer": {"name": "Ada Lovelace", "email": "ada@example.com"}, "item": "Sea-view room",
           "check_in": "2027-03-01", "check_out": "2027-03-04", "amount": "360.00", "currency": "EUR"}
ALL_DONE = {"email": "done", "invoice": "done", "audit": "done"}


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(after_name[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@contextmanager
def frozen(postmaster: int):
    """Every Postgres process stopped (postmaster first, so it forks no new backend), then resumed."""
    os.kill(postmaster, signal.SIGSTOP)
    stopped = [postmaster]
    try:
        for pid in children_of(postmaster):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield stopped
    finally:
        for pid in reversed(stopped):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def call(base: str, method: str, path: str, token: str | None = None, body: dict | None = None,
         key: str | None = None) -> tuple[int, dict, bytes, float]:
    """One HTTP request: status, headers, body and seconds until the answer (30 s client timeout)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if key:
        headers["Idempotency-Key"] = key
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read(), time.monotonic() - start
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read(), time.monotonic() - start


def assert_unavailable(answer, within: float) -> None:
    """A 503 problem+json with Retry-After, in time."""
    status, headers, raw, seconds = answer
    assert status == 503, (status, raw)
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(raw)
    assert problem["status"] == 503 and problem["type"].endswith("/database-unavailable"), problem
    assert int(headers["Retry-After"]) > 0
    assert seconds <= within, f"answered after {seconds:.2f}s"


def test_every_postgres_process_frozen_gets_fast_503s_and_everything_recovers(module_platform, api_of):
    platform = module_platform
    api = api_of(platform)
    base, token = platform.api_url, platform.admin_token
    before = api.book()
    api.wait_states(before["id"], ALL_DONE)

    post_times: list[float] = []
    keys: list[str] = []
    with frozen(platform.component("postgres").pid), ThreadPoolExecutor(8) as pool:
        start = time.monotonic()
        # A burst of concurrent POSTs, each with its own Idempotency-Key, as clients would retry.
        burst_keys = [str(uuid.uuid4()) for _ in range(8)]
        burst = [pool.submit(call, base, "POST", "/api/v1/bookings", token, BOOKING, k) for k in burst_keys]
        time.sleep(0.5)
        health = call(base, "GET", "/healthz")
        assert health[0] == 200 and health[3] < 1.0, health
        ready = call(base, "GET", "/readyz")
        assert ready[0] == 503 and ready[3] <= 2.0, ready
        assert json.loads(ready[2])["status"] == 503
        for key, future in zip(burst_keys, burst, strict=True):
            answer = future.result()
            assert_unavailable(answer, within=5.0)
            post_times.append(answer[3])
            keys.append(key)
        assert_unavailable(call(base, "GET", f"/api/v1/bookings/{before['id']}", token), within=5.0)
        # And one at a time, for the rest of the freeze.
        while time.monotonic() - start < FREEZE_SECONDS:
            key = str(uuid.uuid4())
            answer = call(base, "POST", "/api/v1/bookings", token, BOOKING, key)
            assert_unavailable(answer, within=5.0)
            post_times.append(answer[3])
            keys.append(key)
            health = call(base, "GET", "/healthz")
            assert health[0] == 200 and health[3] < 1.0, health
            time.sleep(0.5)
    print(f"\nPOST answers while every Postgres process was stopped: {len(post_times)} x 503, "
          f"slowest {max(post_times):.2f}s, median {sorted(post_times)[len(post_times) // 2]:.2f}s")

    # Postgres is back: the API recovers by itself, and so does the pipeline.
    back = time.monotonic()
    wait_until(lambda: call(base, "GET", "/readyz")[0] == 200, timeout=30, what="/readyz 200 again")
    wait_until(lambda: call(base, "POST", "/api/v1/bookings", token, BOOKING)[0] == 201, timeout=30,
               interval=0.2, what="POST 201 after Postgres resumed")
    print(f"first 201 {time.monotonic() - back:.2f}s after SIGCONT")
    fresh = api.book()
    api.wait_states(fresh["id"], ALL_DONE, timeout=90)
    # Each refused POST, retried with its key, is a booking exactly once, and it completes.
    ids = set()
    for key in keys:
        status, _, raw, _ = call(base, "POST", "/api/v1/bookings", token, BOOKING, key)
        assert status == 201, raw
        ids.add(json.loads(raw)["id"])
    assert len(ids) == len(keys)
    for booking_id in ids:
        api.wait_states(booking_id, ALL_DONE, timeout=90)


def test_postmaster_stopped_gets_503_not_500_and_recovers(module_platform, api_of):
    platform = module_platform
    api = api_of(platform)
    api_log = platform.log_dir / "api.log"
    logged_before = api_log.stat().st_size
    base, token = platform.api_url, platform.admin_token
    platform.stop_component("postgres")
    try:
        for _ in range(3):
            assert_unavailable(call(base, "POST", "/api/v1/bookings", token, BOOKING, str(uuid.uuid4())),
                               within=5.0)
            assert_unavailable(call(base, "GET", "/api/v1/bookings", token), within=5.0)
        ready = call(base, "GET", "/readyz")
        assert ready[0] == 503 and ready[3] <= 2.0, ready
        assert call(base, "GET", "/healthz")[0] == 200
    finally:
        platform.start_component("postgres")
    wait_until(lambda: call(base, "POST", "/api/v1/bookings", token, BOOKING)[0] == 201, timeout=30,
               interval=0.5, what="POST 201 after Postgres restarted")
    booking = api.book()
    api.wait_states(booking["id"], ALL_DONE, timeout=90)
    with api_log.open("rb") as log:
        log.seek(logged_before)
        assert b"Traceback" not in log.read()
