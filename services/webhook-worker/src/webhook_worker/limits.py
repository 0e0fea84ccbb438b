"""Isolation between endpoints, and between tenants, inside one worker process.

A slow or black-holed endpoint must not take every thread: each endpoint may
hold at most a few of them at once (a quarter of the threads at most), and each
tenant at most half, so a tenant with several black holes still leaves the
other tenants half the process.  A delivery that finds its endpoint's or its
tenant's slots full is put back on the queue for a short while instead of
waiting (no attempt is counted), so the thread serves someone else.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager


class Slots:
    """Counting slots per key (an endpoint, a tenant), shared by a process's worker threads.

    Each slot remembers when its attempt started, so a delivery turned away can
    be told how long the key has been holding its slots (`held_seconds`):
    a black hole's slots stay taken for the whole attempt deadline, and asking
    again every second would only churn the queue.
    """

    def __init__(self, per_key: int, clock=None, *, setting: str = "slots per key"):
        if per_key < 1:
            raise ValueError(f"{setting} must be at least 1")
        self.per_key = per_key
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._busy: dict[str, list[float]] = {}

    def limit_to_share_of(self, threads: int, share: int) -> int:
        """Cap the slots at 1/`share` of the process's `threads` (at least 1); the cap in force.

        However the setting is chosen, one key then never holds more than that
        share of the threads the others need.
        """
        self.per_key = max(1, min(self.per_key, threads // share))
        return self.per_key

    @contextmanager
    def slot(self, key: str):
        """Yields True with a slot held, or False when `key` has none free."""
        with self._lock:
            started = self._busy.setdefault(key, [])
            got = len(started) < self.per_key
            if got:  # per_key >= 1: a key turned away always has slots taken, so its entry stays
                now = self._clock()
                started.append(now)
        try:
            yield got
        finally:
            if got:
                with self._lock:
                    started.remove(now)
                    if not started:
                        self._busy.pop(key, None)

    def busy(self, key: str) -> int:
        with self._lock:
            return len(self._busy.get(key, ()))

    def held_seconds(self, key: str) -> float:
        """How long every one of `key`'s running attempts in this process has gone at least (0: none running).

        The youngest attempt's age, not the oldest's: a black hole's attempts all
        run to the deadline, so their youngest is old too, while a healthy
        endpoint with one stuck attempt frees its other slots at once, and its
        deliveries put back should not wait as long as the stuck one.
        """
        with self._lock:
            started = self._busy.get(key)
            return self._clock() - max(started) if started else 0.0


class CircuitBreaker:
    """Per endpoint, per process: after `threshold` failed attempts in a row, stop sending for a while.

    While open, a delivery to the endpoint is put back until the cool-off ends,
    with no attempt counted, so a dead endpoint costs no thread and no timeout.
    Then one trial attempt goes (half-open): a success closes the breaker, a
    failure opens it again for twice as long, up to `max_cooloff`.  The trial
    attempts keep the endpoint's failure streak going, so a dead endpoint is
    still disabled when its streak reaches the limit.

    An attempt that timed out opens the breaker at once: it held a thread for
    the whole deadline, and a black hole would otherwise take `threshold` more
    of them before it stops.  While the trial is out, the others wait until its
    deadline (`trial_timeout`), not a second at a time: a black hole's trial
    takes that long, and every early return is another trip through the queue.
    """

    def __init__(self, *, threshold: int = 5, cooloff: float = 5.0, max_cooloff: float = 300.0,
                 trial_timeout: float = 60.0, clock=None):
        #: The trial's verdict comes by then (the attempt's deadline); one that never came is given up.
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
                return max(1.0, s[3] + self.trial_timeout - now)
            s[3] = now
            return 0.0

    def cooloff_seconds(self, endpoint_id: str) -> float:
        """The endpoint's current cool-off (0 while closed): how far to spread the deliveries put back."""
        with self._lock:
            s = self._state.get(endpoint_id)
            return s[2] if s is not None and s[1] else 0.0

    def record(self, endpoint_id: str, ok: bool, *, timed_out: bool = False) -> None:
        with self._lock:
            if ok:
                self._state.pop(endpoint_id, None)
                return
            s = self._state.setdefault(endpoint_id, [0, 0.0, self.cooloff, 0.0])
            s[0] += 1
            if s[3]:  # the trial failed: open again, for longer
                s[2] = min(s[2] * 2, self.max_cooloff)
                s[1], s[3] = self._clock() + s[2], 0.0
            elif (s[0] >= self.threshold or timed_out) and s[1] == 0:
                s[1] = self._clock() + s[2]


def put_back_ms(wait: float, spread: float, rand: float) -> int:
    """The delay of a delivery put back for `wait` s, spread over `spread` s more by `rand` in [0, 1).

    Spread, so the deliveries an endpoint turned away do not all come back in the
    same instant and turn it away again together.
    """
    return int((wait + spread * rand) * 1000) + 1
