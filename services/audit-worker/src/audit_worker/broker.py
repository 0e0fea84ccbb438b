"""Dramatiq's global broker for this worker, built from the environment at import.

Imported first by `dramatiq audit_worker.broker audit_worker.actors --queues audit`,
so the actors bind to this Redis broker (with the task-state middleware).
"""

from __future__ import annotations

from booking_core.broker import setup_broker
from booking_core.config import Settings

settings = Settings.from_env()
broker = setup_broker(settings, service_name="audit-worker")
