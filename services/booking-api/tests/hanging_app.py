"""A WSGI app for the server's own guarantees: `GET /sleep?SECONDS` answers after that long (and prints
"sleeping SECONDS s" as it starts), `/big?BYTES` that many bytes, `POST /echo` its body, `/environ` the scheme and
header names the app was given, anything else at once."""

from __future__ import annotations

import json
import time


def app(environ, start_response):
    """Sleep for the query's seconds (0 when absent), then answer 200."""
    if environ["PATH_INFO"] == "/big":
        body = b"x" * int(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
        return [body]
    if environ["PATH_INFO"] == "/environ":
        body = json.dumps({"scheme": environ["wsgi.url_scheme"],
                           "headers": sorted(k for k in environ if k.startswith("HTTP_"))}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if environ["PATH_INFO"] == "/echo":
        body = environ["wsgi.input"].read()
        start_response("201 Created", [("Content-Type", "application/octet-stream")])
        return [body]
    seconds = float(environ.get("QUERY_STRING") or 0) if environ["PATH_INFO"] == "/sleep" else 0.0
    if seconds:
        print(f"sleeping {seconds} s", flush=True)  # into the server's log: a test waits for it, not a guess
    time.sleep(seconds)
    body = f"slept {seconds}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
