"""The backlog one decision looks at: summed over a pool's queues, or unreadable.

KEDA's Redis-list scaler counts only the ready list; a pool that is busy with
fetched messages, or has retries waiting out their backoff, looks idle to it
and is scaled in.  Here every component that needs a live worker is kept
apart, so the decision can tell "nothing to do" from "busy" from "unknown".

Under the relay's fair ordering most of a backlog waits in the outbox, not in
Redis; `outbox` counts it (from the relay's copy, `booking_scaling.outboxmirror`),
and retries waiting out their backoff there count as delayed, not yet due.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class _Depth(Protocol):
    """What `from_depths` reads: booking_scaling.depth.QueueDepth has these fields.

    It also reads `delayed_due` where a depth has it (None or absent: not known).
    """

    ready: int
    in_flight: int
    delayed: int
    dead: int


class _Outbox(Protocol):
    """What `from_depths` reads of booking_scaling.outboxmirror.OutboxBacklog."""

    waiting: int
    later: int
    oldest_ms: int


@dataclass(frozen=True, kw_only=True)
class Backlog:
    """One reading of a pool's queues (summed), or the error that prevented it."""

    ready: int = 0
    #: Fetched by a live worker, not yet acknowledged.
    in_flight: int = 0
    #: Retries waiting out their backoff (Dramatiq's `.DQ`), due or not.
    delayed: int = 0
    #: Of `delayed`, those due within the policy's lead time; None when due times are
    #: unknown, and then every delayed message counts as due (the safe side).
    delayed_due: int | None = None
    #: Fetched by a worker that died and not yet requeued (Dramatiq requeues them
    #: after the heartbeat timeout).  Today's QueueReader counts them in `in_flight`.
    orphaned: int = 0
    #: Due rows still waiting in the outbox for their turn (the relay's fair ordering).
    outbox: int = 0
    #: When the oldest of `outbox` was written (ms since the epoch; 0 when none): under the
    #: fair order the oldest waiting task is usually there, not in Redis (the promise's age).
    outbox_oldest_ms: int = 0
    #: Dead letters: reported, never a reason to run workers.
    dead: int = 0
    #: Why the reading failed; when set, the counts mean nothing.
    error: str | None = None

    @property
    def due(self) -> int:
        """Delayed messages that count as work now."""
        return self.delayed if self.delayed_due is None else min(self.delayed_due, self.delayed)

    @property
    def load(self) -> int:
        """Work that needs workers soon: ready + in flight + delayed-due + orphaned + waiting in the outbox."""
        return self.ready + self.in_flight + self.due + self.orphaned + self.outbox

    @property
    def busy(self) -> bool:
        """True while some message needs a live worker to finish or to pick it up when due."""
        return self.in_flight + self.due + self.orphaned > 0

    @classmethod
    def from_depths(cls, depths: Iterable[_Depth], *, delayed_due: int | None = None,
                    outbox: Iterable[_Outbox] = ()) -> Backlog:
        """Sum several queues' depths (a pool may consume more than one queue), plus their outbox backlog.

        `delayed_due` is the sum of the depths' own `delayed_due` (read with a lead time)
        unless given; a depth without one counts all its delayed messages as due, and
        when no depth has one it stays None (every delayed message is due).
        """
        depths = list(depths)
        outbox = list(outbox)
        later = sum(o.later for o in outbox)
        if delayed_due is None:
            known = [getattr(d, "delayed_due", None) for d in depths]
            if any(k is not None for k in known):
                pairs = zip(depths, known, strict=True)
                delayed_due = sum(d.delayed if k is None else min(k, d.delayed) for d, k in pairs)
        return cls(
            ready=sum(d.ready for d in depths),
            in_flight=sum(d.in_flight for d in depths),
            # The outbox's retries are not due yet: when due_times are known they add to
            # `delayed` only; when unknown every delayed message counts (the safe side).
            delayed=sum(d.delayed for d in depths) + later,
            delayed_due=delayed_due,
            outbox=sum(o.waiting for o in outbox),
            outbox_oldest_ms=min((o.oldest_ms for o in outbox if o.waiting and o.oldest_ms), default=0),
            dead=sum(d.dead for d in depths),
        )

    def oldest_age_seconds(self, depths: Iterable[_Depth], now_ms: int) -> float:
        """The oldest waiting task's age: in Redis (each depth's oldest ready) or in the outbox."""
        in_redis = max((getattr(d, "oldest_ready_age_ms", 0) for d in depths), default=0)
        in_outbox = max(0, now_ms - self.outbox_oldest_ms) if self.outbox and self.outbox_oldest_ms else 0
        return max(in_redis, in_outbox) / 1000

    @classmethod
    def unreadable(cls, error: str) -> Backlog:
        """A failed reading: the decision must hold or fall back, never guess zero."""
        return cls(error=error or "unknown error")

    def describe(self) -> str:
        """Human words for the reading, used in decision reasons and Kubernetes Events."""
        if self.error is not None:
            return f"backlog unreadable ({self.error})"
        parts = [f"ready {self.ready}", f"in flight {self.in_flight}", f"delayed {self.due}"]
        if self.due != self.delayed:
            parts[-1] += f" due (+{self.delayed - self.due} later)"
        if self.orphaned:
            parts.append(f"orphaned {self.orphaned}")
        if self.outbox:
            parts.append(f"in the outbox {self.outbox}")
        return f"backlog {self.load} ({', '.join(parts)})"
