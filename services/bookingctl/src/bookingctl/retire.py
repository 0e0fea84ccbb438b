"""Which worker processes a local scale-down stops: the idlest, as the operator's pod-deletion-cost picks. Pure.

Locally a "pod" is one supervised `dramatiq` process: the runner names each
(`email-worker-2`) and passes the name as its BOOKING_WORKER_HOST, so its
presence record (booking_scaling.podload) is keyed by the same name the
supervisor knows it by.  The ranking is booking_scaling.idlest's, the one the
operator uses: fewest messages in flight, then least recent work.  Stopping a
process that is idle interrupts nothing; one mid-render would hold the scale-down
for up to its shutdown timeout, or requeue the message at its end.

Ties (two processes that never worked, or nothing known at all because Redis
could not be read or no process has stamped yet) go to the newest process, as
before this ranking existed: it has warmed up least.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from booking_scaling.idlest import idleness
from booking_scaling.podload import PodLoad


def retirees(names: Sequence[str], loads: Mapping[str, PodLoad], count: int) -> list[str]:
    """The `count` processes to stop out of `names` (oldest first), idlest first by `loads` (name -> load)."""
    if count <= 0:
        return []
    # A process with no load record ranks as idleness(None), the same for every one of them, so with
    # nothing known at all the newest-first tie-break alone decides: no separate case is needed.
    age = {name: i for i, name in enumerate(names)}
    return sorted(names, key=lambda name: (*idleness(loads.get(name)), -age[name]))[:count]
