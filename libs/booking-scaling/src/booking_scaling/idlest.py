"""Which worker processes' pods lose least when stopped: the ranking both scale-downs share. Pure: no I/O.

The operator marks the idlest pods with a low pod-deletion-cost
(queue_autoscaler.deletion_cost); the local runner stops the idlest worker
processes (bookingctl.retire).  Idlest means, in this order:

1. fewest messages in flight (Dramatiq's un-acked messages of the pod's worker
   processes, read live from Redis when the decision is taken): exactly the work
   a stop interrupts, a running render lost and requeued, so it comes first;
2. least recent work (the last message one of its processes finished, from its
   presence stamp): among idle pods, one that just finished is likely to fetch
   the next message at once, one idle for a minute is the spare capacity.

A pod with no presence record (still starting, or its worker not yet stamped)
has no work to lose and never worked: it goes first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from booking_scaling.podload import PodLoad


def idleness(load: PodLoad | None) -> tuple[int, int]:
    """A sort key, lowest for the pod whose stop loses least (None: no presence record)."""
    if load is None:
        return (0, -2)  # not serving yet: before an idle pod that never worked
    return (load.in_flight, load.last_work_ms if load.last_work_ms is not None else -1)


def idlest_first(names: Iterable[str], loads: Mapping[str, PodLoad]) -> list[str]:
    """Pod names ordered from the one whose deletion loses least to the busiest; ties by name,
    so that the same readings always give the same choice."""
    return sorted(names, key=lambda name: (*idleness(loads.get(name)), name))
