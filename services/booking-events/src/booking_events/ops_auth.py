"""Sign-in, sign-out and the checks every console request passes.

An admin API token (booking_core.model.tenants) is exchanged once for a server-side
session (booking_events.ops_sessions); the browser keeps only the session id in
a cookie that scripts cannot read (HttpOnly), that other sites never send
(SameSite=Strict), scoped to /ops, and Secure when the request came over HTTPS.

Every POST must come from our own origin (its `Origin` header, when the
browser sends one, must be ours) and carry the session's CSRF token in a
hidden field; anything else is a 403 page and changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from booking_core import db
from booking_core.config import Settings
from booking_events import ops_sessions
from booking_events.admission import client_address
from booking_events.keys import LIMITS, OPS_FORM, OPS_SESSION, SETTINGS, SIGN_IN_THROTTLE
from booking_events.ops_render import error, page

COOKIE = "ops_session"
COOKIE_PATH = "/ops"
#: A sign-in form field is a token (about 50 characters); refuse anything far larger unread.
MAX_FORM_BYTES = 64 * 1024


def is_https(request: web.Request, settings: Settings) -> bool:
    """Whether the browser's request used HTTPS: the socket's, or the Ingress's word when trusted."""
    if request.secure:
        return True
    return settings.trust_forwarded_proto and request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def own_origin(request: web.Request, settings: Settings) -> str:
    return f"{'https' if is_https(request, settings) else 'http'}://{request.host}"


def origin_ok(request: web.Request, settings: Settings) -> bool:
    """A POST's `Origin`, when present, must be this console's (browsers send it on every POST)."""
    origin = request.headers.get("Origin")
    return origin is None or origin == own_origin(request, settings)


def _conn(settings: Settings):
    return db.pool(settings.database_url, autocommit=True).connection()


def _lookup(settings: Settings, session_id: str | None) -> ops_sessions.Session | None:
    with _conn(settings) as conn:
        return ops_sessions.lookup(conn, session_id, idle_seconds=settings.ops_session_idle_seconds)


async def current_session(request: web.Request) -> ops_sessions.Session | None:
    settings = request.app[SETTINGS]
    return await asyncio.to_thread(_lookup, settings, request.cookies.get(COOKIE))


async def post_form(request: web.Request) -> dict[str, str]:
    """The POST's urlencoded fields (last value wins), or empty when too large or not a form."""
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return {}
    return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}


def forged(request: web.Request) -> web.Response:
    return error(request, 403, "Request refused",
                 "This form did not come from your console session (missing or wrong security token, "
                 "or another site). Nothing was changed. Reload the page and try again.")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def operator_required(handler: Handler) -> Handler:
    """A signed-in operator, or the sign-in page; on POST also our origin and the CSRF token."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        settings = request.app[SETTINGS]
        if request.method == "POST" and not origin_ok(request, settings):
            return forged(request)
        session = await current_session(request)
        if session is None:
            if request.method == "GET" and request.headers.get("Accept") != "text/event-stream":
                raise web.HTTPSeeOther("/ops/")
            return error(request, 401, "Please sign in", "Your console session has ended. Sign in again.")
        request[OPS_SESSION] = session
        if request.method == "POST":
            form = await post_form(request)
            if not session.csrf_ok(form.get("csrf")):
                return forged(request)
            request[OPS_FORM] = form
        return await handler(request)

    return wrapped


def _sign_in(settings: Settings, token: str) -> tuple[str, ops_sessions.Session]:
    with _conn(settings) as conn:
        ops_sessions.purge_expired(conn, idle_seconds=settings.ops_session_idle_seconds)
        return ops_sessions.sign_in(conn, token, max_seconds=settings.ops_session_max_seconds)


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    """GET /ops/: the sign-in form, or the queues when already signed in."""
    if await current_session(request) is not None:
        raise web.HTTPSeeOther("/ops/queues")
    return page(request, "sign_in.html", message=None)


async def sign_in(request: web.Request) -> web.StreamResponse:
    """POST /ops/sign-in: an admin token for a session cookie; a refused token changes nothing.

    Every attempt with a token counts against the sign-in throttle first (per client
    address and per token prefix, `sign_in_throttle`): past it, a 429 page with
    `Retry-After`, and the token is not even looked up.
    """
    settings = request.app[SETTINGS]
    if not origin_ok(request, settings):
        return forged(request)
    token = (await post_form(request)).get("token", "")
    if not token.strip():
        return page(request, "sign_in.html", status=400, message="Enter an admin API token.")
    address = client_address(request.remote, request.headers.getall("X-Forwarded-For", []),
                             request.app[LIMITS].forwarded_for_hops)
    refused = await asyncio.to_thread(request.app[SIGN_IN_THROTTLE].attempt, address, token)
    if refused is not None:
        who = "from your address" if refused.scope == "address" else "with this token"
        resp = page(request, "sign_in.html", status=429,
                    message=f"Too many sign-in attempts {who}. Try again in {refused.retry_after} s.")
        resp.headers["Retry-After"] = str(refused.retry_after)
        return resp
    try:
        session_id, _ = await asyncio.to_thread(_sign_in, settings, token)
    except ops_sessions.SignInRefused as e:
        return page(request, "sign_in.html", status=401, message=str(e))
    resp = web.HTTPSeeOther("/ops/queues")
    resp.set_cookie(COOKIE, session_id, path=COOKIE_PATH, httponly=True, samesite="Strict",
                    secure=is_https(request, settings), max_age=settings.ops_session_max_seconds)
    raise resp


def _sign_out(settings: Settings, session_id: str) -> None:
    with _conn(settings) as conn:
        ops_sessions.sign_out(conn, session_id)


@operator_required
async def sign_out(request: web.Request) -> web.StreamResponse:
    """POST /ops/sign-out: delete the session server-side and the cookie."""
    await asyncio.to_thread(_sign_out, request.app[SETTINGS], request.cookies[COOKIE])
    resp = web.HTTPSeeOther("/ops/")
    resp.del_cookie(COOKIE, path=COOKIE_PATH)
    raise resp
