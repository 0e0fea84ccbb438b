"""The scaling policy: KEDA's vocabulary, validated once, before any decision.

Both actuators (the kopf operator reading a QueueScaler's spec, and the local
supervisor reading a policy file or flags) build a `Policy` with
`Policy.from_spec()`, so a bad value is refused with the same message, naming
the field the user wrote, wherever it came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class PolicyError(ValueError):
    """A policy field is missing its meaning: wrong type, out of range, or inconsistent."""


@dataclass(frozen=True, kw_only=True)
class Policy:
    """How one pool of workers scales on its backlog (field names: KEDA's, snake_cased)."""

    #: Replicas never fall below this; 0 allows scale to zero.
    min_replica_count: int = 0
    #: Replicas never rise above this.
    max_replica_count: int = 4
    #: Backlog (ready + in flight + delayed-due) one replica is expected to carry.
    target_backlog_per_replica: int = 10
    #: The pool is "active" only while backlog exceeds this; it wakes from zero past it.
    activation_backlog: int = 0
    #: Seconds between two backlog readings.
    polling_interval: float = 5.0
    #: Seconds since the pool was last active before its last step, 1 -> 0.
    cooldown_period: float = 300.0
    #: Seconds of recommendations a scale-down looks back on (their highest wins).
    stabilization_window_seconds: float = 60.0
    #: At most this many replicas added per decision (None: no limit).
    scale_up_max_step: int | None = None
    #: At most this many replicas removed per decision (None: no limit).
    scale_down_max_step: int | None = None
    #: At most one scale-down per this many seconds (None: no limit; HPA's scaleDown periodSeconds).  A
    #: drained backlog's recommendations fall poll by poll, and the window's highest with them: without a
    #: period the pool follows them down in a staircase of small steps.
    scale_down_period_seconds: float | None = None
    #: Relative change of load per replica ignored, to avoid flapping (0.1 = 10%).
    tolerance: float = 0.1
    #: Replicas to run while the backlog cannot be read (None: hold the current count).
    fallback_replicas: int | None = None
    #: Delayed messages due within this many seconds count as backlog.
    delayed_lead_seconds: float = 30.0
    #: While true, nothing is changed.
    paused: bool = False
    #: While the accept path is over its latency budget (booking_scaling.pressure),
    #: scale-ups are held: more workers would slow the API and drain no faster.
    protect_accept_path: bool = True
    #: The promise: the oldest waiting task's age (seconds) the pool must hold (None: scale on
    #: targetBacklogPerReplica alone).  The depth target stays the fallback while no age is read.
    max_age: float | None = None
    #: A new replica's start (creation to first heartbeat), assumed until one is measured.
    pod_start_seconds: float = 30.0
    #: Tasks/s one busy replica is assumed to finish before any has been measured, and the least
    #: the estimate may fall to (a stalled SMTP must not read as "infinitely many replicas").
    min_throughput_per_replica: float = 0.05
    #: Half-life (seconds) of the throughput and arrival-rate estimates' smoothing.
    throughput_half_life_seconds: float = 60.0
    #: Messages one replica works on at once (its processes x threads); None: unknown.  Known, the
    #: throughput is measured from the busy threads even when the pool is never saturated.
    replica_concurrency: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise PolicyError (naming the spec field) for any inconsistent value."""
        _int_at_least(self.min_replica_count, 0, "minReplicaCount")
        _int_at_least(self.max_replica_count, 1, "maxReplicaCount")
        if self.min_replica_count > self.max_replica_count:
            raise PolicyError(
                f"minReplicaCount ({self.min_replica_count}) must not exceed maxReplicaCount "
                f"({self.max_replica_count})"
            )
        _int_at_least(self.target_backlog_per_replica, 1, "targetBacklogPerReplica")
        _int_at_least(self.activation_backlog, 0, "activationBacklog")
        _number_at_least(self.polling_interval, 0, "pollingInterval", strict=True)
        _number_at_least(self.cooldown_period, 0, "cooldownPeriod")
        _number_at_least(self.stabilization_window_seconds, 0, "stabilizationWindowSeconds")
        _number_at_least(self.delayed_lead_seconds, 0, "delayedLeadSeconds")
        if self.scale_up_max_step is not None:
            _int_at_least(self.scale_up_max_step, 1, "scaleUp.maxStep")
        if self.scale_down_max_step is not None:
            _int_at_least(self.scale_down_max_step, 1, "scaleDown.maxStep")
        if self.scale_down_period_seconds is not None:
            _number_at_least(self.scale_down_period_seconds, 0, "scaleDown.periodSeconds")
        _number_at_least(self.tolerance, 0, "tolerance")
        if self.tolerance >= 1:
            raise PolicyError(f"tolerance must be below 1, got {self.tolerance!r}")
        if self.fallback_replicas is not None:
            # Zero would scale a pool away exactly when nobody can see its backlog.
            _int_at_least(self.fallback_replicas, 1, "fallbackReplicas")
            if self.fallback_replicas > self.max_replica_count:
                raise PolicyError(
                    f"fallbackReplicas ({self.fallback_replicas}) must not exceed maxReplicaCount "
                    f"({self.max_replica_count})"
                )
        if self.max_age is not None:
            _number_at_least(self.max_age, 0, "maxAge", strict=True)
            # The age is read once a poll: a promise shorter than the poll cannot be watched.
            if self.max_age <= self.polling_interval:
                raise PolicyError(f"maxAge ({self.max_age:g}) must be above pollingInterval "
                                  f"({self.polling_interval:g}): the age is read once a poll")
        _number_at_least(self.pod_start_seconds, 0, "podStartSeconds")
        _number_at_least(self.min_throughput_per_replica, 0, "minThroughputPerReplica", strict=True)
        _number_at_least(self.throughput_half_life_seconds, 0, "throughputHalfLifeSeconds", strict=True)
        if self.replica_concurrency is not None:
            _int_at_least(self.replica_concurrency, 1, "replicaConcurrency")
        for name, value in (("paused", self.paused), ("protectAcceptPath", self.protect_accept_path)):
            if not isinstance(value, bool):
                raise PolicyError(f"{name} must be true or false, got {value!r}")

    def clamp(self, replicas: int) -> int:
        """`replicas` brought within [minReplicaCount, maxReplicaCount]."""
        return max(self.min_replica_count, min(self.max_replica_count, replicas))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, defaults: Policy | None = None) -> Policy:
        """A Policy from camelCase spec fields (a QueueScaler spec or a policy file).

        Absent fields take `defaults` (else the class defaults); unknown fields
        are ignored here because the spec also holds non-policy fields.  A field
        whose "unset" is null (maxAge, fallbackReplicas, replicaConcurrency) given
        as null unsets it, so a policy file can drop a default's promise.
        """
        base = defaults or cls()
        values: dict[str, Any] = {}
        for camel, attr in _SPEC_FIELDS.items():
            if camel in spec and (spec[camel] is not None or attr in _NULLABLE):
                values[attr] = spec[camel]
        for block, keys in _STEP_FIELDS.items():
            sub = spec.get(block)
            if sub is None:
                continue
            if not isinstance(sub, Mapping):
                raise PolicyError(f"{block} must be an object with {' or '.join(keys)}, got {sub!r}")
            for key, attr in keys.items():
                if sub.get(key) is not None:
                    values[attr] = sub[key]
        merged = {name: getattr(base, name) for name in cls.__dataclass_fields__}
        merged.update(values)
        return cls(**merged)

    def to_spec(self) -> dict[str, Any]:
        """The camelCase form of this policy (what from_spec reads back)."""
        spec: dict[str, Any] = {camel: getattr(self, attr) for camel, attr in _SPEC_FIELDS.items()}
        for block, keys in _STEP_FIELDS.items():
            spec[block] = {key: getattr(self, attr) for key, attr in keys.items()}
        return spec


_SPEC_FIELDS = {
    "minReplicaCount": "min_replica_count",
    "maxReplicaCount": "max_replica_count",
    "targetBacklogPerReplica": "target_backlog_per_replica",
    "activationBacklog": "activation_backlog",
    "pollingInterval": "polling_interval",
    "cooldownPeriod": "cooldown_period",
    "stabilizationWindowSeconds": "stabilization_window_seconds",
    "tolerance": "tolerance",
    "fallbackReplicas": "fallback_replicas",
    "delayedLeadSeconds": "delayed_lead_seconds",
    "paused": "paused",
    "protectAcceptPath": "protect_accept_path",
    "maxAge": "max_age",
    "podStartSeconds": "pod_start_seconds",
    "minThroughputPerReplica": "min_throughput_per_replica",
    "throughputHalfLifeSeconds": "throughput_half_life_seconds",
    "replicaConcurrency": "replica_concurrency",
}

#: The scaleUp and scaleDown blocks' fields.
_STEP_FIELDS = {
    "scaleUp": {"maxStep": "scale_up_max_step"},
    "scaleDown": {"maxStep": "scale_down_max_step", "periodSeconds": "scale_down_period_seconds"},
}

#: Fields whose null means "not set" (no promise, hold on read errors, concurrency unknown).
_NULLABLE = frozenset({"max_age", "fallback_replicas", "replica_concurrency"})


def _int_at_least(value: Any, low: int, name: str) -> None:
    """Refuse non-integers (bools included: YAML `true` is not a count) and values below `low`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise PolicyError(f"{name} must be at least {low}, got {value}")


def _number_at_least(value: Any, low: float, name: str, *, strict: bool = False) -> None:
    """Refuse non-numbers, NaN/infinity and values below (or, if strict, equal to) `low`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise PolicyError(f"{name} must be {'above' if strict else 'at least'} {low}, got {value}")
