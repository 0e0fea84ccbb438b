"""The worker's broker, imported before the actors (Dramatiq's `pkg.broker pkg.actors` layout)."""

from __future__ import annotations

from booking_core.broker import setup_broker

broker = setup_broker(service_name="invoice-worker")
