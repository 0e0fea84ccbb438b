"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error the API returns goes through `ApiError`, so clients can rely on
`type`, `title`, `status`, `detail` and, for invalid input, a field-by-field
`errors` list (`[{"field": "customer.email", "message": ...}]`); the body is
booking_core.web.problems' (booking-events answers the same shape).
"""

from __future__ import annotations

import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from booking_api.contract import MAX_BODY_TEXT
from booking_core.web.problems import MEDIA_TYPE, problem_json

log = logging.getLogger(__name__)

class ApiError(Exception):
    """An error response: status, short code, human detail, optional field errors."""

    def __init__(self, status: int, code: str, detail: str, *, errors: list[dict] | None = None,
                 headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem(status: int, code: str, detail: str, errors: list[dict] | None = None,
            headers: dict | None = None) -> Response:
    """Build a problem+json response."""
    resp = Response(problem_json(status, code, detail, errors), status=status, mimetype=MEDIA_TYPE)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def init_app(app: Flask) -> None:
    """Render ApiError, Werkzeug's HTTP errors and crashes as problems."""

    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        return problem(e.status, e.code, e.detail, e.errors, e.headers)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        codes = {404: ("not-found", "No such resource."),
                 405: ("method-not-allowed", "Method not allowed on this resource."),
                 413: ("too-large", f"Request body is larger than {MAX_BODY_TEXT}.")}
        code, detail = codes.get(e.code, ("http-error", e.description or ""))
        headers = {"Allow": ", ".join(e.valid_methods)} if getattr(e, "valid_methods", None) else None
        return problem(e.code or 500, code, detail, headers=headers)

    @app.errorhandler(Exception)
    def _crash(e: Exception):
        log.exception("unhandled error")
        return problem(500, "internal", "The server failed to handle this request.")
