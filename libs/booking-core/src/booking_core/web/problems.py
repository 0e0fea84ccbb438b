"""RFC 9457 problem details, the one shape of every error the API and booking-events answer.

Pure: the body as a dict. Each framework (Flask in the API, aiohttp in
booking-events) only wraps it in its response with `MEDIA_TYPE`, so a client
reads the same `type`, `title`, `status`, `detail` (and, for invalid input,
`errors: [{field, message}]`) from both.
"""

from __future__ import annotations

import json
from http import HTTPStatus

MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE = "https://booking.example/problems/"
TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Content Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable",
}


def title(status: int) -> str:
    """The problem's title: RFC 9110's reason phrase (its newer wording where Python's is older)."""
    if status in TITLES:
        return TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, code: str, detail: str, errors: list[dict] | None = None) -> dict:
    """The problem's fields; `code` becomes its `type` URI, `errors` is left out when there are none."""
    body = {"type": PROBLEM_TYPE + code, "title": title(status), "status": status, "detail": detail}
    return body | ({"errors": errors} if errors is not None else {})


def problem_json(status: int, code: str, detail: str, errors: list[dict] | None = None) -> str:
    return json.dumps(problem_body(status, code, detail, errors))
