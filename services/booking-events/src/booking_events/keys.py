"""Typed keys of what the application holds (aiohttp's AppKey)."""

from __future__ import annotations

from aiohttp import web

from booking_core.config import Settings
from booking_events.poller import Poller

SETTINGS = web.AppKey("settings", Settings)
HEARTBEAT_SECONDS = web.AppKey("heartbeat_seconds", float)
POLLER = web.AppKey("poller", Poller)
