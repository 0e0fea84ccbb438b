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


class CircuitBreaker:
    """Per endpoint, per process: after `threshold` failed attempts in a row, stop sending for a while.

    While open, a delivery to the endpoint is put back until the cool-off ends,
    with no attempt counted, so a dead endpoint costs no thread and no timeout.
    Then one trial attempt goes (half-open): a success closes the breaker, a
    failure opens it again for twice as long, up to `max_cooloff`.  The trial
    attempts keep the endpoint's failure streak going, so a dead endpoint is
    still disabled when its streak reaches the limit.
    """

    def __init__(self, *, threshold: int = 5, cooloff: float = 5.0, max_cooloff: float = 300.0,
                 trial_timeout: float = 60.0, clock=None):
        import time

        #: A trial whose verdict never came (its thread failed before recording) is given up after this.
        self.trial_timeout = trial_timeout
        self.threshold = threshold
        self.cooloff = cooloff
        self.max_cooloff = max_cooloff
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        #: endpoint -> [failures in a row, open until (0: closed), current cool-off, when the trial went (0: none)]
        self._state: dict[str, list] = {}

    def wait_seconds(self, endpoint_id: str) -> float:
        """0 when an attempt may go now (taking the one trial when half-open), else how long to wait."""
        with self._lock:
            s = self._state.get(endpoint_id)
            if s is None or s[1] == 0:
                return 0.0
            now = self._clock()
            if now < s[1]:
                return s[1] - now
            if s[3] and now - s[3] < self.trial_timeout:  # half-open, the trial is out: wait for its verdict
                return min(s[2], 1.0)
            s[3] = now
            return 0.0

    def record(self, endpoint_id: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._state.pop(endpoint_id, None)
                return
            s = self._state.setdefault(endpoint_id, [0, 0.0, self.cooloff, 0.0])
            s[0] += 1
            if s[3]:  # the trial failed: open again, for longer
                s[2] = min(s[2] * 2, self.max_cooloff)
                s[1], s[3] = self._clock() + s[2], 0.0
            elif s[0] >= self.threshold and s[1] == 0:
                s[1] = self._clock() + s[2]
