"""Typed keys of what the application holds (aiohttp's AppKey)."""

from __future__ import annotations

import asyncio

import redis
from aiohttp import web

from booking_core.config import Settings
from booking_events import ops_sessions
from booking_events.admission import StreamLimits, StreamSlots
from booking_events.poller import Poller
from booking_events.sign_in_throttle import SignInThrottle
from booking_events.tokenwatch import TokenWatch

SETTINGS = web.AppKey("settings", Settings)
HEARTBEAT_SECONDS = web.AppKey("heartbeat_seconds", float)
POLLER = web.AppKey("poller", Poller)
REDIS = web.AppKey("redis", redis.Redis)
LIMITS = web.AppKey("stream_limits", StreamLimits)
SLOTS = web.AppKey("stream_slots", StreamSlots)
#: Stream set-ups (their Postgres reads) running at once: `StreamLimits.setups`.
SETUPS = web.AppKey("stream_setups", asyncio.Semaphore)
TOKEN_WATCH = web.AppKey("token_watch", TokenWatch)
SIGN_IN_THROTTLE = web.AppKey("sign_in_throttle", SignInThrottle)
#: The signed-in operator's session and, on a checked POST, its form fields.
OPS_SESSION = web.RequestKey("ops_session", ops_sessions.Session)
OPS_FORM = web.RequestKey("ops_form", dict)
