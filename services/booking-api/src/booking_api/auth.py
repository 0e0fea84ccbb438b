"""Bearer-token authentication; every view below /api/v1 needs a token.

The identity (tenant, admin flag) is looked up on the request's own
connection and kept for `BOOKING_API_TOKEN_CACHE_SECONDS` (2 s)
in a small per-process cache keyed by the token's hash.  Why: a client sends
the same token on every request, and the lookup was one of three Postgres round
trips of a confirm; under load that round trip is a third of the accept path's
database time.  The price is stated, not hidden: a revoked token keeps working
for at most that many seconds in each API process (0 turns the cache off).
Only live identities are cached, so a new token works at once and an unknown
one is looked up every time.  Views read the identity from `g.identity`.
"""

from __future__ import annotations

import functools
import threading

from cachetools import TTLCache
from flask import Flask, current_app, g, request

from booking_api.database import get_db
from booking_api.problems import ApiError
from booking_core.model import tenants

_PUBLIC = ("/healthz", "/readyz", "/api/v1/openapi.json")
#: Distinct live tokens remembered per process; more than any tenant count we serve per replica.
_CACHE_SIZE = 4096


class IdentityCache:
    """Live token identities for a few seconds, keyed by the token's hash (never the token)."""

    def __init__(self, ttl_seconds: float):
        self._cache = TTLCache(maxsize=_CACHE_SIZE, ttl=ttl_seconds) if ttl_seconds > 0 else None
        self._lock = threading.Lock()

    def peek(self, token: str) -> dict | None:
        """The cached identity for `token`, or None: never loads (for answers made before any I/O)."""
        if self._cache is None:
            return None
        key = tenants.hash_token(token)
        with self._lock:
            return self._cache.get(key)

    def lookup(self, token: str, load) -> dict | None:
        """The identity for `token`, from the cache or from `load(token)` (cached when live)."""
        if self._cache is None:
            return load(token)
        key = tenants.hash_token(token)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        identity = load(token)
        if identity is not None:
            with self._lock:
                self._cache[key] = identity
        return identity


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
    cache: IdentityCache = current_app.extensions["booking_identities"]
    identity = cache.lookup(token.strip(), lambda t: tenants.authenticate(get_db(), t))
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
    app.extensions["booking_identities"] = IdentityCache(app.config["API"].token_cache_seconds)
    app.before_request(_authenticate)
