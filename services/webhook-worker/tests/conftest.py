"""Webhook-worker fixtures: a real HTTP receiver on 127.0.0.1, endpoints, bookings, the actors module."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dramatiq
import dramatiq.broker
import pytest

from booking_core import db
from booking_core.model import bookings
from booking_core.webhooks import deliveries, sealing


class Receiver:
    """An HTTP server on 127.0.0.1 that records each request and answers from a script.

    `answers` is consumed one per request ((status, headers) pairs); when it is
    empty the receiver answers 200.
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict]] = []
        self.hold = threading.Event()
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                receiver.hold.wait(30)
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hooks"

    def close(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def webhooks_key() -> str:
    return sealing.new_key()


@pytest.fixture
def make_booking(database_url, tenant) -> Callable[..., dict]:
    def make(trace_id: str | None = None) -> dict:
        values = bookings.NewBooking("Ada Lovelace", "ada@example.test", "Room 12", date(2030, 5, 1),
                                     date(2030, 5, 4), Decimal("249.90"), "EUR")
        with db.connect(database_url) as conn, conn.transaction():
            booking = bookings.create(conn, tenant_id=tenant["id"], booking=values, actor="test", trace_id=trace_id)
        with db.connect(database_url, autocommit=True) as conn:  # as the webhook worker's fan-out would
            for e in conn.execute("SELECT id::text FROM webhook_events WHERE booking_id = %s", (booking["id"],)):
                deliveries.fan_out(conn, e["id"], tenant["id"])
        return booking
    return make


@pytest.fixture
def load_actors(monkeypatch, settings, webhooks_key) -> Iterator[Callable[..., object]]:
    """Import `webhook_worker.actors` afresh with the given environment; Dramatiq's global broker is put back."""
    saved_broker = dramatiq.broker.global_broker
    names = ("webhook_worker.actors", "webhook_worker.broker")
    loaded = []

    def load(**env: str):
        base = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                "BOOKING_REDIS_NAMESPACE": settings.redis_namespace, "BOOKING_WEBHOOKS_KEY": webhooks_key,
                "BOOKING_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8", "BOOKING_WEBHOOKS_TIMEOUT_SECONDS": "5",
                "BOOKING_WEBHOOKS_RETRY_FIRST_MS": "100", "BOOKING_WEBHOOKS_MAX_ATTEMPTS": "3"}
        for var, value in {**base, **env}.items():
            monkeypatch.setenv(var, value)
        for name in names:
            sys.modules.pop(name, None)
        module = importlib.import_module("webhook_worker.actors")
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.sender.close()
        module.broker.close()
    for name in names:
        sys.modules.pop(name, None)
    dramatiq.broker.global_broker = saved_broker
