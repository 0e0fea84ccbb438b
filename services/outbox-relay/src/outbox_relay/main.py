"""Entry point `booking-relay`: logging, tracing, the metrics server, signals, the loop."""

from __future__ import annotations

import logging
import os
import signal

from prometheus_client import start_http_server

from booking_core.config import Settings
from booking_core.telemetry import setup_tracing, shutdown
from outbox_relay.relay import Relay

log = logging.getLogger("outbox_relay")


def main() -> None:
    """Run the relay until SIGTERM or SIGINT; metrics on `BOOKING_METRICS_PORT` (default 9100)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    setup_tracing("booking-relay")
    port = int(os.environ.get("BOOKING_METRICS_PORT", "9100"))
    start_http_server(port)
    log.info("metrics on :%d/metrics", port)
    relay = Relay(Settings.from_env())
    signal.signal(signal.SIGTERM, relay.stop)
    signal.signal(signal.SIGINT, relay.stop)
    relay.run()
    shutdown()
    log.info("relay stopped")
