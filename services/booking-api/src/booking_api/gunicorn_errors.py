"""gunicorn's own refusals (431, 414, 400 …) as RFC 9457 problems, like every other API error.

A request gunicorn cannot parse (header fields too large, request line too
long, a malformed request line) never reaches Flask: gunicorn answers it
itself through `gunicorn.util.write_error(sock, status, reason, message)`,
with a fixed HTML page, and offers no setting or hook for that body (its
issue 993). `install()`, run in each worker by the `post_worker_init` server
hook (gunicorn_conf.py), replaces that one function. gunicorn still decides
the status and logs the refusal; only the bytes written change. The detail is
fixed per status and never echoes the refused bytes, which are the client's.
`tests/test_served_by_gunicorn.py` pins this to the locked gunicorn.
"""

from __future__ import annotations

import json

from gunicorn import util

from booking_api.problems import PROBLEM_TYPE

#: status → (problem code, detail); anything else is a generic `http-error`.
_KNOWN = {
    400: ("bad-request", "The request is not valid HTTP/1.1."),
    403: ("forbidden", "The request was refused."),
    414: ("uri-too-long", "The request line is too long."),
    417: ("expectation-failed", "The Expect header cannot be met."),
    431: ("header-fields-too-large", "The request's header fields are too large."),
    500: ("internal", "The server failed to handle this request."),
    501: ("not-implemented", "The request's transfer coding is not supported."),
}


def problem_response(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 response carrying a problem+json body for `status`."""
    code, detail = _KNOWN.get(status, ("http-error", reason))
    body = json.dumps({"type": PROBLEM_TYPE + code, "title": reason, "status": status,
                       "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `write_error`, answering with a problem (`mesg` holds client bytes: not sent)."""
    util.write_nonblock(sock, problem_response(int(status_int), reason))


def install() -> None:
    """Make this worker process answer gunicorn's own errors as problems."""
    util.write_error = write_problem
