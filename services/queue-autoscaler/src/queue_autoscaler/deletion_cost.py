"""Which pods a scale-down should take: the idlest, marked with a low pod-deletion-cost. Pure: no I/O.

A Deployment scaled down leaves the choice of pods to its ReplicaSet, which (after
unscheduled, pending and unready pods) deletes the ready pods with the lowest
`controller.kubernetes.io/pod-deletion-cost` first, then the most recently ready.
Left alone it may well delete the pod in the middle of a two-minute render and
keep an idle one.  So before lowering the replicas by `k` the operator marks the
`k` idlest pods with negative costs and clears any mark it left on the others.

Idlest is booking_scaling.idlest's ranking (fewest messages in flight, then least
recent work, then the name), which the local runner's scale-down shares.

A pod with no presence record (still starting, or its worker not yet stamped)
has no work to lose and never worked: it goes first.  Kubernetes advises against
updating the annotation on every metric change (each is a pod update), so it is
written only before a scale-down and only on pods whose value must change.  It is
best effort: the ReplicaSet reads pods from its cache, and a pod that picks up a
message between the reading and the deletion is requeued by Dramatiq on SIGTERM.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from booking_scaling.idlest import idlest_first
from booking_scaling.podload import PodLoad

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"

__all__ = ["ANNOTATION", "PodView", "idlest_first", "plan"]


@dataclass(frozen=True)
class PodView:
    """One pod of the target as listed: its name, its deletion-cost annotation (None: not set) and its
    creation time (epoch seconds; None: not known)."""

    name: str
    cost: str | None = None
    created: float | None = None


def plan(pods: Iterable[PodView], loads: Mapping[str, PodLoad], remove: int) -> dict[str, int | None]:
    """The annotation changes before removing `remove` pods: pod name -> new cost, or None to clear it.

    The `remove` idlest pods get the costs -remove .. -1 (the idlest lowest, so that it
    still goes first when the ReplicaSet deletes fewer than `remove` of them, after an
    unready pod); every other pod carrying a cost gets it cleared (a mark left by an
    earlier scale-down must not doom a pod that is busy now).  Pods already holding the
    wanted value are left out: no write that changes nothing.
    """
    pods = list(pods)
    current = {p.name: p.cost for p in pods}
    chosen = idlest_first(current, loads)[:max(0, remove)]
    wanted: dict[str, int | None] = {name: i - len(chosen) for i, name in enumerate(chosen)}
    for name, cost in current.items():
        if name not in wanted and cost is not None:
            wanted[name] = None
    return {name: cost for name, cost in wanted.items()
            if (None if cost is None else str(cost)) != current[name]}
