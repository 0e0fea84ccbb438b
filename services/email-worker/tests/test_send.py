"""Sending over real SMTP sockets: the sink process, in-process aiosmtpd servers, dead ports."""

from __future__ import annotations

import email
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from booking_embedded import free_port
from email_worker.compose import confirmation_message
from email_worker.send import PermanentEmailError, TemporaryEmailError, send, tls_context
from email_worker.smtp_url import parse_smtp_url

MAIL_FROM = "Bookings <bookings@hotel.example>"


def message(**fields):
    booking = {
        "id": "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b",
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.test",
        "item": "Room 12",
        "check_in": date(2030, 5, 1),
        "check_out": date(2030, 5, 4),
        "amount": Decimal("249.90"),
        "currency": "EUR",
    } | fields
    return confirmation_message(booking, mail_from=MAIL_FROM)


# --- the bookingctl SMTP sink (a separate process) ---------------------------------------


def test_delivers_to_the_sink(smtp_sink) -> None:
    send(message(), parse_smtp_url(smtp_sink.url))
    (got,) = smtp_sink.messages()
    (to,) = got["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Ada Lovelace", "ada@example.test")
    assert got["Message-ID"] == "<booking-6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b@hotel.example>"
    assert {p.get_content_type() for p in got.walk()} == {
        "multipart/alternative", "text/plain", "text/html"}
    assert "Room 12" in got.get_body(("plain",)).get_content()
    assert "Room 12" in got.get_body(("html",)).get_content()


def test_same_booking_same_message_id_on_every_delivery(smtp_sink) -> None:
    url = parse_smtp_url(smtp_sink.url)
    send(message(), url)
    send(message(), url)
    ids = {m["Message-ID"] for m in smtp_sink.messages()}
    assert len(smtp_sink.messages()) == 2 and len(ids) == 1


@pytest.mark.parametrize(
    "name",
    ["Eve\r\nBcc: x@evil.test", '"><script>alert(1)</script>',
     "=?utf-8?q?Eve=0D=0ABcc:_x@evil.test?="],
)
def test_hostile_name_on_the_wire(smtp_sink, name: str) -> None:
    send(message(customer_name=name), parse_smtp_url(smtp_sink.url))
    (raw,) = smtp_sink.raw()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc") for line in head.split(b"\r\n"))
    (got,) = smtp_sink.messages()
    assert got["Bcc"] is None
    assert [a.addr_spec for a in got["To"].addresses] == ["ada@example.test"]
    html = got.get_body(("html",)).get_content()
    assert "<script" not in html
    if "<script>" in name:
        assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_closed_port_is_temporary(closed_smtp_url) -> None:
    with pytest.raises(TemporaryEmailError, match="ConnectionRefused"):
        send(message(), parse_smtp_url(closed_smtp_url))


def test_recipient_550_is_permanent(rejecting_sink) -> None:
    with pytest.raises(PermanentEmailError, match="550"):
        send(message(customer_email="nobody@reject.test"), parse_smtp_url(rejecting_sink.url))
    send(message(), parse_smtp_url(rejecting_sink.url))  # others still go through
    assert [a.addr_spec for m in rejecting_sink.messages() for a in m["To"].addresses] == [
        "ada@example.test"]


def test_starttls_never_falls_back_to_clear_text(smtp_sink) -> None:
    url = parse_smtp_url(smtp_sink.url.replace("smtp://", "smtp+starttls://"))
    with pytest.raises(TemporaryEmailError, match="STARTTLS"):
        send(message(), url)
    assert smtp_sink.messages() == []


def test_login_without_server_auth_is_temporary(smtp_sink) -> None:
    url = parse_smtp_url(smtp_sink.url.replace("smtp://", "smtp://u:p@"))
    with pytest.raises(TemporaryEmailError):
        send(message(), url)


# --- raw sockets: silence and hang-ups --------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port that accepts connections (kernel backlog) but never speaks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s


def test_silent_server_times_out_as_temporary(listener) -> None:
    port = listener.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TemporaryEmailError, match="(?i)timeout|timed out"):
        send(message(), parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=0.5"))
    assert time.monotonic() - started < 5


def test_hang_up_is_temporary(listener) -> None:
    port = listener.getsockname()[1]

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    with pytest.raises(TemporaryEmailError, match="Disconnected|closed"):
        send(message(), parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"))
    thread.join(5)


# --- in-process aiosmtpd servers with scripted replies -----------------------------------


class Scripted:
    """aiosmtpd handler answering MAIL/RCPT/DATA with the given replies (None = accept)."""

    def __init__(self, mail: str | None = None, rcpt: str | None = None, data: str | None = None):
        self.replies = {"MAIL": mail, "RCPT": rcpt, "DATA": data}
        self.received: list[bytes] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.replies["MAIL"]:
            return self.replies["MAIL"]
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.replies["RCPT"]:
            return self.replies["RCPT"]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.replies["DATA"]:
            return self.replies["DATA"]
        self.received.append(envelope.original_content)
        return "250 OK"


def serve(handler, **kwargs) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.mark.parametrize(
    ("replies", "error", "text"),
    [
        ({"rcpt": "450 4.2.1 Mailbox busy"}, TemporaryEmailError, "450"),
        ({"rcpt": "421 4.3.2 Shutting down"}, TemporaryEmailError, "421"),
        ({"rcpt": "553 5.1.3 Bad recipient syntax"}, PermanentEmailError, "553"),
        ({"mail": "451 4.3.0 Try later"}, TemporaryEmailError, "451"),
        ({"mail": "552 5.3.4 Message too big"}, PermanentEmailError, "552"),
        ({"data": "452 4.3.1 Insufficient storage"}, TemporaryEmailError, "452"),
        ({"data": "554 5.7.1 Rejected as spam"}, PermanentEmailError, "554"),
    ],
)
def test_replies_are_classified(replies: dict, error: type, text: str) -> None:
    controller = serve(Scripted(**replies))
    try:
        with pytest.raises(error, match=text) as caught:
            send(message(), parse_smtp_url(f"smtp://127.0.0.1:{controller.port}?timeout=5"))
        assert "ada@example.test" not in str(caught.value)  # no address in last_error
    finally:
        controller.stop()


# --- TLS: implicit, STARTTLS, certificate checks, login ----------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests need the openssl command (Debian package openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture(autouse=True)
def fresh_tls_context() -> Iterator[None]:
    """Each test's own client context: a process reads its CA bundle (SSL_CERT_FILE) once, a test sets its own."""
    tls_context.cache_clear()
    yield
    tls_context.cache_clear()


@pytest.fixture
def server_tls(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"user@hotel.example", b"p@ss:w/rd")
    return AuthResult(success=ok)


def test_implicit_tls_with_trusted_certificate(monkeypatch, certificate, server_tls) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    handler = Scripted()
    controller = serve(handler, ssl_context=server_tls)
    try:
        send(message(), parse_smtp_url(f"smtps://127.0.0.1:{controller.port}?timeout=5"))
    finally:
        controller.stop()
    (raw,) = handler.received
    assert email.message_from_bytes(raw, policy=policy.default)["To"].addresses[0].username == "ada"


def test_starttls_with_login(monkeypatch, certificate, server_tls) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    handler = Scripted()
    controller = serve(handler, tls_context=server_tls, require_starttls=True,
                       authenticator=authenticator, auth_required=True)
    right = f"smtp+starttls://user%40hotel.example:p%40ss%3Aw%2Frd@127.0.0.1:{controller.port}"
    try:
        send(message(), parse_smtp_url(right))
        assert len(handler.received) == 1
        # A wrong password is an operator's mistake, not the mail's: retried, not dead at once.
        wrong = f"smtp+starttls://user%40hotel.example:wrong@127.0.0.1:{controller.port}?timeout=1"
        with pytest.raises(TemporaryEmailError, match="cannot open an SMTP session"):
            send(message(), parse_smtp_url(wrong))
    finally:
        controller.stop()
    assert len(handler.received) == 1


def test_a_process_makes_one_tls_context_and_plain_smtp_none(monkeypatch, certificate, server_tls,
                                                             smtp_sink) -> None:
    """Making a context parses the whole CA bundle (30 ms of CPU): once per process, never for plain SMTP."""
    for _ in range(3):
        send(message(), parse_smtp_url(smtp_sink.url))
    assert tls_context.cache_info().currsize == 0 and len(smtp_sink.messages()) == 3
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    handler = Scripted()
    controller = serve(handler, ssl_context=server_tls)
    try:
        for _ in range(3):  # idle=0: three sessions, each with its own TLS handshake
            send(message(), parse_smtp_url(f"smtps://127.0.0.1:{controller.port}?timeout=5&idle=0"))
    finally:
        controller.stop()
    made = tls_context.cache_info()
    assert (made.misses, made.hits) == (1, 2) and len(handler.received) == 3


def test_untrusted_certificate_is_refused(server_tls) -> None:
    controller = serve(Scripted(), ssl_context=server_tls)
    try:
        with pytest.raises(TemporaryEmailError, match="CERTIFICATE_VERIFY_FAILED"):
            send(message(), parse_smtp_url(f"smtps://127.0.0.1:{controller.port}?timeout=5"))
    finally:
        controller.stop()
