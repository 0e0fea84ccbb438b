"""The local runner's own promises, on the real platform.

- Its children never die with the thread that started them, and a supervisor
  error is logged while supervision goes on.
- Ctrl-C gives each worker one SIGTERM: work in flight finishes or is
  requeued, so `up` again sends no email twice and leaves nothing in flight.

Priorities, and children or servers that die, are in test_supervision_e2e.py
(one platform shared by its tests).
"""

from __future__ import annotations

import json
import signal
import threading
import time

import psycopg
import pytest
import redis

from booking_embedded import free_port
from bookingctl.services import WORKER_SHUTDOWN_TIMEOUT_MS
from e2e_helpers import Api, Up, group_members, mails_to, wait_until

pytestmark = pytest.mark.e2e

ALL_DONE = {"email": "done", "invoice": "done", "audit": "done"}


def in_flight(redis_url: str) -> int:
    """Messages some Dramatiq consumer has taken and not yet acked (its `__acks__` sets)."""
    client = redis.Redis.from_url(redis_url)
    return sum(client.scard(key) for key in client.scan_iter(match="*__acks__*"))


def email_sends(database_url: str, booking_ids: list[str]) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT booking_id::text, count(*) FROM email_sends WHERE booking_id::text = ANY(%s) "
                            "GROUP BY booking_id", (booking_ids,)).fetchall()
    return dict(rows)


def test_supervisor_error_neither_kills_nor_orphans_the_workers_it_scaled_up(make_platform, api_of, caplog):
    """Given the supervisor scales up a worker and then raises, the worker lives on and stops in order."""
    platform = make_platform()
    rounds = []

    def scale_up_then_fail() -> None:
        rounds.append(threading.current_thread().name)
        if len(rounds) == 1:
            platform.resize("email", 2)
            raise RuntimeError("boom in the supervisor")

    platform.supervise_once = scale_up_then_fail
    wait_until(lambda: len(rounds) >= 3, timeout=30, what="supervisor rounds after the error")
    assert rounds[0] == "supervisor"
    assert "supervisor round failed" in caplog.text and "boom in the supervisor" in caplog.text
    scaled = platform.children["email-worker-2"]
    pid = scaled.pid
    wait_until(lambda: len(group_members(pid)) >= 2, timeout=60, what="Dramatiq to fork its worker")
    assert scaled.alive() and scaled.pid == pid

    # The first step of stop(): the supervisor thread ends.  Its children must not go with it.
    platform._stopping.set()
    platform._supervisor.join(10)
    assert not platform._supervisor.is_alive()
    time.sleep(1.5)
    assert scaled.alive() and scaled.pid == pid, f"died with the supervisor thread: {scaled.returncode()}"
    groups = {name: child.pid for name, child in platform.children.items()}
    groups.update({name: server.child.pid for name, server in platform.servers.items()})

    platform.stop()
    assert scaled.returncode() == 0  # Dramatiq's own clean exit, not a signal death
    assert {name: group_members(pgrp) for name, pgrp in groups.items() if group_members(pgrp)} == {}


def test_stop_with_mail_in_flight_then_up_again_sends_each_email_once(make_platform, api_of):
    """Given emails held in the SMTP DATA phase, stopping lets them finish; a restart completes the rest."""
    platform = make_platform(smtp_delay=2.0)
    api = api_of(platform)
    ids = [api.book(name=f"In Flight {i}", email=f"inflight{i}@example.com")["id"] for i in range(10)]
    wait_until(lambda: sum(api.tasks(i)["email"]["state"] == "running" for i in ids) >= 2, timeout=60,
               what="emails in the SMTP sink")
    started = time.monotonic()
    platform.stop()
    took = time.monotonic() - started
    print(f"\nstop with 10 emails in flight (2 s each in the sink): {took:.1f} s")
    assert took < WORKER_SHUTDOWN_TIMEOUT_MS / 1000
    for worker in ("email-worker-1", "invoice-worker-1", "audit-worker-1"):
        log = (platform.log_dir / f"{worker}.log").read_text()
        assert log.count("Sending signal 'SIGTERM' to subprocesses") == 1, worker
        assert "Killing worker process" not in log, worker

    again = make_platform(data_dir=platform.data_dir)
    api = api_of(again)
    restarted = time.monotonic()
    for booking_id in ids:
        api.wait_states(booking_id, ALL_DONE, timeout=60)
    wait_until(lambda: in_flight(again.urls["REDIS_URL"]) == 0, timeout=max(1.0, 30 - (time.monotonic() - restarted)),
               what="no message in flight 30 s after the restart")
    assert email_sends(again.urls["DATABASE_URL"], ids) == dict.fromkeys(ids, 1)
    assert [mails_to(again.data_dir, f"inflight{i}@example.com") for i in range(10)] == [1] * 10


def test_ctrl_c_on_up_with_work_in_flight_stops_each_worker_once_and_up_again_finishes(server_tmp):
    """Ctrl-C goes to the terminal's foreground group: only bookingctl gets it, and it stops in order."""
    data_dir, port = server_tmp / "data", free_port()
    up = Up(data_dir, port)
    up.wait_ready()
    token = (data_dir / "admin-token").read_text().strip()
    api = Api(f"http://127.0.0.1:{port}", token)
    ids = [api.book(name=f"Ctrl C {i}", email=f"ctrlc{i}@example.com")["id"] for i in range(20)]
    try:
        wait_until(lambda: any(api.tasks(i)["invoice"]["state"] == "running" for i in ids), timeout=60,
                   what="an invoice rendering")
    finally:
        started = time.monotonic()
        code = up.ctrl_c()
        took = time.monotonic() - started
    print(f"\nCtrl-C to exit of `bookingctl up` with invoices rendering: {took:.1f} s")
    assert code == 0, up.text()
    assert took < WORKER_SHUTDOWN_TIMEOUT_MS / 1000 + 10
    for log in (data_dir / "logs").glob("*-worker-*.log"):
        text = log.read_text()
        # One SIGTERM from bookingctl, no SIGINT from the terminal.  A worker the autoscaler
        # started a moment before may not have booted: it logs nothing and just exits.
        sent = text.count("Sending signal 'SIGTERM' to subprocesses")
        assert sent == 1 if log.name.endswith("-worker-1.log") else sent <= 1, log.name
        assert "Killing worker process" not in text, log.name

    again = Up(data_dir, port)
    try:
        again.wait_ready()
        restarted = time.monotonic()
        for booking_id in ids:
            api.wait_states(booking_id, ALL_DONE, timeout=90)
        run = json.loads((data_dir / "run" / "env.json").read_text())
        wait_until(lambda: in_flight(run["REDIS_URL"]) == 0,
                   timeout=max(1.0, 30 - (time.monotonic() - restarted)), what="nothing in flight")
        assert email_sends(run["DATABASE_URL"], ids) == dict.fromkeys(ids, 1)
        assert [mails_to(data_dir, f"ctrlc{i}@example.com") for i in range(20)] == [1] * 20
    finally:
        assert again.stop(signal.SIGTERM) == 0
