"""Email-worker fixtures: a real SMTP sink process per test, bookings, the actors module."""

from __future__ import annotations

import email
import importlib
import sys
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from pathlib import Path

import dramatiq
import dramatiq.broker
import pytest

from booking_core.model import bookings
from booking_core.model.bookings import NewBooking
from booking_embedded import EmbeddedSmtp, free_port

MAIL_FROM = "Test Bookings <bookings@example.test>"


class Sink:
    """A running SMTP sink and the messages it has received."""

    def __init__(self, server: EmbeddedSmtp):
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    def messages(self) -> list[EmailMessage]:
        """Every stored message, parsed, oldest first."""
        return [
            email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(self.server.mail_dir.glob("*.eml"))
        ]

    def raw(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.server.mail_dir.glob("*.eml"))]


def _start_sink(tmp_path: Path, name: str, reject: str | None = None) -> Iterator[Sink]:
    mail_dir = tmp_path / name
    mail_dir.mkdir()
    server = EmbeddedSmtp(mail_dir, free_port(), tmp_path / "logs", reject_recipients=reject)
    server.start()
    try:
        yield Sink(server)
    finally:
        server.stop()


@pytest.fixture
def smtp_sink(tmp_path) -> Iterator[Sink]:
    """An SMTP sink accepting every recipient."""
    yield from _start_sink(tmp_path, "mail")


@pytest.fixture
def rejecting_sink(tmp_path) -> Iterator[Sink]:
    """An SMTP sink answering 550 to recipients at reject.test."""
    yield from _start_sink(tmp_path, "mail-rejecting", reject=r"@reject\.test>?$")


@pytest.fixture
def closed_smtp_url() -> str:
    """An SMTP URL where nothing listens."""
    return f"smtp://127.0.0.1:{free_port()}?timeout=5"


@pytest.fixture
def make_booking(database_url, tenant) -> Callable[..., dict]:
    """Create a committed booking of this test's tenant; keyword args override fields."""
    from booking_core import db

    def make(**fields) -> dict:
        values = {
            "customer_name": "Ada Lovelace",
            "customer_email": "ada@example.test",
            "item": "Room 12",
            "check_in": date(2030, 5, 1),
            "check_out": date(2030, 5, 4),
            "amount": Decimal("249.90"),
            "currency": "EUR",
        } | fields
        with db.connect(database_url) as conn, conn.transaction():
            return bookings.create(
                conn, tenant_id=tenant["id"], booking=NewBooking(**values), actor="test"
            )

    return make


@pytest.fixture
def load_actors(monkeypatch, settings) -> Iterator[Callable[..., object]]:
    """Import `email_worker.actors` afresh with the given SMTP URL and retry policy.

    Importing it reads the environment and installs Dramatiq's global broker;
    both are put back afterwards so other tests see no trace of it.
    """
    saved_broker = dramatiq.broker.global_broker
    names = ("email_worker.actors", "email_worker.broker")
    loaded = []

    def load(smtp_url: str, *, max_retries: int = 3, relay_order: str = "fair"):
        for var, value in {
            "BOOKING_RELAY_ORDER": relay_order,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "BOOKING_REDIS_NAMESPACE": settings.redis_namespace,
            "SMTP_URL": smtp_url,
            "BOOKING_MAIL_FROM": MAIL_FROM,
            "BOOKING_RETRY_EMAIL_MAX_RETRIES": str(max_retries),
            "BOOKING_RETRY_EMAIL_MIN_BACKOFF_MS": "50",
            "BOOKING_RETRY_EMAIL_MAX_BACKOFF_MS": "200",
        }.items():
            monkeypatch.setenv(var, value)
        for name in names:
            sys.modules.pop(name, None)
        module = importlib.import_module("email_worker.actors")
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.broker.close()
    for name in names:
        sys.modules.pop(name, None)
    dramatiq.broker.global_broker = saved_broker
