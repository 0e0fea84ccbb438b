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
    """Run the relay until SIGTERM or SIGINT; metrics on $BOOKING_METRICS_HOST:$BOOKING_METRICS_PORT (0.0.0.0:9100)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    setup_tracing("booking-relay")
    host = os.environ.get("BOOKING_METRICS_HOST", "0.0.0.0")  # noqa: S104 - the pod's own metrics port
    port = int(os.environ.get("BOOKING_METRICS_PORT", "9100"))
    start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
    relay = Relay(Settings.from_env())
    signal.signal(signal.SIGTERM, relay.stop)
    signal.signal(signal.SIGINT, relay.stop)
    relay.run()
    shutdown()
    log.info("relay stopped")
