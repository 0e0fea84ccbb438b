"""Kept SMTP sessions against real servers: reuse, a server that drops them, and shutdown.

The servers are in-process aiosmtpd instances whose handler notes the client's
address and port for each command, so a test can count the TCP connections a
message arrived on.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import dramatiq
import pytest
from aiosmtpd.controller import Controller

from booking_core.messaging.contracts import EMAIL
from booking_embedded import free_port
from e2e_helpers import wait_until
from email_worker.compose import confirmation
from email_worker.send import TemporaryEmailError, send, sessions
from email_worker.smtp_url import parse_smtp_url

MAIL_FROM = "Bookings <bookings@hotel.example>"


def envelope(n: int = 0):
    booking = {
        "id": f"6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a{n:02d}", "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.test", "item": f"Room {n}", "check_in": date(2030, 5, 1),
        "check_out": date(2030, 5, 4), "amount": Decimal("249.90"), "currency": "EUR",
    }
    return confirmation(booking, mail_from=MAIL_FROM, now=datetime(2030, 4, 1, tzinfo=UTC)).envelope


class Recording:
    """Accept every message; note the connection (client port) each arrived on.

    `drop_data` makes the server hang up instead of answering that DATA (by count, from 1).
    """

    def __init__(self, drop_data: int | None = None) -> None:
        self.received: list[tuple[int, bytes]] = []
        self.connections: set[int] = set()
        self.quits = 0
        self.drop_data = drop_data
        self.datas = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections.add(session.peer[1])
        session.host_name = hostname
        return responses

    async def handle_QUIT(self, server, session, envelope):
        self.quits += 1
        return "221 Bye"

    async def handle_DATA(self, server, session, envelope):
        self.datas += 1
        self.received.append((session.peer[1], envelope.original_content))
        if self.datas == self.drop_data:
            server.transport.close()  # the message arrived, the 250 never does
        return "250 OK"


@pytest.fixture
def server() -> Iterator[tuple[Recording, Controller]]:
    handler = Recording()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller
    controller.stop()


def hung_up(sock: socket.socket) -> bool:
    """The server closed (or spoke unasked, as a 421 before closing) on this idle socket."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) is not None
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_one_thread_sends_two_emails_over_one_connection(server) -> None:
    handler, controller = server
    url = parse_smtp_url(f"smtp://127.0.0.1:{controller.port}?timeout=5")
    send(envelope(1), url)
    send(envelope(2), url)
    assert len(handler.received) == 2
    assert len(handler.connections) == 1
    assert len({port for port, _ in handler.received}) == 1


def test_threads_do_not_share_a_session(server) -> None:
    """Two threads sending at once each hold a session of their own; both mails arrive whole."""
    handler, controller = server
    url = parse_smtp_url(f"smtp://127.0.0.1:{controller.port}?timeout=5")
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def sender(first: int) -> None:
        start.wait()
        try:
            for n in range(first, first + 10):
                send(envelope(n), url)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(k * 10,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    bodies = sorted(data for _, data in handler.received)
    assert bodies == sorted(envelope(n).data for n in range(40))
    assert len(handler.connections) <= 4


def test_a_server_that_drops_the_idle_connection_still_gets_the_next_email_once() -> None:
    # Given a server that closes idle sessions after 0.3 s (aiosmtpd says 421, then hangs up)
    handler = Recording()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), timeout=0.3)
    controller.start()
    try:
        url = parse_smtp_url(f"smtp://127.0.0.1:{controller.port}?timeout=5&idle=60")
        send(envelope(1), url)
        (kept,) = sessions.idle_sockets(url)
        wait_until(lambda: hung_up(kept), timeout=10, what="the server to drop the idle session")
        # When the next email goes out on the kept (now dead) session
        send(envelope(2), url)
    finally:
        controller.stop()
    # Then it arrives, once, on a new connection
    assert [data for _, data in handler.received] == [envelope(1).data, envelope(2).data]
    assert len(handler.connections) == 2


def test_a_restarted_server_still_gets_the_next_email_once() -> None:
    port = free_port()
    first, second = Recording(), Recording()
    controller = Controller(first, hostname="127.0.0.1", port=port)
    controller.start()
    url = parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5&idle=60")
    try:
        send(envelope(1), url)
    finally:
        controller.stop()  # the kept session's peer is gone (reset or closed)
    controller = Controller(second, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        send(envelope(2), url)
    finally:
        controller.stop()
    assert [data for _, data in first.received] == [envelope(1).data]
    assert [data for _, data in second.received] == [envelope(2).data]


class Quota(Recording):
    """A relay that takes two messages per session, then answers 451 to MAIL."""

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        session.mails = getattr(session, "mails", 0) + 1
        if session.mails > 2:
            return "451 4.7.1 Too many messages on this connection"
        envelope.mail_from = address
        return "250 OK"


def test_a_session_past_the_relays_quota_is_replaced() -> None:
    handler = Quota()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        url = parse_smtp_url(f"smtp://127.0.0.1:{controller.port}?timeout=5")
        for n in range(5):
            send(envelope(n), url)
    finally:
        controller.stop()
    assert [data for _, data in handler.received] == [envelope(n).data for n in range(5)]
    assert len(handler.connections) == 3


def test_a_hang_up_after_data_is_reported_not_resent() -> None:
    """The server had the message when it hung up: sending it again here could deliver it twice."""
    handler = Recording(drop_data=2)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        url = parse_smtp_url(f"smtp://127.0.0.1:{controller.port}?timeout=5")
        send(envelope(1), url)
        with pytest.raises(TemporaryEmailError, match="Disconnected|closed"):
            send(envelope(2), url)  # on the kept session
    finally:
        controller.stop()
    assert [data for _, data in handler.received] == [envelope(1).data, envelope(2).data]
    assert sessions.idle_sockets(url) == []


def test_an_idle_session_is_closed_politely(server) -> None:
    handler, controller = server
    url = parse_smtp_url(f"smtp://127.0.0.1:{controller.port}?timeout=5&idle=0.2")
    send(envelope(1), url)
    wait_until(lambda: handler.quits == 1, timeout=10, what="the reaper's QUIT")
    assert sessions.idle_sockets(url) == []
    send(envelope(2), url)  # a new session, as it would be anyway
    assert len(handler.received) == 2 and len(handler.connections) == 2


def test_idle_zero_opens_a_session_per_email(server) -> None:
    handler, controller = server
    url = parse_smtp_url(f"smtp://127.0.0.1:{controller.port}?timeout=5&idle=0")
    send(envelope(1), url)
    send(envelope(2), url)
    assert len(handler.connections) == 2 and handler.quits == 2


def test_a_worker_thread_reuses_its_session_and_quits_it_at_shutdown(
    server, load_actors, make_booking
) -> None:
    """A real Dramatiq worker with one thread: two bookings, one connection, QUIT on stop."""
    from booking_core import db

    handler, controller = server
    actors = load_actors(f"smtp://127.0.0.1:{controller.port}?timeout=5&idle=60")
    bookings = [make_booking(), make_booking()]
    worker = dramatiq.Worker(actors.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        for b in bookings:
            actors.send_confirmation_email.send(
                task=EMAIL.task, booking_id=b["id"], tenant_id=b["tenant_id"])
        with db.connect(actors.settings.database_url, autocommit=True) as conn:
            wait_until(lambda: conn.execute(
                "SELECT count(*) AS n FROM booking_tasks WHERE task = 'email' AND state = 'done'"
                " AND booking_id = ANY(%s)", ([b["id"] for b in bookings],)).fetchone()["n"] == 2,
                timeout=30, what="both emails done")
    finally:
        worker.stop()
    assert len(handler.received) == 2
    assert len(handler.connections) == 1
    assert handler.quits == 1
