"""Bearer-token authentication; every view below /api/v1 needs a token.

The identity (tenant, admin flag) is looked up once per request on the
request's own connection; views read it from `g.identity`.
"""

from __future__ import annotations

import functools

from flask import Flask, g, request

from booking_api.database import get_db
from booking_api.problems import ApiError
from booking_core import tenants

_PUBLIC = ("/healthz", "/readyz", "/api/v1/openapi.json")


def _challenge(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="bookings"'})


def _authenticate() -> None:
    """Set g.identity from the Authorization header for /api/v1 routes."""
    if not request.path.startswith("/api/v1/") or request.path in _PUBLIC:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _challenge("Send 'Authorization: Bearer <token>'.")
    identity = tenants.authenticate(get_db(), token.strip())
    if identity is None:
        raise _challenge("The token is unknown or revoked.")
    g.identity = identity


def actor_name() -> str:
    """Who did it, for the audit trail: the token's public prefix and tenant."""
    ident = g.identity
    return f"token:{ident['prefix']} (tenant {ident['tenant']})"


def admin_required(view):
    """Refuse the view to tokens without the admin flag (403)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not g.identity["admin"]:
            raise ApiError(403, "forbidden", "This endpoint needs an admin token.")
        return view(*args, **kwargs)

    return wrapped


def init_app(app: Flask) -> None:
    app.before_request(_authenticate)
