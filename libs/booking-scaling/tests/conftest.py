"""Fixtures of booking_scaling's tests: a real Dramatiq Redis broker on the session's Redis.

booking_scaling does not depend on Dramatiq; its tests do, because what its
readers read is what Dramatiq writes.  The broker is a plain `RedisBroker`
(no platform middleware) in a namespace of the test's own.
"""

from __future__ import annotations

import uuid

import pytest
from dramatiq.brokers.redis import RedisBroker


@pytest.fixture
def broker(redis_url) -> RedisBroker:
    """A Dramatiq RedisBroker on the session's Redis, in a namespace of this test's own."""
    made = RedisBroker(url=redis_url, namespace=f"test-{uuid.uuid4().hex[:8]}")
    yield made
    for key in made.client.scan_iter(f"{made.namespace}:*"):
        made.client.delete(key)
    made.close()
