"""Through gunicorn, as the platform serves the API: the body limit holds however the body is framed.

Werkzeug's test client hands the app a ready-made stream, but the chunked-body
defect (a body over 64 KiB cut at the limit and accepted) lived in how a real
server's de-chunked stream is read.  So these tests speak HTTP/1.1 to a real
gunicorn started with the platform's own command (`bookingctl.services.api`).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
import urllib.request
import uuid

import pytest

from booking_api.contract import MAX_BODY_BYTES
from booking_embedded import free_port
from bookingctl.services import api as api_service
from e2e_helpers import wait_until

URL = "/api/v1/bookings"


@pytest.fixture(scope="module")
def gunicorn_dir(tmp_path_factory):
    """Where the module's gunicorn keeps its run files and its log, `gunicorn.log`."""
    return tmp_path_factory.mktemp("gunicorn")


@pytest.fixture(scope="module")
def served(database_url, redis_url, gunicorn_dir):
    """The port of a gunicorn serving the API on the session's Postgres and Redis (one per module)."""
    tmp_path = gunicorn_dir
    port = free_port()
    spec = api_service(port, tmp_path, workers=1, threads=2)
    env = {**os.environ, **spec.env, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "BOOKING_REDIS_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}"}
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(spec.argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not serve /healthz within 60 s"
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def post(port: int, token: str, body: bytes, *, chunked: bool) -> tuple[int, str, dict]:
    """POST `body`, chunked (no Content-Length) or with Content-Length; (status, media type, JSON)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        if chunked:  # http.client frames an iterable body as chunks of 8 KiB and sends no Content-Length
            conn.request("POST", URL, body=(body[i:i + 8192] for i in range(0, len(body), 8192)),
                         headers=headers)
        else:
            conn.request("POST", URL, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers.get_content_type(), json.loads(resp.read())
    finally:
        conn.close()


def padded(body: dict, size: int) -> bytes:
    """`body` as JSON, padded with JSON whitespace to exactly `size` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def bookings_of(db_conn, tenant) -> int:
    return db_conn.execute("SELECT count(*) AS n FROM bookings WHERE tenant_id = %s",
                           (tenant["id"],)).fetchone()["n"]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_body_past_the_limit_whose_tail_is_not_json_is_413(served, token, db_conn, tenant, booking_body,
                                                           chunked):
    # Given a valid booking that fills the limit exactly, followed by bytes that are not JSON
    body = padded(booking_body(), MAX_BODY_BYTES) + b"}not json at all"
    # When it is posted, chunked or with Content-Length
    status, media, problem = post(served, token, body, chunked=chunked)
    # Then both are 413 problems (before the fix, the chunked one was cut at the limit: 201)
    assert (status, media) == (413, "application/problem+json")
    assert problem["type"].endswith("/too-large") and problem["status"] == 413
    assert bookings_of(db_conn, tenant) == 0


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_body_one_byte_past_the_limit_is_413(served, token, db_conn, tenant, booking_body, chunked):
    body = padded(booking_body(), MAX_BODY_BYTES + 1)
    status, media, _ = post(served, token, body, chunked=chunked)
    assert (status, media) == (413, "application/problem+json")
    assert bookings_of(db_conn, tenant) == 0


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_body_of_exactly_the_limit_is_read_whole(served, token, db_conn, tenant, booking_body, chunked):
    # Given a valid booking padded to exactly the limit
    body = padded(booking_body(item="Sea-view room"), MAX_BODY_BYTES)
    # When it is posted, then it is accepted either way
    status, media, created = post(served, token, body, chunked=chunked)
    assert (status, media) == (201, "application/json"), created
    assert created["item"] == "Sea-view room"
    assert bookings_of(db_conn, tenant) == 1


def test_small_chunked_body_is_accepted(served, token, booking_body):
    status, _, created = post(served, token, json.dumps(booking_body(amount="100", currency="JPY")).encode(),
                              chunked=True)
    assert status == 201, created
    assert created["amount"] == "100"


def raw_request(port: int, data: bytes) -> tuple[int, str, dict]:
    """Send raw bytes; (status, Content-Type, parsed JSON body) of gunicorn's answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers["Content-Type"], json.loads(body)


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "header-fields-too-large"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri-too-long"),
    (b"\x16\x03<script>alert(1)</script> nonsense\r\n\r\n", 400, "bad-request"),
])
def test_gunicorns_own_refusals_are_problems_that_echo_nothing(served, raw, status, code):
    got_status, content_type, body = raw_request(served, raw)
    assert (got_status, content_type) == (status, "application/problem+json")
    assert body["status"] == status and body["type"].endswith("/" + code)
    assert "<script>" not in json.dumps(body) and "aaaa" not in json.dumps(body)


def test_the_access_log_has_the_failures_and_not_the_successes(served, gunicorn_dir, token, booking_body):
    """By default (`BOOKING_ACCESS_LOG=errors`) a 201 costs no log line; a 404 and a 401 get one each."""
    marker = uuid.uuid4().hex
    status, _, _ = post(served, token, json.dumps(booking_body()).encode(), chunked=False)
    assert status == 201
    for path, expected in ((f"/api/v1/bookings?ok={marker}", 200), (f"/no-such-page-{marker}", 404),
                           (f"/api/v1/bookings/{uuid.uuid4()}?m={marker}", 401)):
        conn = http.client.HTTPConnection("127.0.0.1", served, timeout=10)
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if expected == 200 else {})
        assert conn.getresponse().status == expected
        conn.close()
    def marked() -> list[str]:
        return [line for line in (gunicorn_dir / "gunicorn.log").read_text().splitlines() if marker in line]

    wait_until(lambda: len(marked()) >= 2, timeout=5, what="gunicorn's lines, written after it answers")
    lines = marked()
    assert len(lines) == 2, lines
    assert sorted(line.split('" ')[1].split()[0] for line in lines) == ["401", "404"]  # each thread logs its own
    assert '" 201 ' not in (gunicorn_dir / "gunicorn.log").read_text()  # this module's created bookings
