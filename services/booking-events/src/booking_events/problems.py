"""Errors as RFC 9457 problem details, shaped as the API's (same `type` URIs and titles)."""

from __future__ import annotations

import json

from aiohttp import web

PROBLEM_TYPE = "https://booking.example/problems/"
TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 410: "Gone", 429: "Too Many Requests"}


def problem(status: int, code: str, detail: str, *, headers: dict | None = None) -> web.Response:
    body = {"type": PROBLEM_TYPE + code, "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type="application/problem+json",
                        headers=headers)
