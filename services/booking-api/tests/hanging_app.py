"""A WSGI app for the server's own guarantees: `GET /sleep?SECONDS` answers after that long, `/healthz` at once."""

from __future__ import annotations

import time


def app(environ, start_response):
    """Sleep for the query's seconds (0 when absent), then answer 200."""
    seconds = float(environ.get("QUERY_STRING") or 0) if environ["PATH_INFO"] == "/sleep" else 0.0
    time.sleep(seconds)
    body = f"slept {seconds}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
