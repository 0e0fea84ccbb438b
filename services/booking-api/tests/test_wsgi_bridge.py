"""The bridge from gunicorn's event loop to the Flask app, and the server's own refusal rule, on their own."""

from __future__ import annotations

import asyncio

import pytest

from booking_api.gunicorn_worker import refusal
from booking_api.wsgi_bridge import WSGIBridge, wsgi_environ

SCOPE = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/a b/é",
         "raw_path": b"/a%20b/%C3%A9", "query_string": b"x=1", "root_path": "", "server": ("127.0.0.1", 8000),
         "client": ("127.0.0.2", 5555),
         "headers": [(b"host", b"api"), (b"content-type", b"application/json"), (b"x-tag", b"a"),
                     (b"x-tag", b"b"), (b"cookie", b"c=1"), (b"cookie", b"d=2"),
                     (b"transfer-encoding", b"chunked")]}


def test_the_environ_is_what_gunicorns_wsgi_workers_give():
    env = wsgi_environ(SCOPE, b"{}")
    assert env["PATH_INFO"] == "/a b/\xc3\xa9"  # percent-decoded bytes as latin-1 (PEP 3333)
    assert (env["QUERY_STRING"], env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("x=1", "application/json", "2")
    assert env["HTTP_X_TAG"] == "a,b" and env["HTTP_COOKIE"] == "c=1; d=2"
    assert "HTTP_TRANSFER_ENCODING" not in env  # the body is de-chunked; its length is CONTENT_LENGTH
    assert env["wsgi.input"].read() == b"{}" and env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (env["REMOTE_ADDR"], env["SERVER_PORT"]) == ("127.0.0.2", "8000")


@pytest.mark.parametrize(("version", "headers", "length", "status"), [
    ((1, 1), [], 0, 400),
    ((1, 1), [(b"host", b"")], 0, None),
    ((1, 0), [], 0, None),  # HTTP/1.0 has no Host requirement
    ((1, 1), [(b"host", b"a")], 65536, None),
    ((1, 1), [(b"host", b"a")], 65537, 413),
    ((1, 1), [(b"host", b"a")], None, None),  # chunked: the bridge counts as it reads
])
def test_the_server_refuses_no_host_and_an_oversized_declared_body(version, headers, length, status):
    assert refusal(version, headers, length, 65536) == status


def run(bridge: WSGIBridge, messages: list[dict], *, stall: bool = False) -> list[dict]:
    """Serve one request whose body comes as `messages` (then nothing, when `stall`); what the bridge sent."""
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(bridge(dict(SCOPE), receive, send))
    return sent


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"got ", body]


def test_the_app_gets_the_whole_body_once_it_has_arrived():
    bridge = WSGIBridge(echo, threads=1, max_body=10, body_timeout=5)
    sent = run(bridge, [{"type": "http.request", "body": b"ab", "more_body": True},
                        {"type": "http.request", "body": b"cd", "more_body": False}])
    assert sent[0]["status"] == 201 and sent[1]["body"] == b"got abcd"
    assert bridge.oldest_start() is None


def test_a_body_past_the_limit_is_413_without_calling_the_app():
    bridge = WSGIBridge(lambda *a: pytest.fail("the app was called"), threads=1, max_body=3, body_timeout=5)
    sent = run(bridge, [{"type": "http.request", "body": b"ab", "more_body": True},
                        {"type": "http.request", "body": b"cd", "more_body": True}])
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]


def test_a_body_that_stops_coming_is_408_without_calling_the_app():
    bridge = WSGIBridge(lambda *a: pytest.fail("the app was called"), threads=1, max_body=10, body_timeout=0.2)
    sent = run(bridge, [{"type": "http.request", "body": b"ab", "more_body": True}], stall=True)
    assert sent[0]["status"] == 408


def test_a_client_gone_before_its_body_ends_gets_nothing():
    bridge = WSGIBridge(lambda *a: pytest.fail("the app was called"), threads=1, max_body=10, body_timeout=5)
    assert run(bridge, [{"type": "http.request", "body": b"ab", "more_body": True}]) == []
