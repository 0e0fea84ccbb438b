"""The server's own refusals (400, 408, 413, 414, 431 …) as RFC 9457 problems, like every other API error.

A request the server refuses before Flask sees it (a malformed request line
or framing, header fields too large, a request line too long, headers or a
body that arrive too slowly, a declared body over the limit) is answered by
the API's gunicorn worker (`gunicorn_worker.py`) with these bytes, then the
connection is closed.  The detail is fixed per status and never echoes the
refused bytes, which are the client's.  `tests/test_served_by_gunicorn.py` and
`tests/test_framing.py` pin this to the locked gunicorn.
"""

from __future__ import annotations

from http import HTTPStatus

from booking_api.contract import MAX_BODY_TEXT
from booking_core.web.problems import problem_json

#: status → (problem code, detail); anything else is a generic `http-error`.
_KNOWN = {
    400: ("bad-request", "The request is not valid HTTP/1.1."),
    403: ("forbidden", "The request was refused."),
    408: ("request-timeout", "The request did not arrive in time."),
    413: ("too-large", f"Request body is larger than {MAX_BODY_TEXT}."),
    414: ("uri-too-long", "The request line is too long."),
    417: ("expectation-failed", "The Expect header cannot be met."),
    431: ("header-fields-too-large", "The request's header fields are too large."),
    500: ("internal", "The server failed to handle this request."),
    501: ("not-implemented", "The request's transfer coding is not supported."),
}


def reason(status: int) -> str:
    """The standard reason phrase of `status` (the status line never carries client text)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, detail: str | None = None) -> bytes:
    """The problem+json document for `status`; `detail` overrides the fixed one (never client bytes)."""
    code, fixed = _KNOWN.get(status, ("http-error", reason(status)))
    return problem_json(status, code, detail or fixed).encode()


def problem_response(status: int, detail: str | None = None) -> bytes:
    """A complete HTTP/1.1 response carrying a problem+json body for `status`, announcing the close."""
    body = problem_body(status, detail)
    head = (f"HTTP/1.1 {status} {reason(status)}\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body
