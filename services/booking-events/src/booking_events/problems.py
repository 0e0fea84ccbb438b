"""Errors as RFC 9457 problem details: booking_core.web.problems' body (the API's own), as an aiohttp response."""

from __future__ import annotations

from aiohttp import web

from booking_core.web.problems import MEDIA_TYPE, problem_json


def problem(status: int, code: str, detail: str, *, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, text=problem_json(status, code, detail), content_type=MEDIA_TYPE,
                        headers=headers)
