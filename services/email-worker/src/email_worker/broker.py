"""The global Dramatiq broker, set before the actors import (Dramatiq's `pkg.broker` layout).

Run: `dramatiq email_worker.broker email_worker.actors --queues email`.
"""

from __future__ import annotations

from booking_core.broker import setup_broker

broker = setup_broker(service_name="email-worker")
