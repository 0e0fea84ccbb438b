"""Malformed framing, sent to the real server: a problem+json refusal, then the connection closes.

Each request carries a valid token and goes to the booking endpoint, so a
request the server let through would reach the app and read its body there
(before issue 18, a bad chunk size became the app's 500 "unhandled error";
most header cases got no answer at all, as the access log raised on them).

`HTTP/1.2` gets 400, not 505: 505 refuses a major version (RFC 9110 section
15.6.6) and 1.2 shares major version 1; no HTTP/1.2 exists, so a request that
claims it is malformed or a probe, and gunicorn's parser refuses anything but
1.0 and 1.1.
"""

from __future__ import annotations

import json
import socket

import pytest

BODY = b'{"a": 1}'


def post(headers: str, body: bytes = BODY, version: str = "HTTP/1.1") -> bytes:
    return f"POST /api/v1/bookings {version}\r\n{headers}".encode() + b"\r\n" + body


CASES = {
    "chunk size -2": ("Host: api\r\nTransfer-Encoding: chunked\r\n", b"-2\r\nab\r\n0\r\n\r\n", 400),
    "chunk size 0x2": ("Host: api\r\nTransfer-Encoding: chunked\r\n", b"0x2\r\nab\r\n0\r\n\r\n", 400),
    "bare LF chunk lines": ("Host: api\r\nTransfer-Encoding: chunked\r\n", b"8\n" + BODY + b"\n0\n\n", 400),
    "duplicate Content-Length": ("Host: api\r\nContent-Length: 8\r\nContent-Length: 8\r\n", BODY, 400),
    "Content-Length +8": ("Host: api\r\nContent-Length: +8\r\n", BODY, 400),
    "Content-Length -1": ("Host: api\r\nContent-Length: -1\r\n", BODY, 400),
    "Content-Length 0x8": ("Host: api\r\nContent-Length: 0x8\r\n", BODY, 400),
    "Content-Length 8, 8": ("Host: api\r\nContent-Length: 8, 8\r\n", BODY, 400),
    "Content-Length with Transfer-Encoding": (
        "Host: api\r\nContent-Length: 8\r\nTransfer-Encoding: chunked\r\n", b"8\r\n" + BODY + b"\r\n0\r\n\r\n", 400),
    "Transfer-Encoding twice": (
        "Host: api\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        b"8\r\n" + BODY + b"\r\n0\r\n\r\n", 400),
    "chunked, identity": ("Host: api\r\nTransfer-Encoding: chunked, identity\r\n", b"8\r\n" + BODY + b"\r\n0\r\n\r\n",
                          400),
    "duplicate Host": ("Host: api\r\nHost: other\r\nContent-Length: 8\r\n", BODY, 400),
    "HTTP/1.1 without Host": ("Content-Length: 8\r\n", BODY, 400),
    "oversized body announced with Expect: 100-continue": (
        "Host: api\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n", b"", 413),
}
VERSION_CASES = {
    "Transfer-Encoding under HTTP/1.0": ("HTTP/1.0", "Host: api\r\nTransfer-Encoding: chunked\r\n",
                                         b"8\r\n" + BODY + b"\r\n0\r\n\r\n", 400),
    "HTTP/1.2": ("HTTP/1.2", "Host: api\r\nContent-Length: 8\r\n", BODY, 400),
}


def exchange(port: int, raw: bytes) -> tuple[bytes, bool]:
    """Send `raw`; (every byte the server sent, whether it then closed the connection within 5 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            pass  # closed with unread bytes of ours in its buffer: closed all the same
    return data, True


def assert_refused(port: int, raw: bytes, status: int, token: str) -> None:
    raw = raw.replace(b"\r\n", f"\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode(), 1)
    data, closed = exchange(port, raw)
    assert data, "the connection closed with no response"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), data[:300]  # no "100 Continue" first, not "HTTP/1.2"
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body[:int(headers["content-length"])])
    assert problem["status"] == status and problem["type"].startswith("https://booking.example/problems/")
    assert closed, "the server kept the connection open after refusing the framing"


@pytest.mark.parametrize(("headers", "body", "status"), CASES.values(), ids=CASES.keys())
def test_malformed_framing_is_refused_with_a_problem_and_closed(served_api, token, headers, body, status):
    assert_refused(served_api.port, post(headers, body), status, token)


@pytest.mark.parametrize(("version", "headers", "body", "status"), VERSION_CASES.values(), ids=VERSION_CASES.keys())
def test_malformed_versions_are_refused_with_a_problem_and_closed(served_api, token, version, headers, body, status):
    assert_refused(served_api.port, post(headers, body, version), status, token)


def test_a_well_framed_chunked_post_still_reaches_the_app(served_api, token, booking_body):
    """The control: the same framing done right is served (201), so the refusals above are about framing."""
    body = json.dumps(booking_body()).encode()
    raw = post(f"Host: api\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n",
               f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    data, closed = exchange(served_api.port, raw)
    assert data.startswith(b"HTTP/1.1 201 "), data[:300]
    assert closed


def test_a_refusal_writes_nothing_and_echoes_nothing(served_api, token, db_conn, tenant):
    """A refused request is not a booking, and the client's bytes are not sent back."""
    raw = post("Host: api\r\nTransfer-Encoding: chunked\r\n", b"<script>x</script>\r\n")
    raw = raw.replace(b"\r\n", f"\r\nAuthorization: Bearer {token}\r\n".encode(), 1)
    data, _ = exchange(served_api.port, raw)
    assert data.startswith(b"HTTP/1.1 400 ") and b"script" not in data
    assert db_conn.execute("SELECT count(*) AS n FROM bookings WHERE tenant_id = %s",
                           (tenant["id"],)).fetchone()["n"] == 0
