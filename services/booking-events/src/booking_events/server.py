"""`booking-events`: run the service (settings from the environment, as every process of the platform)."""

from __future__ import annotations

import argparse
import logging
import os

from aiohttp import web

from booking_core.config import Settings, _int
from booking_core.telemetry.sdk import shutdown
from booking_events.admission import StreamLimits
from booking_events.app import SERVER_OPTIONS, create_app


def main(argv: list[str] | None = None) -> None:
    """Serve on BOOKING_EVENTS_HOST:BOOKING_EVENTS_PORT (default 0.0.0.0:8001)."""
    argparse.ArgumentParser(
        prog="booking-events", description=__doc__,
        epilog="Settings come from the environment: DATABASE_URL, REDIS_URL, BOOKING_STATUS_SECRET, "
               "BOOKING_EVENTS_HOST, BOOKING_EVENTS_PORT, BOOKING_EVENTS_HEARTBEAT_MS, BOOKING_EVENTS_POLL_MS, "
               "BOOKING_EVENTS_MAX_STREAMS_PER_LINK, BOOKING_EVENTS_MAX_STREAMS_PER_CLIENT, "
               "BOOKING_EVENTS_STREAM_SETUPS, BOOKING_FORWARDED_FOR_HOPS; "
               "the ops console: BOOKING_OPS_SESSION_MAX_SECONDS, BOOKING_OPS_SESSION_IDLE_SECONDS, "
               "BOOKING_TRUST_FORWARDED_PROTO, BOOKING_TRACE_URL_TEMPLATE; traces: OTEL_*.",
    ).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env = os.environ
    app = create_app(Settings.from_env(env),
                     heartbeat_seconds=_int(env, "BOOKING_EVENTS_HEARTBEAT_MS", 15_000) / 1000,
                     poll_seconds=_int(env, "BOOKING_EVENTS_POLL_MS", 150) / 1000,
                     limits=StreamLimits.from_env(env))
    web.run_app(app, host=env.get("BOOKING_EVENTS_HOST", "0.0.0.0"),  # noqa: S104 - a container's port
                port=_int(env, "BOOKING_EVENTS_PORT", 8001), print=None, **SERVER_OPTIONS,
                # A burst of connections (a stream flood) beyond the listen backlog has the kernel
                # drop SYNs, other clients' included, who then wait out a 1 s and 3 s retransmit;
                # aiohttp's default is 128.  The kernel caps it at net.core.somaxconn.
                backlog=4096,
                # Open streams never finish by themselves: give them 5 s, then close them
                # (browsers reconnect with Last-Event-ID), well inside the pod's grace period.
                shutdown_timeout=5)
    shutdown()  # the spans still in the exporter's batch
