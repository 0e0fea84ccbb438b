"""An attempt ends at its total deadline, however its receiver trickles the answer.

A real receiver on 127.0.0.1 reads the request, then sends its answer one byte
at a time, each byte well within the per-read timeout, for longer than the
attempt's deadline: in the status line and headers, or in the body.  Before the
deadline covered every socket operation, such a receiver held the attempt
until it finished (headers) or up to a read timeout past the deadline (body).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from webhook_worker.send import Sender

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
#: The attempt's deadline in the test, and how long the receiver keeps trickling (well past it).
DEADLINE_SECONDS = 1.0
TRICKLE_SECONDS = 6.0


class Trickler:
    """A one-connection-at-a-time HTTP receiver that sends `head` + `body` a byte every `gap` seconds."""

    def __init__(self, head: bytes, body: bytes, *, gap: float = 0.1, trickle_from: int = 0):
        self.head, self.body, self.gap, self.trickle_from = head, body, gap, trickle_from
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.cut_off = threading.Event()  # the client closed the connection before the answer was sent
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                answer = self.head + self.body
                conn.sendall(answer[:self.trickle_from])
                try:
                    for i in range(self.trickle_from, len(answer)):
                        if self.stop.wait(self.gap):
                            return
                        conn.sendall(answer[i:i + 1])
                except OSError:
                    self.cut_off.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def trickler() -> Iterator:
    made = []

    def make(**kwargs) -> Trickler:
        made.append(Trickler(**kwargs))
        return made[-1]

    yield make
    for t in made:
        t.close()


def padded_head(body_length: int) -> bytes:
    """A 200 head long enough (a header of filler) to trickle for TRICKLE_SECONDS at 0.1 s a byte."""
    filler = "x" * int(TRICKLE_SECONDS / 0.1)
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {body_length}\r\nX-Filler: {filler}\r\n\r\n").encode()


def attempt(server: Trickler, deadline: float):
    """One attempt to `server` whose per-read timeout is the deadline too; (outcome, seconds it took)."""
    sender = Sender(connect_timeout=deadline, timeout=deadline, allowed=LOOPBACK)
    try:
        started = time.monotonic()
        outcome = sender.post(f"http://127.0.0.1:{server.port}/hook", b"{}", {})
        return outcome, time.monotonic() - started
    finally:
        sender.close()


def test_a_receiver_trickling_its_status_and_headers_is_cut_off_at_the_deadline(trickler):
    server = trickler(head=padded_head(2), body=b"ok")  # a byte every 0.1 s, each well within the read timeout
    outcome, took = attempt(server, DEADLINE_SECONDS)
    assert outcome.status is None and outcome.error.startswith("timeout"), outcome
    # Cut off at the deadline (plus scheduling slack), not when the receiver chose to finish.
    assert took < DEADLINE_SECONDS + 1.5 < TRICKLE_SECONDS, took
    assert outcome.latency_ms < (DEADLINE_SECONDS + 1.5) * 1000


def test_a_body_trickled_past_the_deadline_keeps_the_status_and_what_came_but_no_more_time(trickler):
    """Each body byte comes just inside the per-read timeout: without the deadline on every read,
    the attempt outlived its deadline by up to one more read timeout."""
    deadline, gap = 2.0, 1.8
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    server = trickler(head=head, body=b"0123456789", gap=gap, trickle_from=len(head))
    outcome, took = attempt(server, deadline)
    assert outcome.status == 200 and outcome.response == "0", outcome
    assert outcome.error == "answer body cut off at the attempt's deadline"
    assert took < deadline + 1.0 < 2 * gap, took
