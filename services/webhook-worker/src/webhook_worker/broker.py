"""This worker's settings and Dramatiq broker, built once from the environment at import.

Run: `dramatiq webhook_worker.broker webhook_worker.actors --queues webhook`.
A worker without BOOKING_WEBHOOKS_KEY, or with a bad webhook setting, stops here.
"""

from __future__ import annotations

from booking_core.config import Settings
from booking_core.worker.broker import setup_broker

settings = Settings.from_env()
if not settings.webhooks_keys:
    raise SystemExit("BOOKING_WEBHOOKS_KEY is not set: the webhook worker cannot read any signing secret")
broker = setup_broker(settings, service_name="webhook-worker")
