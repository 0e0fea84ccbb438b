"""This worker's settings and Dramatiq broker, built once from the environment at import.

Run: `dramatiq invoice_worker.broker invoice_worker.actors --queues invoice`
(Dramatiq's `pkg.broker pkg.actors` layout): the broker is set before the actors
import, and they take `settings` from here, so the environment is read once and
a bad variable stops the worker at start-up.
"""

from __future__ import annotations

from booking_core.config import Settings
from booking_settings.boot import boot

#: Read before the broker's imports (Dramatiq's Redis client, psycopg, OpenTelemetry: most of a
#: worker's start), so a bad variable stops the worker before it pays for them.
settings = boot(Settings.from_env, "invoice-worker")

from booking_core.worker.broker import setup_broker  # noqa: E402

broker = setup_broker(settings, service_name="invoice-worker")
