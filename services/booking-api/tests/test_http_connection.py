"""How the API's worker speaks HTTP/1.1 once a request is whole, against the real server (issue 18).

The worker's connection (`booking_api/http_connection.py`) writes each answer
from the request thread that made it and leaves what the socket did not take
to the event loop; these tests hold it to keep-alive, pipelining, HEAD,
`100 Continue` and slow readers.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from served_api import ServedApi

from e2e_helpers import wait_until

TESTS = str(Path(__file__).parent)


@pytest.fixture(scope="module")
def plain(database_url, redis_url, tmp_path_factory):
    """The API's gunicorn settings and worker serving `hanging_app` (one worker, 4 threads)."""
    api = ServedApi(database_url, redis_url, tmp_path_factory.mktemp("plain"), workers=1, app="hanging_app:app",
                    extra=("--pythonpath", TESTS)).wait_serving()
    yield api
    api.stop()


def unread(sock: socket.socket) -> int:
    """Bytes that arrived on `sock` and wait in its receive queue (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def read_response(sock: socket.socket, buffered: bytes = b"", *, to_head: bool = False
                  ) -> tuple[bytes, dict[str, str], bytes, bytes]:
    """One response off `sock`: (status line, headers, body by Content-Length unless `to_head`, bytes past it)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {data[:300]!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    length = 0 if to_head else int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed before the whole body"
        rest += chunk
    return status.encode(), headers, rest[:length], rest[length:]


def test_pipelined_requests_are_answered_in_order_on_one_connection(plain):
    with socket.create_connection(("127.0.0.1", plain.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
                     b"GET /sleep?0.2 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthird\r\n0\r\n\r\n")
        answers, rest = [], b""
        for _ in range(3):
            status, headers, body, rest = read_response(sock, rest)
            answers.append((status, body))
            assert "connection" not in headers  # kept alive
    assert answers == [(b"HTTP/1.1 201 Created", b"first"), (b"HTTP/1.1 200 OK", b"slept 0.2\n"),
                       (b"HTTP/1.1 201 Created", b"third")]


def test_head_gets_the_length_and_no_body_and_http10_keep_alive_is_honoured(plain):
    with socket.create_connection(("127.0.0.1", plain.port), timeout=10) as sock:
        sock.sendall(b"HEAD /big?1000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _, rest = read_response(sock, to_head=True)
        assert (status, headers["content-length"], headers["connection"]) == (b"HTTP/1.1 200 OK", "1000",
                                                                             "keep-alive")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            rest += sock.recv(1)  # no body follows the HEAD's head
        sock.settimeout(10)
        assert rest == b""
        sock.sendall(b"GET /big?10 HTTP/1.0\r\n\r\n")  # HTTP/1.0 without keep-alive: answered, then closed
        status, headers, body, _ = read_response(sock)
        assert (status, body, headers["connection"]) == (b"HTTP/1.1 200 OK", b"x" * 10, "close")
        assert sock.recv(1) == b""


def test_expect_100_continue_is_answered_before_the_body_is_sent(plain):
    with socket.create_connection(("127.0.0.1", plain.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        status, _, body, _ = read_response(sock)
    assert (status, body) == (b"HTTP/1.1 201 Created", b"body")


def test_clients_that_do_not_read_their_large_answers_hold_no_thread(plain):
    """Five 16 MB answers nobody reads yet (one more than the 4 threads): /healthz still answers, and they arrive whole.

    No socket takes 16 MB at once, so each thread writes what fits and the
    event loop the rest; a thread that waited for the client would be held.
    """
    size = 16 * 1024 * 1024
    with ExitStack() as stack:
        readers = []
        for _ in range(5):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", plain.port), timeout=30))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(f"GET /big?{size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            readers.append(sock)
        # The five answers are made and fill their sockets: each has at least half its receive buffer waiting.
        wait_until(lambda: all(unread(sock) >= 32768 for sock in readers), timeout=10,
                   what="the five answers to fill their sockets")
        with socket.create_connection(("127.0.0.1", plain.port), timeout=5) as probe:
            start = time.monotonic()
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _, _ = read_response(probe)
            assert status == b"HTTP/1.1 200 OK" and time.monotonic() - start < 1
        for sock in readers:
            status, _, body, _ = read_response(sock)
            assert status == b"HTTP/1.1 200 OK" and len(body) == size and body.count(b"x") == size


@pytest.mark.parametrize(("source", "scheme"), [("127.0.0.1", "https"), ("127.0.0.2", "http")])
def test_every_request_of_a_connection_gets_gunicorns_header_policy_for_its_peer(plain, source, scheme):
    """Scheme headers count only from `forwarded_allow_ips` (gunicorn's default: 127.0.0.1), and names with an
    underscore are dropped, on the second request of a connection as on the first (the peer's trust is read once)."""
    import json

    with socket.create_connection(("127.0.0.1", plain.port), timeout=10, source_address=(source, 0)) as sock:
        rest = b""
        for _ in range(2):
            sock.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX_Smuggled: 1\r\n"
                         b"X-Kept: 1\r\n\r\n")
            status, _, body, rest = read_response(sock, rest)
            seen = json.loads(body)
            assert status == b"HTTP/1.1 200 OK"
            assert seen["scheme"] == scheme
            assert "HTTP_X_KEPT" in seen["headers"] and "HTTP_X_SMUGGLED" not in seen["headers"]


def test_an_answer_behind_a_large_one_still_being_sent_comes_after_it_whole(plain):
    """Pipelined on one connection: a 6 MB answer the client reads as it comes, then a small one, many times.

    The first answer's thread writes what the socket takes and the loop writes the
    rest as the client reads; the second answer must not leave from its own thread
    in between, ahead of that rest.
    """
    size = 6 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", plain.port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        rest = b""
        for _ in range(60):  # the race is narrow: the second answer's thread must write while the socket has room
            sock.sendall(f"GET /big?{size} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                         + b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond")
            status, _, body, rest = read_response(sock, rest)
            assert status == b"HTTP/1.1 200 OK" and len(body) == size and body.count(b"x") == size, body[-200:]
            status, _, body, rest = read_response(sock, rest)
            assert (status, body) == (b"HTTP/1.1 201 Created", b"second")
