"""Which tenants' waiting messages go to a queue next: start-time fair queueing, weighted by plan.

The relay publishes into each Redis queue only a bounded publish-ahead
(`outbox_relay.fair`); everything else waits in the outbox.  This module picks
*whose* messages fill that room, and in which order, so one tenant's import or
retry storm cannot put its whole batch ahead of another tenant's customers.

It is start-time fair queueing (Goyal, Vin and Cheng, SIGCOMM '96) with every
message costing one unit.  Each queue has a virtual clock `vtime`; each tenant
a finish tag, the virtual time at which its last published message "ends".
A waiting tenant's next message starts at `max(vtime, finish)`; the smallest
start goes first (ties: the older outbox row), then `finish = start + 1/weight`
and `vtime = start`.  Why this rule and not a round-robin cursor:

- **Quiet tenants go next.**  A tenant with nothing published lately has a
  finish tag at or below the clock, so it starts at `vtime`, which no other
  waiting tenant can beat: it is picked within one pick per waiting tenant,
  whatever the others' backlogs.
- **Weights.**  While two tenants stay backlogged, the messages each gets,
  divided by its weight, differ by at most `1/w_i + 1/w_j` (plus what the
  carried-over tags held, at most one message each).
- **Work-conserving.**  Every call fills its whole budget while any tenant has
  work: nobody is held back to make room for a tenant that has none.
- **Small state that survives relays.**  The clock and the tags of tenants
  ahead of it are all there is; `fair.py` keeps them in Postgres per queue, so
  several relays (taking turns per queue) stay fair together.  A tag at or
  below the clock means the same as no tag, so those are dropped.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Waiting:
    """One tenant's ready messages in one queue: how many, its weight, and its oldest row id."""

    tenant: str
    count: int
    weight: int
    #: The outbox id of its oldest ready row: older goes first between equal starts.
    head: int = 0


@dataclass(frozen=True)
class Tags:
    """A queue's fair-share state: its virtual clock and the finish tag of each tenant ahead of it."""

    vtime: float = 0.0
    finish: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    """What to publish: tenants in publish order (one entry per message), and the state after."""

    order: tuple[str, ...]
    tags: Tags

    def counts(self) -> dict[str, int]:
        """Messages per tenant in this schedule."""
        out: dict[str, int] = {}
        for tenant in self.order:
            out[tenant] = out.get(tenant, 0) + 1
        return out


def schedule(tags: Tags, waiting: list[Waiting], budget: int) -> Schedule:
    """Pick up to `budget` messages from `waiting`, fairly by weight; return them in publish order.

    Work-conserving: picks exactly min(budget, total waiting).  A weight below
    one counts as one (the plans' bounds forbid it; a bad row must not divide by zero).
    """
    vtime = tags.vtime
    finish = dict(tags.finish)
    heap: list[tuple[float, int, str]] = []
    left: dict[str, int] = {}
    weight: dict[str, int] = {}
    for w in waiting:
        if w.count <= 0:
            continue
        left[w.tenant] = w.count
        weight[w.tenant] = max(1, w.weight)
        heap.append((max(vtime, finish.get(w.tenant, vtime)), w.head, w.tenant))
    heapq.heapify(heap)
    order: list[str] = []
    while heap and len(order) < budget:
        start, head, tenant = heapq.heappop(heap)
        order.append(tenant)
        vtime = start
        finish[tenant] = start + 1.0 / weight[tenant]
        left[tenant] -= 1
        if left[tenant]:
            # Its next row is newer than this one: the head only breaks ties, so +1 is enough.
            heapq.heappush(heap, (finish[tenant], head + 1, tenant))
    ahead = {t: f for t, f in finish.items() if f > vtime}
    return Schedule(tuple(order), Tags(vtime, ahead))
