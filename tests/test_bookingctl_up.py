"""`bookingctl up` as a user runs it: foreground, prints URL and token, stops cleanly, keeps data."""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import urllib.request

import pytest

from booking_embedded import free_port
from e2e_helpers import BOOKINGCTL, Api, Up, alive, clean_env, processes_using

pytestmark = pytest.mark.e2e

def test_up_runs_everything_then_stops_everything_and_keeps_data(server_tmp):
    data_dir = server_tmp / "data"
    port = free_port()
    up = Up(data_dir, port)
    try:
        up.wait_ready()
        text = up.text()
        assert f"http://127.0.0.1:{port}" in text
        token_file = data_dir / "admin-token"
        token = token_file.read_text().strip()
        assert token in text
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        pids = up.pids()
        assert len(pids) == 7  # relay, four workers (email, invoice, audit, webhook), API, events
        console = re.search(r"Ops console: +(http://127\.0\.0\.1:\d+/ops/)", text)
        assert console, text
        with urllib.request.urlopen(console.group(1), timeout=30) as r:
            assert r.status == 200 and b'name="token"' in r.read(), "the printed URL is the console's sign-in"

        api = Api(f"http://127.0.0.1:{port}", token)
        booking = api.book(name="Quick Start", email="quick@example.com")
        api.wait_states(booking["id"], {"email": "done", "invoice": "done", "audit": "done"})
        assert len(list((data_dir / "mail").glob("*.eml"))) == 1

        # A second `up` on the same data dir refuses instead of corrupting it.
        second = subprocess.run([*BOOKINGCTL, "up", "--data-dir", str(data_dir), "--port", str(free_port())],
                                capture_output=True, text=True, timeout=60, env=clean_env())
        assert second.returncode == 1
        assert "in use by another `bookingctl up`" in second.stderr

        # Other commands reach the running platform through the same data dir.
        made = subprocess.run([*BOOKINGCTL, "--data-dir", str(data_dir), "tokens", "create", "--tenant", "acme"],
                              capture_output=True, text=True, timeout=60, env=clean_env())
        assert made.returncode == 0, made.stderr
        acme = Api(f"http://127.0.0.1:{port}", made.stdout.strip())
        status, _ = acme.json("GET", f"/api/v1/bookings/{booking['id']}")
        assert status == 404  # another tenant's booking
    finally:
        code = up.stop(signal.SIGINT)
    assert code == 0, up.text()
    assert not [p for p in pids if alive(p)]
    assert processes_using(data_dir) == []

    # Data survives a restart on the same data dir; the admin token is reused.
    again = Up(data_dir, port)
    try:
        again.wait_ready()
        assert Api(f"http://127.0.0.1:{port}", token).tasks(booking["id"])["invoice"]["state"] == "done"
        run = json.loads((data_dir / "run" / "env.json").read_text())
        assert run["API_URL"] == f"http://127.0.0.1:{port}"
    finally:
        assert again.stop(signal.SIGTERM) == 0
    assert not (data_dir / "run" / "env.json").exists()
