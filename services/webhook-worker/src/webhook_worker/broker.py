"""This worker's settings and Dramatiq broker, built once from the environment at import.

Run: `dramatiq webhook_worker.broker webhook_worker.actors --queues webhook`.
A worker without BOOKING_WEBHOOKS_KEY, or with a bad webhook setting, stops here
(exit status 2 and one line naming the variable), never on its first delivery.
"""

from __future__ import annotations

from booking_core.config import Settings, require_webhooks_key
from booking_settings.boot import boot

#: Read before the broker's imports (Dramatiq's Redis client, psycopg, OpenTelemetry: most of a
#: worker's start), so a bad variable stops the worker before it pays for them.
settings = boot(lambda: require_webhooks_key(Settings.from_env()), "webhook-worker")

from booking_core.worker.broker import setup_broker  # noqa: E402

broker = setup_broker(settings, service_name="webhook-worker")
