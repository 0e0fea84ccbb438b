"""Pure helpers: read a QueueScaler's spec, build its status, conditions and Events.

Nothing here talks to Kubernetes or Redis, so every rule about what the
operator reports is testable on plain dicts (dask-kubernetes keeps its
operator in the same shape: pure functions on top, thin handlers below).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from booking_scaling.backlog import Backlog
from booking_scaling.decision import QUEUE_PAUSED, Decision
from booking_scaling.policy import Policy, PolicyError
from booking_scaling.pressure import AcceptPath, LatencyBudget

GROUP = "scaling.booking-platform.io"
VERSION = "v1alpha1"
PLURAL = "queuescalers"
CONDITION_TYPES = ("Ready", "Active", "Fallback", "Paused", "ScaleUpHeld", "PromiseKept")


class SpecError(ValueError):
    """The spec cannot be acted on; the message names the field."""


@dataclass(frozen=True)
class ScalerSpec:
    """A QueueScaler's spec, validated: what to scale, on which queues, how."""

    target: str
    queues: tuple[str, ...]
    secret_name: str
    secret_key: str
    redis_namespace: str
    policy: Policy
    #: Where the API's latency is read (spec.acceptPath); no metricsUrl: nothing is held.
    budget: LatencyBudget = LatencyBudget()


@dataclass(frozen=True)
class Readiness:
    """Whether the scaler can act at all (the Ready condition), and why not."""

    ok: bool
    reason: str
    message: str


READY = Readiness(True, "Scaling", "the target is scaled on its queues' backlog")


def parse_spec(spec: Mapping[str, Any]) -> ScalerSpec:
    """Validate a spec as the CRD's schema would, plus what the schema cannot say."""
    target = (spec.get("scaleTargetRef") or {}).get("name")
    if not isinstance(target, str) or not target:
        raise SpecError("scaleTargetRef.name is required")
    queues = spec.get("queues")
    if not isinstance(queues, list) or not queues or not all(isinstance(q, str) and q for q in queues):
        raise SpecError("queues must be a non-empty list of queue names")
    redis = spec.get("redis") or {}
    ref = redis.get("urlSecretRef") or {}
    if not ref.get("name") or not ref.get("key"):
        raise SpecError("redis.urlSecretRef.name and redis.urlSecretRef.key are required")
    try:
        policy = Policy.from_spec(spec)
        budget = LatencyBudget.from_spec(spec.get("acceptPath"))
    except PolicyError as e:
        raise SpecError(str(e)) from None
    return ScalerSpec(
        target=target,
        queues=tuple(dict.fromkeys(queues)),
        secret_name=ref["name"],
        secret_key=ref["key"],
        redis_namespace=redis.get("namespace") or "dramatiq",
        policy=policy,
        budget=budget,
    )


def hpa_conflicts(hpas: Iterable[Mapping[str, Any]], target: str) -> list[str]:
    """Names of HorizontalPodAutoscalers (KEDA's included) that already scale Deployment `target`."""
    names = []
    for hpa in hpas:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        group = str(ref.get("apiVersion", "apps/v1")).split("/")[0]
        if ref.get("kind") == "Deployment" and ref.get("name") == target and group in ("apps", "extensions"):
            names.append(hpa.get("metadata", {}).get("name", "?"))
    return sorted(names)


def iso(ts: float) -> str:
    """A Unix time as Kubernetes writes times (RFC 3339, UTC, seconds)."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> float | None:
    """The Unix time of an RFC 3339 string, or None for absent or malformed."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def backlog_status(backlog: Backlog, depths: Iterable[Any]) -> dict[str, Any]:
    """`status.backlog` (summed) and `status.queues` (per queue) for a readable backlog."""
    return {
        "backlog": {
            "ready": backlog.ready, "inFlight": backlog.in_flight, "delayed": backlog.delayed,
            "delayedDue": backlog.due, "dead": backlog.dead, "load": backlog.load,
        },
        "queues": [
            {"name": d.queue, "ready": d.ready, "inFlight": d.in_flight, "delayed": d.delayed,
             "delayedDue": d.delayed if d.delayed_due is None else d.delayed_due, "dead": d.dead}
            for d in depths
        ],
    }


def _held(decision: Decision | None, signal: AcceptPath | None, policy: Policy | None) -> tuple[str, str, str]:
    """(status, reason, message) of ScaleUpHeld: True while the accept path or a queue pause holds a scale-up."""
    if decision is not None and decision.held == QUEUE_PAUSED:
        return "True", "QueuePaused", ("every queue of this pool is paused (its workers report it in Redis); "
                                       "more workers would only idle until it is resumed")
    if decision is not None and decision.held is not None:
        return "True", "AcceptPathOverBudget", decision.held
    if signal is None:
        return "False", "NoLatencySignal", "spec.acceptPath.metricsUrl is not set (or the poll stopped before it)"
    if policy is not None and not policy.protect_accept_path:
        return "False", "ProtectionOff", f"spec.protectAcceptPath is false; {signal.reason}"
    if signal.saturated:
        return "False", "NothingToHold", f"no scale-up wanted; {signal.reason}"
    return "False", "AcceptPathWithinBudget", signal.reason


def conditions(
    readiness: Readiness, backlog: Backlog | None, policy: Policy | None, decision: Decision | None, paused: bool,
    signal: AcceptPath | None = None,
) -> list[dict[str, str]]:
    """The five conditions (without times) for one poll's outcome."""
    if backlog is None or backlog.error is not None or policy is None:
        active = ("Unknown", "BacklogUnknown", "the backlog was not read")
    elif backlog.load > policy.activation_backlog:
        active = ("True", "BacklogAboveActivation", f"{backlog.describe()} > activationBacklog "
                                                      f"{policy.activation_backlog}")
    else:
        active = ("False", "BacklogAtOrBelowActivation", f"{backlog.describe()} <= activationBacklog "
                                                          f"{policy.activation_backlog}")
    if backlog is not None and backlog.error is not None:
        fallback = ("True", "BacklogUnreadable", decision.reason if decision else backlog.describe())
    else:
        fallback = ("False", "BacklogRead", "the backlog is being read")
    pause = ("True", "Paused", "spec.paused is true: replicas are left as they are") if paused \
        else ("False", "NotPaused", "spec.paused is false")
    ready = ("True" if readiness.ok else "False", readiness.reason, readiness.message)
    return [
        {"type": kind, "status": s, "reason": r, "message": m}
        for kind, (s, r, m) in zip(CONDITION_TYPES, (ready, active, fallback, pause,
                                                     _held(decision, signal, policy),
                                                     _promise(decision, policy)), strict=True)
    ]


def _promise(decision: Decision | None, policy: Policy | None) -> tuple[str, str, str]:
    """(status, reason, message) of PromiseKept: can the desired replicas keep spec.maxAge, as the model sees it?"""
    if policy is None or policy.max_age is None:
        return "Unknown", "NoMaxAge", "spec.maxAge is not set: scaled on targetBacklogPerReplica"
    view = decision.promise if decision is not None else None
    if view is None:
        return "Unknown", "NoAgeReading", "no age was read this poll: scaled on targetBacklogPerReplica"
    if view.oldest_age > view.max_age:
        return "False", "OldestOverMaxAge", (f"the oldest task has waited {view.oldest_age:.0f}s, over maxAge "
                                             f"{view.max_age:g}s; {decision.reason}")
    if not view.feasible:
        return "False", "MaxReplicasTooFew", f"maxReplicaCount cannot keep maxAge {view.max_age:g}s; {decision.reason}"
    return "True", "WithinMaxAge", decision.reason


def promise_status(decision: Decision) -> dict[str, Any] | None:
    """`status.promise`: what the last decision saw and predicted under spec.maxAge (None: no promise view)."""
    view = decision.promise
    if view is None:
        return None
    return {
        "maxAge": view.max_age, "oldestAgeSeconds": round(view.oldest_age, 1),
        "throughputPerReplica": round(view.per_replica, 4), "throughputMeasured": view.measured,
        "arrivalsPerSecond": round(view.arrivals, 3), "podStartSeconds": round(view.start_latency, 1),
        "predictedDrainSeconds": -1 if view.drain_seconds == float("inf") else round(view.drain_seconds, 1),
    }


def merge_conditions(old: Iterable[Mapping[str, Any]] | None, new: list[dict[str, str]], now: float) -> list[dict]:
    """`new` with lastTransitionTime kept from `old` where a condition's status did not change."""
    before = {c.get("type"): c for c in old or ()}
    merged = []
    for cond in new:
        prev = before.get(cond["type"])
        since = prev.get("lastTransitionTime") if prev and prev.get("status") == cond["status"] else None
        merged.append({**cond, "lastTransitionTime": since or iso(now)})
    return merged


def warnings_to_post(old: Iterable[Mapping[str, Any]] | None, new: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(reason, message) Warning Events for problems that began (or changed) with this poll."""
    before = {c.get("type"): c for c in old or ()}
    out = []
    for cond in new:
        bad = (cond["type"] in ("Ready", "PromiseKept") and cond["status"] == "False") or (
            cond["type"] in ("Fallback", "ScaleUpHeld") and cond["status"] == "True")
        prev = before.get(cond["type"], {})
        if bad and (prev.get("status") != cond["status"] or prev.get("reason") != cond["reason"]):
            out.append((cond["reason"], cond["message"]))
    return out


def scale_event(target: str, decision: Decision) -> tuple[str, str]:
    """(reason, message) of the Normal Event posted for a change of replicas."""
    reason = "ScaledUp" if decision.desired > decision.current else "ScaledDown"
    return reason, f"Deployment {target} {decision.current}→{decision.desired}: {decision.reason}"
