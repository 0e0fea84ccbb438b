"""Pod start latency, measured: from a pod's creation to its first worker process ready to consume. Pure.

The promise's prediction counts on new replicas serving only after they start
(booking_scaling.promise), and `podStartSeconds` is a guess a platform engineer
makes once.  The real figure varies with the node (an image already pulled or
not, a node to be added first), so the operator measures it: each worker process
records when it booted (booking_scaling.podload), the pod's creation time is in
its metadata, and the difference is this pod's start.  The estimate is the median
of the last `SAMPLES` pods (one slow node pull does not move it), None until a pod
has been measured (then `podStartSeconds` stands).  A latency below zero or above
`MAX_SECONDS` (clocks that disagree, a pod whose record is older than the pod) is
discarded.  Each pod is measured once: the pods are listed only when a pod not
seen before has stamped, that is after a scale-up, never at every poll.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from booking_scaling.podload import PodLoad

SAMPLES = 20
MAX_SECONDS = 3600.0


@dataclass
class StartLatencies:
    """The last pods' start latencies, and which pods were already looked at."""

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    seen: set[str] = field(default_factory=set)

    def unseen(self, loads: Mapping[str, PodLoad]) -> set[str]:
        """Pods that recorded a boot and were not looked at yet: the pods must be listed to measure them."""
        return {name for name, load in loads.items() if load.booted_ms is not None and name not in self.seen}

    def observe(self, created: Mapping[str, float], loads: Mapping[str, PodLoad]) -> list[float]:
        """Measure every unseen pod found in `created` (name -> creation, epoch seconds); the new samples.

        Unseen pods not in `created` (not the target's) are marked seen too, so that they do
        not make the operator list the pods again at every poll.  `seen` keeps only pods that
        still stamp, so it does not grow with the pods that came and went.
        """
        new = []
        for name in sorted(self.unseen(loads)):
            booted = loads[name].booted_ms
            if name in created and booted is not None:
                latency = booted / 1000 - created[name]
                if 0 <= latency <= MAX_SECONDS:
                    new.append(latency)
            self.seen.add(name)
        self.samples.extend(new)
        self.seen &= set(loads)
        return new

    def estimate(self) -> float | None:
        """The median measured start latency (None: none measured yet)."""
        return statistics.median(self.samples) if self.samples else None
