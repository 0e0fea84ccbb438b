"""Helpers for the cross-service tests: waiting on conditions, a JSON client."""

from __future__ import annotations

import email
import email.message
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

BOOKINGCTL = [sys.executable, "-m", "bookingctl"]


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


def booking_body(name: str = "Ada Lovelace", email: str = "ada@example.com", **extra) -> dict:
    """A valid booking's JSON body."""
    return {"customer": {"name": name, "email": email}, "item": "Sea-view room",
            "check_in": "2027-03-01", "check_out": "2027-03-04", "amount": "360.00", "currency": "EUR", **extra}


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

    def try_book(self, name: str = "Ada Lovelace", email: str = "ada@example.com", **extra) -> tuple[int, dict]:
        """POST a booking; return the status and body, whatever they are."""
        return self.json("POST", "/api/v1/bookings", booking_body(name, email, **extra))

    def book_as_a_careful_client(self, name: str, email: str, *, tries: int = 5) -> int:
        """POST a booking with an Idempotency-Key, again after each 503's `Retry-After` (at most 2 s); the last status.

        For tests that load the API on a machine shared with other tests: a round trip to
        Postgres that stalls past `BOOKING_API_DB_STALL_SECONDS` makes the API shed the
        requests waiting for a database slot with a 503, as it must, and a real client
        retries them.  The key makes the retry safe whatever the first attempt did.
        """
        body, key = booking_body(name, email), str(uuid.uuid4())
        status, headers, _ = self.request("POST", "/api/v1/bookings", body, {"Idempotency-Key": key})
        for _ in range(tries - 1):
            if status != 503:
                break
            time.sleep(min(float(headers.get("Retry-After", "1")), 2.0))
            status, headers, _ = self.request("POST", "/api/v1/bookings", body, {"Idempotency-Key": key})
        return status

    def book(self, name: str = "Ada Lovelace", email: str = "ada@example.com", **extra) -> dict:
        status, got = self.try_book(name, email, **extra)
        assert status == 201, got
        return got

    def tasks(self, booking_id: str) -> dict:
        status, got = self.json("GET", f"/api/v1/bookings/{booking_id}")
        assert status == 200, got
        return got["tasks"]

    def wait_states(self, booking_id: str, want: dict, timeout: float = 60.0) -> dict:
        """Wait until each named task is in the wanted state; return the tasks."""
        seen: dict = {}

        def check():
            seen.update(self.tasks(booking_id))
            return seen if all(seen[t]["state"] == s for t, s in want.items()) else None
        try:
            return wait_until(check, timeout=timeout, what=f"tasks {want} of {booking_id}")
        except AssertionError as timed_out:  # say where each task stood, not just "None"
            raise AssertionError(f"{timed_out}; the tasks last read: {seen}") from None


def metrics_text(url: str) -> str:
    """A process's Prometheus page at `url`, as text."""
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - a test process on 127.0.0.1
        return r.read().decode()


def local_metrics(port: int) -> str:
    """The Prometheus page a test process serves on 127.0.0.1:`port`, as text."""
    return metrics_text(f"http://127.0.0.1:{port}/metrics")


def scrape_metrics(url: str) -> dict[tuple[str, tuple], float]:
    """A process's Prometheus page at `url`: each sample's value by (name, its labels sorted as pairs)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics_text(url)) for s in family.samples}


def mails_to(data_dir: Path, address: str) -> int:
    """How many messages in the SMTP sink of `data_dir` name `address`."""
    return sum(address.encode() in p.read_bytes() for p in (data_dir / "mail").glob("*.eml"))


def messages_to(data_dir: Path, address: str) -> list[email.message.Message]:
    """The messages in the SMTP sink of `data_dir` whose To header names `address`, oldest file name first."""
    found = []
    for path in sorted((data_dir / "mail").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes())
        if address in (msg["To"] or ""):
            found.append(msg)
    return found


def bookingctl(platform, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`bookingctl --data-dir <platform's dir> ARGS...` with the platform's environment, captured.

    The server URLs are left out (a test platform's env never sets them): the CLI finds
    the platform's servers through its data dir, as an operator's `bookingctl` does.
    """
    env = {k: v for k, v in platform.config.env.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
    return subprocess.run([*BOOKINGCTL, "--data-dir", str(platform.data_dir), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def clean_env() -> dict:
    """Our environment without server URLs, so `bookingctl up` starts its embedded servers."""
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}


class Up:
    """A `bookingctl up` subprocess, run as a shell runs a foreground job (its own process group).

    Its workers run at nice 10, not at the idle class (conftest.platform_for_tests says why).
    """

    def __init__(self, data_dir: Path, port: int, env: dict | None = None):
        self.log = data_dir.parent / f"up-{port}-{time.time_ns()}.out"
        self.out = open(self.log, "w")  # noqa: SIM115
        env = {**clean_env(), "BOOKING_WORKERS_CPU_IDLE": "false", **(env or {})}
        self.proc = subprocess.Popen([*BOOKINGCTL, "up", "--data-dir", str(data_dir), "--port", str(port)],
                                     stdout=self.out, stderr=subprocess.STDOUT, env=env,
                                     process_group=0)

    def text(self) -> str:
        return self.log.read_text()

    def wait_ready(self) -> None:
        wait_until(lambda: "Press Ctrl-C" in self.text() or self.proc.poll() is not None, timeout=300,
                   what="bookingctl up to print its banner")
        assert self.proc.poll() is None, self.text()

    def pids(self) -> list[int]:
        line = next(ln for ln in self.text().splitlines() if "Processes:" in ln)
        return [int(p.split(")")[0]) for p in line.split("pid ")[1:]]

    def stop(self, sig=signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(120)
        self.out.close()
        return code

    def ctrl_c(self) -> int:
        """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(120)
        self.out.close()
        return code


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


def proc_stat(pid: int) -> dict[str, int]:
    """Parent, process group, session and nice of `pid`, read from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After "pid (comm)": state ppid pgrp session tty_nr tpgid flags minflt ... priority nice
    return {"ppid": int(fields[1]), "pgrp": int(fields[2]), "session": int(fields[3]), "nice": int(fields[16])}


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (e.g. gunicorn's workers), from /proc."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def thread_policies(pid: int) -> set[int]:
    """The scheduling policies (os.SCHED_*) of `pid`'s threads; a thread that ends meanwhile is skipped."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found.add(os.sched_getscheduler(int(tid)))
        except ProcessLookupError:
            pass
    return found


def group_members(pgrp: int) -> list[int]:
    """Live PIDs in process group `pgrp` (a supervised child and whatever it forked)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if proc_stat(int(proc.name))["pgrp"] == pgrp and alive(int(proc.name)):
                    found.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def processes_using(data_dir: Path) -> list[int]:
    """PIDs whose command line names the data dir (Postgres, Redis, the SMTP sink)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(data_dir).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found
