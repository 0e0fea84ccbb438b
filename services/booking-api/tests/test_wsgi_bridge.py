"""The worker's pure pieces on their own: the WSGI environ, request threads, refusal rule, response bytes."""

from __future__ import annotations

import threading

import pytest

from booking_api.gunicorn_worker import install_protocol
from booking_api.http_connection import parse_error_status, refusal, render
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


def test_the_app_runs_with_its_whole_body_and_a_crash_is_a_500_problem():
    def echo(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"got ", environ["wsgi.input"].read()]

    bridge = WSGIBridge(echo, threads=1)
    try:
        assert bridge.run(wsgi_environ(SCOPE, b"abcd")) == (201, [(b"Content-Type", b"text/plain")], b"got abcd")
        assert bridge.oldest_start() is None
        bridge.app = lambda environ, start_response: 1 / 0
        status, headers, body = bridge.run(wsgi_environ(SCOPE, b""))
        assert status == 500 and (b"Content-Type", b"application/problem+json") in headers and b"500" in body
    finally:
        bridge.close()


def test_request_threads_run_calls_side_by_side_and_stop_after_the_running_ones():
    release, done = threading.Event(), []
    threads = RequestThreads(2)
    threads.submit(lambda: (release.wait(10), done.append("slow")))
    fast = threading.Event()
    threads.submit(lambda: (done.append("fast"), fast.set()))
    assert fast.wait(5) and done == ["fast"]  # not behind the slow one: the other thread took it
    stopped = threading.Event()
    stopper = threading.Thread(target=lambda: (threads.stop(), stopped.set()))
    stopper.start()
    assert not stopped.wait(0.3), "stop() returned while a call was still running"
    release.set()
    assert stopped.wait(10) and done == ["fast", "slow"]


def test_a_call_that_raises_leaves_its_thread_serving():
    threads = RequestThreads(1)
    served = threading.Event()
    try:
        threads.submit(lambda: 1 / 0)
        threads.submit(served.set)
        assert served.wait(5)
    finally:
        threads.stop()


@pytest.mark.parametrize(("answer", "options", "expected"), [
    ((201, [(b"Content-Type", b"application/json"), (b"Content-Length", b"99")], b"{}"),
     {"close": False, "keep_alive_10": False, "head_only": False},
     [b"HTTP/1.1 201 Created", b"Content-Type: application/json", b"Content-Length: 2", b"", b"{}"]),
    ((200, [(b"Transfer-Encoding", b"chunked"), (b"connection", b"keep-alive")], b"abc"),
     {"close": True, "keep_alive_10": False, "head_only": False},
     [b"HTTP/1.1 200 OK", b"Content-Length: 3", b"Connection: close", b"", b"abc"]),
    ((200, [(b"content-length", b"3")], b""), {"close": False, "keep_alive_10": True, "head_only": True},
     [b"HTTP/1.1 200 OK", b"Content-Length: 3", b"Connection: keep-alive", b"", b""]),
    ((204, [], b"x"), {"close": False, "keep_alive_10": False, "head_only": False},
     [b"HTTP/1.1 204 No Content", b"", b""]),
    ((200, [(b"x-a", b"1\r\nSet-Cookie: evil=1")], b"ok"), {"close": False, "keep_alive_10": False, "head_only": False},
     [b"HTTP/1.1 500 Internal Server Error", b"Content-Type: text/plain", b"Content-Length: 21", b"",
      b"Internal Server Error"]),
], ids=["app length replaced, the app's spelling kept", "framing headers dropped, close", "HEAD keeps the length",
        "204 has no body", "a header that would split the response"])
def test_the_response_bytes(answer, options, expected):
    lines = render(answer, **options).split(b"\r\n")
    assert lines[1].startswith(b"Date: ") and lines[1].endswith(b" GMT")
    assert [lines[0]] + lines[2:] == expected


def test_parser_errors_get_the_statuses_gunicorn_gives_them():
    from gunicorn.asgi.parser import InvalidHeader, LimitRequestHeaders, LimitRequestLine, UnsupportedTransferCoding
    from gunicorn.http.errors import InvalidHeader as WSGIInvalidHeader

    assert [parse_error_status(e) for e in (LimitRequestLine("x"), LimitRequestHeaders("x"),
                                            UnsupportedTransferCoding("x"), InvalidHeader("x"),
                                            WSGIInvalidHeader("x"), ValueError("x"))] == [414, 431, 501, 400, 400, None]


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
