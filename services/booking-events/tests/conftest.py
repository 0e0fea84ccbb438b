"""The events service on a free port, on the session's real Postgres.

`events_port` runs it in-process, in a thread with its own event loop;
`events_process` runs the real `booking-events` command in a process of its
own, with its log in a file, for what only a real process shows (what it
logs, how it frees a dropped client).  Tests talk to either over real HTTP
(http.client), as a browser's EventSource does, and change task states with
plain SQL, as the workers' middleware does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import os
import re
import sys
import threading
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web
from console_client import Client

from booking_core.model import bookings, tenants
from booking_events.app import SERVER_OPTIONS, create_app

SECRET = "test-secret-" + "x" * 20  # test_status_page.py signs its links with it too


@dataclasses.dataclass
class Event:
    event: str
    data: dict
    id: int | None


class Stream:
    """A Server-Sent Events client over http.client: one response, read event by event."""

    def __init__(self, port: int, path: str, headers: dict, timeout: float = 10):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream", **headers})
        self.resp = self.conn.getresponse()
        self.comments: list[str] = []

    def next(self, within: float | None = None) -> Event | None:
        """The next event (comments are collected apart), or None at the end of the stream.

        With `within`, TimeoutError when only heartbeats came for that many seconds.
        """
        fields: dict[str, str] = {}
        deadline = time.monotonic() + within if within is not None else None
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no event for {within}s, only heartbeats")
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if "event" in fields or "data" in fields:
                    return Event(fields.get("event", "message"), json.loads(fields.get("data", "null")),
                                 int(fields["id"]) if "id" in fields else None)
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")

    def closed_within(self, seconds: float) -> bool:
        """Read (and drop) what comes until the server ends the stream: True, or False after `seconds`.

        Needs a heartbeat shorter than `seconds`: each line read gives the clock a look.
        """
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.resp.readline():
                return True
        return False

    def take(self, n: int) -> list[Event]:
        return [self.next() for _ in range(n)]

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def events_settings(settings):
    return dataclasses.replace(settings, status_secret=SECRET)


@pytest.fixture
def events_port(events_settings):
    """The service on 127.0.0.1 with a 0.3 s heartbeat and a 50 ms poll; stopped after the test."""
    from booking_embedded import free_port

    port = free_port()
    loop = asyncio.new_event_loop()
    app = create_app(events_settings, heartbeat_seconds=0.3, poll_seconds=0.05)
    runner = web.AppRunner(app, **SERVER_OPTIONS)

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.05)
    yield port
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def connect_stream():
    """Factory of streams on a service at a port; all closed after the test."""
    opened: list[Stream] = []

    def make(port: int, path: str, headers: dict | None = None, timeout: float = 10) -> Stream:
        s = Stream(port, path, headers or {}, timeout)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def open_stream(events_port, connect_stream):
    """Factory of streams on the in-process service; all closed after the test."""
    return lambda path, headers=None, timeout=10: connect_stream(events_port, path, headers, timeout)


@pytest.fixture
def token(db_conn, tenant) -> str:
    return tenants.create_token(db_conn, tenant["id"])["token"]


@pytest.fixture
def make_booking(db_conn, tenant):
    """Factory: a booking of this test's tenant, written as the API writes it; returns its id."""

    def make(name: str = "Ada Lovelace") -> str:
        nb = bookings.NewBooking(name, "ada@example.com", "Sea-view room", date(2027, 3, 1), date(2027, 3, 4),
                                 Decimal("360.00"), "EUR")
        return bookings.create(db_conn, tenant_id=tenant["id"], booking=nb, actor="test")["id"]

    return make


@pytest.fixture
def set_task(db_conn):
    """Change one task's row as the workers' middleware does."""

    def set_(booking_id: str, task: str, state: str, attempts: int | None = None, last_error: str | None = None):
        db_conn.execute(
            "UPDATE booking_tasks SET state = %s, attempts = coalesce(%s, attempts), last_error = %s,"
            " updated_at = clock_timestamp() WHERE booking_id = %s AND task = %s",
            (state, attempts, last_error, booking_id, task))

    return set_


@pytest.fixture
def page_link():
    """Factory: the progress-page token of a booking, as the API signs it (valid for an hour)."""
    from booking_core.model.status_links import sign

    return lambda booking_id: sign(SECRET, booking_id, int(time.time()) + 3600)


@pytest.fixture
def other_token(db_conn) -> str:
    """A token of another tenant."""
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    return tenants.create_token(db_conn, other["id"])["token"]


@dataclasses.dataclass
class EventsProcess:
    """A running `booking-events` process: its port and its log."""

    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str) -> float:
        """The value of one sample on the process's /metrics, named with its labels as exposed."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode()
        finally:
            c.close()
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        assert found, f"{name} not on /metrics"
        return float(found.group(1))


@pytest.fixture
def events_process(database_url, redis_url, tmp_path):
    """Factory: the real `booking-events` command on 127.0.0.1, with extra environment; stopped after the test."""
    from booking_embedded import Child, free_port, wait_for_port

    started: list = []

    def start(**env: str) -> EventsProcess:
        port = free_port()
        log_path = tmp_path / f"events-{port}.log"
        child = Child("events", [str(Path(sys.executable).parent / "booking-events")], log_path=log_path,
                      env={"PATH": os.environ.get("PATH", ""), "DATABASE_URL": database_url,
                           "REDIS_URL": redis_url, "BOOKING_STATUS_SECRET": SECRET,
                           "BOOKING_EVENTS_HOST": "127.0.0.1", "BOOKING_EVENTS_PORT": str(port),
                           "BOOKING_EVENTS_POLL_MS": "50", **env},
                      stop_timeout=10)
        child.start()
        started.append(child)
        wait_for_port(port, child=child)
        return EventsProcess(port, log_path)

    yield start
    for child in started:
        child.stop()


@pytest.fixture
def admin(db_conn, tenant) -> dict:
    return tenants.create_token(db_conn, tenant["id"], admin=True, label="Grace <on call>")


@pytest.fixture
def console(events_port, admin) -> Client:
    """A client of the ops console on the in-process service, signed in with an admin token."""
    c = Client(events_port)
    status, headers, _ = c.sign_in(admin["token"])
    assert status == 303 and headers["location"] == "/ops/queues"
    return c
