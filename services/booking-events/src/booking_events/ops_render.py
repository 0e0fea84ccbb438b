"""The ops console's HTML responses, with booking_core.web.pages' environment and security headers.

Autoescaped templates (every client-supplied field — names, error text,
tenant names — is untrusted), no inline script or style, and a policy that
lets forms post only to this origin.  `no-store` keeps operator pages out of
shared caches; `frame-ancestors 'none'` stops clickjacking of the action buttons.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp import web

from booking_core.web.headers import FORM_SECURITY_HEADERS
from booking_core.web.pages import templates
from booking_events.keys import OPS_SESSION


def when(value: datetime | None) -> str:
    """A time as operators read it in logs: UTC, to the second."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(ms: int | float) -> str:
    """A duration in milliseconds, as a person says it: '0 s', '42 s', '3 min 5 s', '2 h 10 min'."""
    s = int(ms // 1000)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


#: `json`: JSON as written (not Jinja's `tojson`, which \u-escapes `<` for script blocks); autoescape makes it safe.
_env = templates("booking_events", "templates/ops", filters={
    "when": when, "json": lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True)})


def page(request: web.Request, template: str, *, status: int = 200, **context) -> web.Response:
    """Render `template` with the signed-in operator (if any) and their CSRF token."""
    session = request.get(OPS_SESSION)
    html = _env.get_template(template).render(
        operator=session.operator if session else None, csrf=session.csrf_secret if session else "",
        path=request.path, **context)
    return web.Response(status=status, text=html, content_type="text/html", headers=FORM_SECURITY_HEADERS)


def error(request: web.Request, status: int, heading: str, message: str) -> web.Response:
    """A plain error page (bad filter, forged form, missing letter): what went wrong, and nothing changed."""
    return page(request, "error.html", status=status, heading=heading, message=message)
