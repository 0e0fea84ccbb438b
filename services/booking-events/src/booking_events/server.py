"""`booking-events`: run the service; its settings are read here, once, and a bad one stops it (exit 2)."""

from __future__ import annotations

import argparse
import logging
import os

from aiohttp import web

from booking_core.config import Settings
from booking_core.telemetry.sdk import shutdown
from booking_events.admission import StreamLimits
from booking_events.app import SERVER_OPTIONS, create_app
from booking_events.settings import EventsSettings
from booking_settings.boot import boot
from booking_settings.fields import variables


def main(argv: list[str] | None = None) -> None:
    """Serve on BOOKING_EVENTS_HOST:BOOKING_EVENTS_PORT (default 0.0.0.0:8001)."""
    argparse.ArgumentParser(
        prog="booking-events", description=__doc__,
        epilog="Settings come from the environment (README.md, Configuration): "
               + ", ".join(variables(EventsSettings) + variables(StreamLimits)) + ", and the shared ones: "
               + ", ".join(variables(Settings)) + ".",
    ).parse_args(argv)
    settings = boot(lambda: EventsSettings.from_env(os.environ), "booking-events")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings.core, heartbeat_seconds=settings.heartbeat_seconds,
                     poll_seconds=settings.poll_seconds, limits=settings.limits)
    web.run_app(app, host=settings.host, port=settings.port, print=None, **SERVER_OPTIONS,
                # A burst of connections (a stream flood) beyond the listen backlog has the kernel
                # drop SYNs, other clients' included, who then wait out a 1 s and 3 s retransmit;
                # aiohttp's default is 128.  The kernel caps it at net.core.somaxconn.
                backlog=4096,
                # Open streams never finish by themselves: give them 5 s, then close them
                # (browsers reconnect with Last-Event-ID), well inside the pod's grace period.
                shutdown_timeout=5)
    shutdown()  # the spans still in the exporter's batch
