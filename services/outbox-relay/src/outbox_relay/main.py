"""Entry point `booking-relay`: logging, tracing, the metrics server, signals, the loop, the bulk-job runner."""

from __future__ import annotations

import argparse
import logging
import os
import signal

from prometheus_client import start_http_server

from booking_core import db
from booking_core.config import MetricsAddress, Settings
from booking_core.ops.bulkrunner import BulkJobRunner
from booking_core.telemetry.sdk import setup_tracing, shutdown
from booking_settings.boot import boot
from outbox_relay.reconcile import Reconciler
from outbox_relay.relay import Relay

log = logging.getLogger("outbox_relay")

ENVIRONMENT = """\
environment:
  DATABASE_URL, REDIS_URL       Postgres and Redis (required)
  BOOKING_RELAY_SWEEP_MS        poll interval when no NOTIFY arrives (2000)
  BOOKING_RELAY_BATCH_SIZE      outbox rows per transaction (200)
  BOOKING_RECONCILE_AFTER_MS    re-publish unfinished tasks idle this long with no
                                message anywhere (max(2 x heartbeat timeout, 120000))
  BOOKING_DEAD_LETTER_RETENTION_DAYS  purge requeued/discarded dead-letter records
                                after this many days (30); open ones are kept
  BOOKING_BULK_JOB_STALE_MS     a bulk dead-letter job whose runner has not reported
                                for this long is resumed by another runner (60000)
  BOOKING_METRICS_HOST, _PORT   where /metrics listens (0.0.0.0, 9100)
  OTEL_*                        OpenTelemetry exporter settings
  and the shared variables of the README's Configuration table; a bad value stops
  the relay before it starts, with exit status 2 and the variable's name
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line takes no options: `--help` says what the environment sets."""
    parser = argparse.ArgumentParser(
        prog="booking-relay", description="Publish committed outbox rows to the Dramatiq queues; stop on SIGTERM.",
        epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the relay until SIGTERM or SIGINT; a bad setting stops it first (exit 2, naming the variable)."""
    parse_args(argv)
    settings, metrics = boot(lambda: (Settings.from_env(os.environ), MetricsAddress.from_env(os.environ)),
                             "booking-relay")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    db.set_backend_nice(settings.db_backend_nice)
    setup_tracing("booking-relay")
    start_http_server(metrics.port, addr=metrics.host)
    log.info("metrics on http://%s:%d/metrics", metrics.host, metrics.port)
    relay = Relay(settings)
    reconciler = Reconciler(settings)
    # The bulk dead-letter jobs the API and the console start (booking_core.ops.bulkjobs): run here,
    # in the one long-lived service every installation has, so they outlive whoever started them.
    bulk_jobs = BulkJobRunner(settings)

    def stop(*_args) -> None:
        relay.stop()
        reconciler.stop()
        bulk_jobs.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reconciler.start()
    bulk_jobs.start()
    relay.run()
    reconciler.join(5)
    bulk_jobs.join(5)
    shutdown()
    log.info("relay stopped")
