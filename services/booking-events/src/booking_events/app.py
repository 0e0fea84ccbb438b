"""The aiohttp application: routes (streams, progress pages, ops console), the shared poller, health, metrics."""

from __future__ import annotations

import asyncio

import redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.backoff import NoBackoff
from redis.retry import Retry

from booking_core import db
from booking_core.config import Settings
from booking_core.web.headers import BASE_SECURITY_HEADERS
from booking_events import api_views, ops_routes, page_views, tracing
from booking_events.admission import StreamLimits, StreamSlots
from booking_events.keys import (
    HEARTBEAT_SECONDS,
    LIMITS,
    POLLER,
    REDIS,
    SETTINGS,
    SETUPS,
    SIGN_IN_THROTTLE,
    SLOTS,
    TOKEN_WATCH,
)
from booking_events.poller import Poller
from booking_events.sign_in_throttle import SignInThrottle
from booking_events.tokenwatch import TokenWatch

#: How the service is served (server.py, and the tests' in-process runner alike).
#: `handler_cancellation`: a client that drops its connection cancels its handler at once,
#: so an open stream is freed then (its subscription, its slot), not at its next heartbeat,
#: when the write would fail and aiohttp would log the failure as an ERROR with a traceback.
SERVER_OPTIONS = {"handler_cancellation": True, "access_log": None}


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def _security_headers(request: web.Request, handler):
    """The headers every response carries (booking_core.web.headers); pages set their stricter own."""
    resp = await handler(request)
    for name, value in BASE_SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    return resp


def create_app(settings: Settings, *, heartbeat_seconds: float = 15.0, poll_seconds: float = 0.15,
               limits: StreamLimits | None = None, recheck_seconds: float = 2.0) -> web.Application:
    """The service; the poller and the token watch start and stop with the app."""
    tracing.instrument()
    app = web.Application(middlewares=[_security_headers])
    app[SETTINGS] = settings
    app[HEARTBEAT_SECONDS] = heartbeat_seconds
    app[POLLER] = Poller(settings.database_url, interval=poll_seconds)
    app[TOKEN_WATCH] = TokenWatch(settings.database_url, interval=recheck_seconds)
    app[LIMITS] = limits or StreamLimits()
    app[SLOTS] = StreamSlots(app[LIMITS])
    app[SETUPS] = asyncio.Semaphore(app[LIMITS].setups)
    # The ops console's queue depth and dead-letter cache; a stalled Redis must not hang a page.
    app[REDIS] = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    # Short timeouts: the throttle fails open, and a sign-in must not wait long for that.
    app[SIGN_IN_THROTTLE] = SignInThrottle(
        redis.Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5,
                             retry=Retry(NoBackoff(), 0)),
        settings.redis_namespace)

    async def lifecycle(app: web.Application):
        await app[POLLER].start()
        await app[TOKEN_WATCH].start()
        yield
        await app[TOKEN_WATCH].stop()
        await app[POLLER].stop()
        app[REDIS].close()
        db.close_pools()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    api_views.add_routes(app)
    page_views.add_routes(app)
    ops_routes.add_routes(app)
    return app
