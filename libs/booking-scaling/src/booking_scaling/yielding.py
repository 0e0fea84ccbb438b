"""On one machine the tighter promise goes first: pools with slack yield the CPU to a pool at risk.

In a cluster each worker pod has CPU of its own, and a queue's replicas are its
promise's only lever.  On `bookingctl up` every pool shares the same cores, so
more email processes cannot outrun the invoice renders that take the CPU they
need: in a burst of 2,000 bookings the oldest email waited 30 s against its 20 s
promise while the invoices (a 120 s promise) rendered, and 14-19 s with the
other queues held until the emails were out (bench/README.md, "The tighter
promise first").

So the local runner pauses, for a while, the pools whose promise has slack:

* a pool is *at risk* once its oldest waiting task has used AT_RISK of its maxAge,
  and stays at risk until it is back under SAFE of it (hysteresis: a pool at the
  edge does not flap);
* while a pool is at risk, every pool with a longer maxAge yields while its own
  oldest task has used less than SLACK of its own maxAge.  A yielding pool's tasks
  age meanwhile; once one reaches SLACK it stops yielding, and does not yield again
  until no pool is at risk any more (so it does not flap at the bound either).  A
  yield costs a pool at most SLACK of its own promise, and the pool with the
  tightest promise at risk never yields to anyone.

Pure: ages in, the pools at risk and the pools to hold out; the caller pauses and
resumes them (bookingctl.autoscale) and hands the result back at the next call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Share of its maxAge a pool's oldest task may reach before the pool is at risk: early enough that the
#: pools it waits behind are held before its oldest task is past saving (a poll of 2 s and the workers'
#: pause poll of 1 s pass before they stop starting work).
AT_RISK = 0.15
#: Share of its maxAge under which a pool at risk is out of it again.
SAFE = 0.05
#: Share of its own maxAge a yielding pool's oldest task may reach: the most a yield costs its promise.
SLACK = 0.5


@dataclass(frozen=True)
class Promise:
    """One pool's promise and how far it is used: its maxAge and its oldest waiting task's age (s)."""

    max_age: float
    oldest_age: float


@dataclass(frozen=True)
class Yielding:
    """The pools at risk, the pools that should yield now, and those done yielding until the risk is over."""

    at_risk: frozenset[str] = frozenset()
    yielding: frozenset[str] = frozenset()
    #: Pools whose own oldest task reached SLACK while they yielded: not held again until no pool is at risk.
    spent: frozenset[str] = frozenset()

    def reason(self, promises: Mapping[str, Promise]) -> str:
        """Why the pools yield, in words (for the pause's reason and the log)."""
        risky = ", ".join(f"{q} (oldest {promises[q].oldest_age:.0f}s of maxAge {promises[q].max_age:g}s)"
                          for q in sorted(self.at_risk))
        return f"yielding the CPU to a tighter promise at risk: {risky}"


def decide(promises: Mapping[str, Promise], before: Yielding = Yielding()) -> Yielding:
    """The pools at risk now and the pools that yield to them, given the last call's result."""
    risky = frozenset(q for q, p in promises.items()
                      if p.oldest_age >= (SAFE if q in before.at_risk else AT_RISK) * p.max_age)
    if not risky:
        return Yielding()
    tightest = min(promises[q].max_age for q in risky)
    looser = {q for q, p in promises.items() if p.max_age > tightest}
    spent = (before.spent | {q for q in looser if promises[q].oldest_age >= SLACK * promises[q].max_age}) & looser
    return Yielding(risky, frozenset(looser - spent), frozenset(spent))
