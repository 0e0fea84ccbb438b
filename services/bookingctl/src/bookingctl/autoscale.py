"""Local autoscaling: the operator's decision core applied to worker processes.

Each pool (one queue's worker processes) is read with the same `QueueReader`
(delayed messages count when due within the pool's delayedLeadSeconds) and
decided with the same `decide()` as the kopf operator; the actuator here
starts `dramatiq` processes or sends SIGTERM to the newest ones, which finish
their messages (Dramatiq's shutdown timeout) before exiting.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from booking_core.contracts import QUEUES
from booking_core.queues import QueueReader
from booking_core.scaling import Backlog, Decision, Policy, ScalerState, decide

log = logging.getLogger("bookingctl.autoscale")

#: Sensible local defaults: a laptop has few cores, and audit work is light.
DEFAULT_POLICIES = {
    "email": Policy(min_replica_count=1, max_replica_count=4, target_backlog_per_replica=20, polling_interval=2,
                    stabilization_window_seconds=30, cooldown_period=60, scale_down_max_step=1),
    "invoice": Policy(min_replica_count=1, max_replica_count=4, target_backlog_per_replica=10, polling_interval=2,
                      stabilization_window_seconds=30, cooldown_period=60, scale_down_max_step=1),
    "audit": Policy(min_replica_count=1, max_replica_count=2, target_backlog_per_replica=50, polling_interval=2,
                    stabilization_window_seconds=30, cooldown_period=60, scale_down_max_step=1),
}


def load_policies(path: Path | None, overrides: list[str] | None = None) -> dict[str, Policy]:
    """Defaults, then a JSON policy file ({"invoice": {"maxReplicaCount": 6, …}}), then QUEUE=MIN:MAX flags."""
    policies = dict(DEFAULT_POLICIES)
    if path is not None:
        spec = json.loads(path.read_text())
        unknown = set(spec) - set(QUEUES)
        if unknown:
            raise ValueError(f"{path}: unknown queue(s) {', '.join(sorted(unknown))}; expected {', '.join(QUEUES)}")
        for queue, fields in spec.items():
            policies[queue] = Policy.from_spec(fields, defaults=policies[queue])
    for item in overrides or []:
        queue, _, bounds = item.partition("=")
        low, _, high = bounds.partition(":")
        if queue not in QUEUES or not low.isdigit() or not high.isdigit():
            raise ValueError(f"--scale takes QUEUE=MIN:MAX with QUEUE one of {', '.join(QUEUES)}, got {item!r}")
        spec = {"minReplicaCount": int(low), "maxReplicaCount": int(high)}
        policies[queue] = Policy.from_spec(spec, defaults=policies[queue])
    return policies


@dataclass
class Pool:
    """One queue's scaler: its policy, its memory and when it next reads the backlog."""

    queue: str
    policy: Policy
    state: ScalerState = field(default_factory=ScalerState)
    next_at: float = 0.0
    last: Decision | None = None


class Autoscaler:
    """Reads every pool's backlog when due and asks the platform to resize pools."""

    def __init__(self, policies: dict[str, Policy], redis_url: str, namespace: str):
        self.pools = {q: Pool(q, p) for q, p in policies.items()}
        self.reader = QueueReader(redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2),
                                  namespace)

    def read(self, pools: list[Pool]) -> dict[str, Backlog]:
        """Each pool's backlog, its delayed messages due within its own delayedLeadSeconds.

        One snapshot per distinct lead time (one in all with the defaults), each atomic.
        """
        by_lead: dict[float, list[str]] = {}
        for pool in pools:
            by_lead.setdefault(pool.policy.delayed_lead_seconds, []).append(pool.queue)
        readings: dict[str, Backlog] = {}
        for lead, queues in by_lead.items():
            for depth in self.reader.snapshot(queues, due_within_ms=lead * 1000):
                readings[depth.queue] = Backlog.from_depths([depth])
        return readings

    def tick(self, running: dict[str, int], resize, now: float | None = None) -> None:
        """For each pool due a reading: decide on `running[queue]` processes, call resize(queue, n)."""
        now = time.monotonic() if now is None else now
        due = [p for p in self.pools.values() if now >= p.next_at]
        if not due:
            return
        try:
            readings = self.read(due)
        except redis.RedisError as e:
            readings = {p.queue: Backlog.unreadable(f"{type(e).__name__}: {e}") for p in due}
        for pool in due:
            pool.next_at = now + pool.policy.polling_interval
            decision = decide(readings[pool.queue], running[pool.queue], pool.policy, pool.state, now)
            pool.state, pool.last = decision.new_state, decision
            if decision.changed:
                log.info("%s workers: %s", pool.queue, decision.reason)
                resize(pool.queue, decision.desired)
