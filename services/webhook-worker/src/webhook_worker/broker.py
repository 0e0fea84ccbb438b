"""This worker's settings and Dramatiq broker, built once from the environment at import.

Run: `dramatiq webhook_worker.broker webhook_worker.actors --queues webhook`.
A worker without BOOKING_WEBHOOKS_KEY, or with a bad webhook setting, stops here
(exit status 2 and one line naming the variable), never on its first delivery.
"""

from __future__ import annotations

from booking_core.config import Settings, require_webhooks_key
from booking_core.worker.broker import setup_broker
from booking_settings.boot import boot

settings = boot(lambda: require_webhooks_key(Settings.from_env()), "webhook-worker")
broker = setup_broker(settings, service_name="webhook-worker")
