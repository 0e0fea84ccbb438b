"""The promise: the fewest replicas that keep the oldest waiting task within maxAge.

A count of messages is not what users feel: twenty emails and twenty invoices are
very different amounts of work, and the right number of replicas depends on how
fast a replica works right now, how long a new one takes to start and how old the
oldest waiting task already is.  This module holds the two pure pieces the
decision core (`booking_scaling.decision`) needs for that:

* `estimate()`: smoothed rates from what each poll sees: the pool's cumulative
  completion count (the workers count what they finish; `booking_scaling.workers`)
  and its backlog.  Throughput per replica is measured while work waited at both
  ends of the interval (every replica was busy, so completions ÷ replica-seconds
  is what a replica can do); over every interval, busy or not, the same ratio is
  a lower bound, smoothed on its own, that raises the measure when it is higher
  (an idle pool says little about its speed, but it did at least that much).  Arrivals are
  completions plus the backlog's growth.  Both are exponentially smoothed with a
  half-life in seconds, so the smoothing does not depend on the poll interval, and
  the throughput never falls below the policy's floor (also its value before any
  task has run).
* `plan()`: a fluid model of the queue.  Waiting tasks are taken to have arrived
  evenly over the oldest one's age; tasks keep arriving at the estimated rate; the
  replicas serving now work at the estimated rate at once, and replicas added (or
  still starting) only after the pod start latency.  A task that arrived at τ starts
  when the completions since now reach its place in the queue; the promise holds
  when every task starts by τ + maxAge − pollingInterval (the age is read once a
  poll, so a poll's worth is kept in hand), or, for a task past saving (due before
  a replica ordered now could serve), within a poll of that replica's start.  Capacity only grows with the replica
  count, so the fewest replicas that keep it are found by bisection.

Both sides of that inequality are piecewise linear in τ, so checking it at the
pieces' ends (and the slope beyond the last) checks it everywhere: `plan()` is exact
for its model and costs a few dozen multiplications per candidate count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True, kw_only=True)
class Observed:
    """What a caller measured besides the backlog (any field None: not known)."""

    #: Seconds the oldest waiting task has waited (Backlog.oldest_age_seconds: the oldest ready in
    #: Redis or the oldest due in the outbox).
    oldest_age: float | None = None
    #: Tasks the pool's workers have finished, cumulative; a drop means the counter restarted.
    completed: int | None = None
    #: Replicas up and consuming now (None: all current replicas).
    serving: int | None = None
    #: Measured pod start latency, creation to first heartbeat (None: the policy's podStartSeconds).
    start_latency: float | None = None


@dataclass(frozen=True)
class Rates:
    """The smoothed estimates, and the last sample they were updated from."""

    at: float
    completed: int
    load: int
    ready: int
    serving: int
    #: Tasks/s per replica measured while work waited at both ends (every replica busy); None: never.
    saturated: float | None = None
    #: Tasks/s arriving (None: never measured; 0 is used).
    arrivals: float | None = None
    #: Tasks/s per replica over every interval, busy or not: a lower bound of what a replica can do.
    served: float | None = None
    #: Messages in flight at the last poll.
    in_flight: int = 0
    #: Tasks/s per replica by Little's law (completions per busy thread-second x threads per replica),
    #: measured busy or not; None without replicaConcurrency or before a thread was seen busy.
    little: float | None = None
    #: Tasks/s that arrived over the last interval alone, unsmoothed (None: never measured): what a
    #: scale-up is sized with when it is higher, since the smoothed rate lags a rising load.
    recent: float | None = None

    @property
    def per_replica(self) -> float | None:
        """What one busy replica does: by Little's law when known, else the saturated measure; raised to the
        smoothed lower bound (None: unknown)."""
        best = self.little if self.little is not None else self.saturated
        known = [x for x in (best, self.served) if x is not None]
        return max(known) if known else None


def _smooth(old: float | None, sample: float, dt: float, half_life: float) -> float:
    """Exponential smoothing whose weight depends on the time since the last sample, not the poll count."""
    if old is None:
        return sample
    keep = 0.5 ** (dt / half_life)
    return keep * old + (1 - keep) * sample


def estimate(rates: Rates | None, now: float, completed: int, load: int, ready: int, serving: int,
             half_life: float, *, in_flight: int = 0, concurrency: int | None = None) -> Rates:
    """The estimates after a poll that saw `completed` finished so far, `load`/`ready` waiting, `serving` replicas.

    With `concurrency` (threads per replica), a pool that is never saturated is still measured:
    the messages in flight are its busy threads (averaged over the interval's two ends), so
    completions per busy thread-second times the threads is what a fully busy replica does.

    The lower bound is smoothed before it raises anything: one interval's count is noisy (a poll
    that lands just after a batch of completions), and a raw sample would ratchet the estimate up.
    """
    if rates is None or completed < rates.completed or now <= rates.at:
        # First reading, or the counter restarted (a flushed Redis): start a new interval, keep what was learnt.
        if rates is None:
            return Rates(now, completed, load, ready, serving, in_flight=in_flight)
        return replace(rates, at=now, completed=completed, load=load, ready=ready, serving=serving,
                       in_flight=in_flight)
    dt = now - rates.at
    done = completed - rates.completed
    saturated, served = rates.saturated, rates.served
    # The replicas serving during the interval were between the two counts: the higher one errs towards a
    # slower replica, so towards more replicas and a kept promise.
    workers = max(rates.serving, serving)
    if workers > 0:
        sample = done / (dt * workers)
        served = _smooth(served, sample, dt, half_life)
        if rates.ready > 0 and ready > 0:
            saturated = _smooth(saturated, sample, dt, half_life)
    little = rates.little
    busy = (rates.in_flight + in_flight) / 2
    if concurrency is not None and busy > 0 and done > 0:
        little = _smooth(little, done / (dt * busy) * concurrency, dt, half_life)
    recent = max(0.0, (done + load - rates.load) / dt)
    arrivals = _smooth(rates.arrivals, recent, dt, half_life)
    return Rates(now, completed, load, ready, serving, saturated, arrivals, served, in_flight, little, recent)


@dataclass(frozen=True)
class Plan:
    """The fewest replicas that keep the promise in the model, and what the model predicts for them."""

    replicas: int
    #: False when even `high` replicas cannot keep it (then `replicas` is `high`).
    feasible: bool
    #: Seconds until the waiting tasks have started with `replicas` (inf: arrivals outpace them).
    drain_seconds: float


@dataclass(frozen=True, kw_only=True)
class Model:
    """The fluid model's inputs: one poll's view of a pool."""

    ready: int
    #: Delayed messages that fall due now: they join the queue's tail at once.
    due: int = 0
    oldest_age: float
    arrivals: float
    per_replica: float
    serving: int
    start: float
    #: The age every task must start by: maxAge less the poll interval.
    deadline: float
    #: Seconds between two decisions: a task past saving must start within one poll of a new replica's start.
    poll: float = 0.0

    def capacity(self, n: int, t: float) -> float:
        """Tasks started by `n` replicas in the first t seconds from now (the serving ones at once)."""
        if t <= 0:
            return 0.0
        now_ = min(n, self.serving)
        later = max(0, n - self.serving)
        return self.per_replica * (now_ * t + later * max(0.0, t - self.start))

    def _ahead(self, tau: float) -> float:
        """Tasks queued ahead of (and including) one that arrived at τ (τ ≤ 0: among those waiting now)."""
        if tau < 0:
            return self.ready * (tau + self.oldest_age) / self.oldest_age if self.oldest_age > 0 else 0.0
        return self.ready + self.due + self.arrivals * tau

    @property
    def rescue(self) -> float:
        """When a task past saving (its deadline before a replica ordered now could serve) must have started:
        a poll after such a replica starts."""
        return self.start + self.poll

    def _due_by(self, tau: float) -> float:
        """When a task that arrived at τ must have started: its deadline, or (past saving) the rescue time."""
        return max(tau + self.deadline, self.rescue)

    def keeps(self, n: int) -> bool:
        """Does every task, waiting or yet to come, start by its deadline with `n` replicas?"""
        if self.ready + self.due + self.arrivals <= 0:
            return True
        if n * self.per_replica < self.arrivals * (1 - 1e-9):
            return False  # the queue grows without end (rounding in the estimates is not growth)
        low = -self.oldest_age if self.ready > 0 else 0.0
        points = {low, 0.0, self.start - self.deadline, self.rescue - self.deadline}
        for tau in sorted(p for p in points if p >= low):
            if self.capacity(n, self._due_by(tau)) + 1e-9 < self._ahead(tau):
                return False
        return True

    def drain(self, n: int) -> float:
        """Seconds until what waits now (and what arrives meanwhile) has started with `n` replicas."""
        waiting = self.ready + self.due
        if waiting <= 0:
            return 0.0
        # capacity(n, t) - arrivals*t is piecewise linear: solve on each piece.
        serving, later = min(n, self.serving), max(0, n - self.serving)
        rate_now = self.per_replica * serving - self.arrivals
        if rate_now > 0 and waiting / rate_now <= self.start:
            return waiting / rate_now
        left = waiting - rate_now * self.start
        rate_after = self.per_replica * (serving + later) - self.arrivals
        if rate_after <= 0:
            return math.inf
        return self.start + max(0.0, left) / rate_after


def plan(model: Model, low: int, high: int) -> Plan:
    """The fewest replicas in [low, high] that keep the promise in `model` (`high` when none does)."""
    if model.keeps(low):
        return Plan(low, True, model.drain(low))
    if not model.keeps(high):
        return Plan(high, False, model.drain(high))
    lo, hi = low, high  # keeps(lo) is False, keeps(hi) is True: capacity grows with n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if model.keeps(mid):
            hi = mid
        else:
            lo = mid
    return Plan(hi, True, model.drain(hi))
