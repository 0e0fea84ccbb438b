"""Isolation between endpoints inside one worker process.

A slow or black-holed endpoint must not take every thread: each endpoint may
hold at most `per_endpoint` of them at once.  A delivery that finds its
endpoint's slots full is put back on the queue for a short while instead of
waiting (no attempt is counted), so the thread serves another endpoint.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager


class EndpointSlots:
    """Per-endpoint counting slots, shared by a process's worker threads."""

    def __init__(self, per_endpoint: int):
        if per_endpoint < 1:
            raise ValueError("BOOKING_WEBHOOKS_ENDPOINT_CONCURRENCY must be at least 1")
        self.per_endpoint = per_endpoint
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}

    @contextmanager
    def slot(self, endpoint_id: str):
        """Yields True with a slot held, or False when the endpoint has none free."""
        with self._lock:
            busy = self._busy.get(endpoint_id, 0)
            if busy >= self.per_endpoint:
                got = False
            else:
                self._busy[endpoint_id] = busy + 1
                got = True
        try:
            yield got
        finally:
            if got:
                with self._lock:
                    left = self._busy[endpoint_id] - 1
                    if left:
                        self._busy[endpoint_id] = left
                    else:
                        del self._busy[endpoint_id]

    def busy(self, endpoint_id: str) -> int:
        with self._lock:
            return self._busy.get(endpoint_id, 0)
