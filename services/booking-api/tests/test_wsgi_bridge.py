"""The bridge from gunicorn's event loop to the Flask app, and the server's own refusal rule, on their own."""

from __future__ import annotations

import asyncio
import threading

import pytest

from booking_api.gunicorn_worker import install_protocol, refusal
from booking_api.wsgi_bridge import RequestThreads, WSGIBridge, wsgi_environ

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

    try:
        asyncio.run(bridge(dict(SCOPE), receive, send))
    finally:
        bridge.close()
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


def test_request_threads_hand_each_answer_to_its_request_and_stop_after_running_calls():
    release = threading.Event()

    def run(environ):
        if environ["wait"]:
            release.wait(10)
        return 200, [], environ["n"]

    threads = RequestThreads(2, run)

    async def two_calls():
        loop = asyncio.get_running_loop()
        slow, fast = loop.create_future(), loop.create_future()
        threads.submit(loop, slow, {"wait": True, "n": b"slow"})
        threads.submit(loop, fast, {"wait": False, "n": b"fast"})
        assert await fast == (200, [], b"fast")  # not behind the slow one: the other thread took it
        assert not slow.done()
        return slow

    loop = asyncio.new_event_loop()
    try:
        slow = loop.run_until_complete(two_calls())
        stopped = threading.Event()
        stopper = threading.Thread(target=lambda: (threads.stop(), stopped.set()))
        stopper.start()
        assert not stopped.wait(0.3), "stop() returned while a call was still running"
        release.set()
        assert stopped.wait(10)
        loop.run_until_complete(asyncio.wait_for(slow, 5))
        assert slow.result() == (200, [], b"slow")
    finally:
        loop.close()


def test_an_answer_nobody_waits_for_any_more_is_dropped_and_the_thread_serves_on():
    threads = RequestThreads(1, lambda environ: (200, [], environ["n"]))
    gone = asyncio.new_event_loop()
    lost = gone.create_future()
    gone.close()  # the worker is exiting: its loop is gone before the call ends
    threads.submit(gone, lost, {"n": b"lost"})

    async def after():
        loop = asyncio.get_running_loop()
        gave_up, answer = loop.create_future(), loop.create_future()
        gave_up.cancel()  # the client left while its call ran
        threads.submit(loop, gave_up, {"n": b"late"})
        threads.submit(loop, answer, {"n": b"next"})
        return await asyncio.wait_for(answer, 5)

    try:
        assert asyncio.run(after()) == (200, [], b"next")
    finally:
        threads.stop()


def test_the_protocol_is_installed_only_where_gunicorn_still_builds_it_from_that_name(monkeypatch):
    from gunicorn.asgi.protocol import ASGIProtocol
    from gunicorn.workers import gasgi

    from booking_api.gunicorn_worker import Protocol

    monkeypatch.setattr(gasgi, "ASGIProtocol", ASGIProtocol)
    install_protocol()
    assert gasgi.ASGIProtocol is Protocol

    async def serve_otherwise(self):  # a gunicorn that builds its protocol some other way
        return self.protocol_class

    monkeypatch.setattr(gasgi.ASGIWorker, "_serve", serve_otherwise)
    with pytest.raises(RuntimeError, match="no longer builds"):
        install_protocol()
