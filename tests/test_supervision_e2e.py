"""The local runner's supervision on the real platform: priorities, and processes that die or stop.

- `bookingctl` commands find the platform as soon as the API answers.
- All children share bookingctl's session (one autogroup) in groups of their
  own; the async side runs at a lower CPU priority than the API.
- A killed metrics process gets its worker restarted, metrics included.
- A SIGKILLed Dramatiq parent leaves no orphan (its worker and metrics
  processes used to run on under PID 1, holding messages for ever once their
  log pipe filled, and the metrics port, and surviving stop); every booking
  then finishes, once, within the reconcile window plus a heartbeat timeout,
  and a webhook delivery that was in flight is sent again and delivered (the
  receiver processes each webhook-id once).
- A SIGKILLed embedded server is logged, restarted on its port and data, and
  the platform recovers; one stopped on purpose stays down.
- Stop with every worker process SIGSTOPped is orderly, bounded, and leaves
  nothing running.

One platform serves the whole module (starting one is the slow part): the
tests run in file order and each leaves it serving, except the last, which
stops it.  The heartbeat timeout and the reconcile window are short.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import psycopg
import pytest
from webhook_receiver import VerifyingReceiver, add_endpoint, deliveries

from booking_core import db as booking_db
from booking_embedded import wait_for_port
from bookingctl.datadir import read_run_file
from bookingctl.platform import Platform
from bookingctl.services import ASYNC_NICE, WORKER_SHUTDOWN_TIMEOUT_MS
from e2e_helpers import (
    Api,
    alive,
    bookingctl,
    child_pids,
    group_members,
    mails_to,
    proc_stat,
    processes_using,
    thread_policies,
    wait_until,
)

pytestmark = pytest.mark.e2e

HEARTBEAT_MS = 3_000
RECONCILE_AFTER_MS = 60_000
#: A webhook attempt held by its receiver stays in flight until its worker is killed.
WEBHOOK_TIMEOUT_S = 300
WORKERS = ("email-worker-1", "invoice-worker-1", "audit-worker-1", "webhook-worker-1")
ALL_DONE = {"email": "done", "invoice": "done", "audit": "done"}


@dataclass
class Shared:
    platform: Platform
    #: What `bookingctl` saw at the moment the API first answered, while a worker was not ready yet.
    run_file_then: dict | None
    command_then: subprocess.CompletedProcess
    #: Every process group the platform has had: orphans keep the group of their dead parent.
    groups: set[int] = field(default_factory=set)

    def remember_groups(self) -> None:
        p = self.platform
        self.groups |= {c.pid for c in p.children.values()} | {s.child.pid for s in p.servers.values()}

    def processes(self) -> dict[int, int]:
        """Every live process of the platform, with its parent's pid."""
        found = {}
        for group in self.groups:
            for pid in group_members(group):
                try:
                    found[pid] = proc_stat(pid)["ppid"]
                except (OSError, IndexError):
                    pass
        return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def shared(new_platform):
    """Start the platform with one worker's parent stopped at birth, and look around while `start` waits for it."""
    platform = new_platform("parents",
                            {"BOOKING_HEARTBEAT_TIMEOUT_MS": str(HEARTBEAT_MS),
                             "BOOKING_RECONCILE_AFTER_MS": str(RECONCILE_AFTER_MS),
                             "BOOKING_WEBHOOKS_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT_S)},
                            workers_cpu_idle=True)  # what `bookingctl up` does by default
    failed: list[BaseException] = []

    def start() -> None:
        try:
            platform.start()
        except BaseException as e:
            failed.append(e)

    starter = threading.Thread(target=start)
    starter.start()
    try:
        held = wait_until(lambda: platform.children.get("audit-worker-1") or failed, timeout=120, interval=0.005,
                          what="the audit worker's Dramatiq parent")
        assert not failed, failed
        os.kill(held.pid, signal.SIGSTOP)  # its metrics cannot answer, so `start` waits on it
        try:
            wait_until(lambda: answers(platform.api_url + "/healthz") or failed, timeout=120,
                       what="the API's first answer")
            run_file = read_run_file(platform.data_dir)
            command = bookingctl(platform, "dlq", "list")
            assert starter.is_alive(), "start finished while a worker's parent was stopped"
        finally:
            os.kill(held.pid, signal.SIGCONT)
    finally:
        starter.join()
    if failed:
        raise failed[0]
    state = Shared(platform, run_file, command)
    state.remember_groups()
    yield state
    platform.stop()


def test_bookingctl_finds_the_platform_as_soon_as_the_api_answers(shared):
    assert shared.run_file_then is not None, "the API answered before the run file was written"
    assert shared.run_file_then["API_URL"] == shared.platform.api_url
    assert shared.command_then.returncode == 0, shared.command_then.stderr
    assert "dead letter(s)" in shared.command_then.stdout


def test_children_share_our_session_in_their_own_groups_and_the_async_side_yields(shared):
    """One session means one autogroup, where nice orders API over workers; own groups keep Ctrl-C ours.

    The workers also run at SCHED_IDLE, so a waking request preempts them at once.
    """
    platform = shared.platform
    ours = proc_stat(os.getpid())
    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen, policies = {}, {}
    for name in [*platform.children, *platform.servers]:
        leader = platform.component(name).pid
        wait_until(lambda leader=leader: group_members(leader), timeout=30, what=f"{name} running")
        for pid in group_members(leader):  # the process we started and everything it forked
            got = proc_stat(pid)
            assert got["session"] == ours["session"], (name, pid)
            assert got["pgrp"] == leader != ours["pgrp"], (name, pid)
            seen.setdefault(name, set()).add(got["nice"])
            policies.setdefault(name, set()).update(thread_policies(pid))
    assert seen["api"] == {base}
    assert seen["postgres"] == {base}  # it serves the accept path too
    for name in ("relay", *WORKERS, "redis", "smtp"):
        assert seen[name] == {base + ASYNC_NICE}, name
    assert len(group_members(platform.component("email-worker-1").pid)) >= 2  # the forked worker too
    # The Dramatiq workers, every thread of every process, yield the CPU at once to
    # a request (SCHED_IDLE); everything a request may wait on stays normal.
    for name in WORKERS:
        assert policies[name] == {os.SCHED_IDLE}, name
    for name in ("api", "postgres", "relay", "redis", "smtp"):
        assert policies[name] == {os.SCHED_OTHER}, name


def metrics_process(parent: int) -> int:
    """The child of a Dramatiq parent that serves its metrics: the one with a single thread."""
    kids = wait_until(lambda: (lambda k: k if len(k) == 2 else None)(child_pids(parent)), timeout=60,
                      what=f"the two children of {parent}")
    return next(k for k in kids if len(os.listdir(f"/proc/{k}/task")) == 1)


def test_a_killed_metrics_process_gets_its_worker_restarted_with_metrics(shared):
    platform = shared.platform
    name = "email-worker-1"
    child, url = platform.children[name], platform.metrics_urls[name]
    parent = child.pid
    fork = metrics_process(parent)
    os.kill(fork, signal.SIGKILL)
    wait_until(lambda: child.pid != parent and child.alive(), timeout=60, what=f"{name} restarted")
    shared.remember_groups()
    assert not alive(fork) and group_members(parent) == []  # no zombie, nothing left of the old run
    wait_until(lambda: answers(url), timeout=120, what="the restarted worker's metrics")
    log = (platform.log_dir / f"{name}.log").read_text()
    assert "metrics exposition process died" in log
    assert "Killing worker process" not in log  # the worker stopped in order


def whole_group(parent: int) -> list[int] | None:
    """A Dramatiq parent's group once its worker and metrics processes are both there."""
    members = group_members(parent)
    return members if len(members) >= 3 else None


def test_worker_parents_killed_mid_task_leave_no_orphan_and_every_booking_finishes_once_in_time(shared):
    """Each worker blocked inside its task; its Dramatiq parent SIGKILLed, one after another.

    The webhook worker is blocked in a delivery to a receiver that holds every request.
    """
    platform = shared.platform
    api = Api(platform.api_url, platform.admin_token)
    db = platform.urls["DATABASE_URL"]
    smtp = platform.component("smtp")
    release, blocked = threading.Event(), threading.Event()
    receiver = VerifyingReceiver(hold=True)
    endpoint = add_endpoint(api, receiver)["id"]

    def hold_locks() -> None:
        # Block the invoice worker on its table and the audit worker on its own.
        with psycopg.connect(db) as conn:
            conn.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
            conn.execute("LOCK TABLE invoices IN EXCLUSIVE MODE")
            blocked.set()
            release.wait(120)

    holder = threading.Thread(target=hold_locks)
    holder.start()
    assert blocked.wait(10)
    smtp.signal(signal.SIGSTOP)  # the email worker hangs waiting for the SMTP greeting
    try:
        ids = [api.book(name=f"Parent Killed {i}", email=f"parent{i}@example.com")["id"] for i in range(6)]
        wait_until(lambda: all(any(api.tasks(i)[q]["state"] == "running" for i in ids)
                               for q in ("email", "invoice", "audit")), timeout=90, what="a task of each queue running")
        wait_until(lambda: receiver.arrived > 0, timeout=60, what="a webhook delivery in flight")
        for name in WORKERS:
            child = platform.component(name)
            parent = child.pid
            members = wait_until(lambda p=parent: whole_group(p), timeout=30,
                                 what=f"{name}'s worker and metrics processes")
            os.kill(parent, signal.SIGKILL)  # the parent only: `kill -9` of Dramatiq's main process
            wait_until(lambda c=child, p=parent: c.pid != p, timeout=30, what=f"{name} restarted")
            shared.remember_groups()
            assert [m for m in members if alive(m)] == [], f"{name}: processes outlived their parent"
            orphans = {pid: ppid for pid, ppid in shared.processes().items() if ppid == 1}
            assert orphans == {}, f"processes of the platform under PID 1 after killing {name}'s parent"
        last_kill = time.monotonic()
    finally:
        release.set()
        holder.join()
        smtp.signal(signal.SIGCONT)
        receiver.released.set()  # the killed worker's request is processed now, its answer lost with it
    # Their messages come back after one heartbeat timeout; anything Redis no longer had, after the window.
    for booking_id in ids:
        left = last_kill + (RECONCILE_AFTER_MS + HEARTBEAT_MS) / 1000 - time.monotonic()
        api.wait_states(booking_id, ALL_DONE, timeout=max(left, 0.1))
    with psycopg.connect(db) as conn:
        def counts(sql: str) -> list[int]:
            rows = dict(conn.execute(sql, (ids,)).fetchall())
            return [rows.get(i, 0) for i in ids]

        assert counts("SELECT booking_id::text, count(*) FROM email_sends WHERE booking_id::text = ANY(%s) "
                      "GROUP BY 1") == [1] * len(ids)
        assert counts("SELECT booking_id::text, count(*) FROM invoices WHERE booking_id::text = ANY(%s) "
                      "AND pdf IS NOT NULL GROUP BY 1") == [1] * len(ids)
        assert counts("SELECT booking_id::text, count(*) FROM audit_log WHERE booking_id::text = ANY(%s) "
                      "AND kind = 'booking.created' GROUP BY 1") == [1] * len(ids)
    mails = [p for p in (platform.data_dir / "mail").glob("*.eml") if b"parent" in p.read_bytes()]
    assert len(mails) == len(ids)
    assert any(api.tasks(i)["email"]["attempts"] >= 2 for i in ids)  # redelivered, not finished by an orphan

    # Every event of every booking delivered; the one in flight at the kill was sent again.
    try:
        with booking_db.connect(db, autocommit=True) as conn:
            def all_delivered() -> list[dict] | None:
                found = deliveries(conn, endpoint)
                return found if len(found) == 4 * len(ids) and all(d["state"] == "delivered" for d in found) else None
            sent = wait_until(all_delivered, timeout=90, what="every webhook delivered")
        assert api.json("DELETE", f"/api/v1/webhooks/endpoints/{endpoint}")[0] == 204  # the next tests book too
    finally:
        receiver.close()
    assert {d["webhook_id"] for d in sent} == set(receiver.processed) and receiver.bad_signatures == 0
    assert all(d["logged"] == list(range(1, d["attempts"] + 1)) for d in sent)  # each attempt recorded once
    answered = [r["id"] for r in receiver.requests]
    assert max(answered.count(i) for i in set(answered)) >= 2  # the killed worker's request, then the new one's
    assert {pid: ppid for pid, ppid in shared.processes().items() if ppid == 1} == {}


def killed_and_restarted(platform, name: str) -> int:
    """SIGKILL the server's own process (not its group); wait until it serves again; return the old pid."""
    old = platform.component(name).pid
    before = platform._restarts.get(name)  # (count, next allowed at): a restart changes it
    os.kill(old, signal.SIGKILL)
    # Restarted means a new process that serves: it leaves `_down` once start() saw it accept connections.
    wait_until(lambda: platform._restarts.get(name) != before and name not in platform._down
               and platform.component(name).pid != old and platform.component(name).alive(), timeout=90,
               what=f"{name} restarted")
    wait_for_port(platform.servers[name].port, timeout=5)
    assert not alive(old)  # reaped, not a zombie
    return old


def test_a_killed_postmaster_is_restarted_and_bookings_recover(shared, caplog):
    caplog.set_level(logging.WARNING, logger="bookingctl")
    platform = shared.platform
    api = Api(platform.api_url, platform.admin_token)
    port = platform.servers["postgres"].port
    before = api.book(name="Before Kill", email="before@example.com")
    api.wait_states(before["id"], ALL_DONE)

    old = killed_and_restarted(platform, "postgres")
    shared.remember_groups()
    assert "postgres died (killed by SIGKILL)" in caplog.text
    assert group_members(old) == []  # its orphaned backends were killed before the restart
    assert platform.servers["postgres"].port == port and platform.urls["DATABASE_URL"].endswith(f":{port}/postgres")

    booking = wait_until(lambda: (lambda r: r[1] if r[0] == 201 else None)(
        api.try_book(name="After Kill", email="after@example.com")), timeout=60, what="a 201 after the restart")
    api.wait_states(booking["id"], ALL_DONE, timeout=90)
    assert api.tasks(before["id"])["email"]["state"] == "done"  # the data survived
    assert mails_to(platform.data_dir, "after@example.com") == 1


def test_killed_redis_and_smtp_sink_are_restarted_and_a_held_one_stays_down(shared, caplog):
    caplog.set_level(logging.WARNING, logger="bookingctl")
    platform = shared.platform
    api = Api(platform.api_url, platform.admin_token)
    for name in ("redis", "smtp"):
        killed_and_restarted(platform, name)
        shared.remember_groups()
        assert f"{name} died (killed by SIGKILL)" in caplog.text
    booking = api.book(name="After Restarts", email="restarts@example.com")
    api.wait_states(booking["id"], ALL_DONE, timeout=90)
    assert mails_to(platform.data_dir, "restarts@example.com") == 1

    platform.stop_component("smtp")  # the fault tests' way: stopped on purpose, stays stopped
    time.sleep(3)
    assert not platform.component("smtp").alive()
    platform.start_component("smtp")
    assert platform.component("smtp").alive()


def test_stop_with_stopped_workers_is_orderly_bounded_and_leaves_nothing_running(shared):
    """Last: it stops the module's platform.  Every process of every worker is SIGSTOPped first."""
    platform = shared.platform
    for name in WORKERS:
        os.killpg(platform.component(name).pid, signal.SIGSTOP)
    started = time.monotonic()
    platform.stop()
    took = time.monotonic() - started
    print(f"\nstop with every worker process SIGSTOPped: {took:.1f} s")
    assert took < WORKER_SHUTDOWN_TIMEOUT_MS / 1000  # the README's promise
    for name in WORKERS:
        log = (platform.log_dir / f"{name}.log").read_text()
        assert "Killing worker process" not in log, name  # continued and stopped in order, not killed
    assert shared.processes() == {}
    assert processes_using(platform.data_dir) == []
