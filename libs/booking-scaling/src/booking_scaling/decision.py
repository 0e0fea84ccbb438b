"""decide(): backlog, replicas, policy, remembered state and time in; desired replicas out.

Pure and deterministic: no clock, no I/O.  The kopf operator calls it for a
Deployment's replicas, the local supervisor for a pool of worker processes;
each keeps the returned `new_state` and hands it back on its next call.

Rules, in the order they apply (each fixes a complaint about KEDA's scaler):
  * paused: nothing changes at all;
  * unreadable backlog: hold the current count, or fallbackReplicas, and never
    go to zero on a guess;
  * recommendation, with maxAge and an age reading: the fewest replicas that keep
    the oldest waiting task within maxAge in booking_scaling.promise's model, from
    the smoothed throughput per replica and arrival rate (`Observed.completed`),
    the pod start latency and the oldest task's age; a scale-down recommendation
    and a scale-up go to the count that keeps the promise with the throughput
    `tolerance` lower, so a pool at the edge does not flap and a rising load is
    not followed one replica per poll; a scale-up is sized for the last poll
    interval's arrival rate when it is above the smoothed one (which lags a rising
    load), though only the smoothed rate decides whether to scale up at all, so
    one busy poll adds nothing; the pool is also active while a ready task is old enough that
    a replica must start now to keep it;
  * otherwise (no maxAge, or no age read), the depth target:
    recommendation = ceil(load / targetBacklogPerReplica), where load counts
    ready, in-flight, due-delayed and orphaned messages, not just the ready list;
    kept at the current count within `tolerance`; 0 while not active
    (load <= activationBacklog); at least 1 while any message is in flight,
    delayed and due (within delayedLeadSeconds, when the reader knows) or
    orphaned; within [min, max];
  * up: at once, at most scaleUp.maxStep per decision;
  * down: to the highest recommendation of the last stabilizationWindowSeconds
    (the window starts with the current count when the scaler starts, so a
    restart never scales down on one reading), at most scaleDown.maxStep; on the
    promise only once that highest recommendation is more than `tolerance` below
    the current count (a scale-up lands a tolerance above the need, so the band
    is the same both ways, and a falling load is not followed poll by poll);
  * at most one scale-down per scaleDown.periodSeconds (when set): a drained
    backlog's recommendations fall poll by poll, and the window's highest with
    them, so without it a pool followed them down in a staircase of small steps;
  * zero: only from one replica (never N -> 0), and only cooldownPeriod after
    the pool was last active;
  * finally min/max always, and >= 1 while busy;
  * queue paused by an operator (booking_core.queues.pauses; the caller passes `queue_paused`):
    no scale-up beyond minReplicaCount, held with the reason "queue paused"
    (paused workers start no message, so more of them would only idle);
    scale-down goes on as usual, and the scale-up comes at once on resume;
  * accept path saturated (and protectAcceptPath): no scale-up beyond the floor
    (min, and 1 while busy or active, so a backlog never starves), and a pool
    above the floor sheds one replica per decision: workers started while the
    API was idle otherwise keep competing with it for the CPU and the database
    when the users arrive (issue 9: eight worker processes left the accept path
    half its capacity, three kept three quarters).  One at a time, so a short
    spike costs one replica, not the pool; scale-down goes on as usual (the
    lower of the two wins), and the window keeps the real recommendation, so
    the scale-up comes at once when the API is within its budget again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from booking_scaling.backlog import Backlog
from booking_scaling.policy import Policy
from booking_scaling.pressure import AcceptPath
from booking_scaling.promise import Model, Observed, Rates, estimate, plan

Action = Literal["scale_up", "scale_down", "hold", "paused", "fallback"]
#: Decision.held when the queue itself is paused by an operator.
QUEUE_PAUSED = "queue paused"


@dataclass(frozen=True)
class ScalerState:
    """What a scaler remembers between decisions (times in the caller's clock, seconds)."""

    #: Time of the first readable backlog: the window and the cooldown start no earlier.
    observed_since: float | None = None
    #: Last time the load exceeded activationBacklog.
    last_active: float | None = None
    #: (time, recommendation) pairs still inside the stabilization window, oldest first.
    recommendations: tuple[tuple[float, int], ...] = field(default=())
    #: The smoothed throughput and arrival estimates (None: no completion count seen yet).
    rates: Rates | None = None
    #: When the pool was last scaled down (for scaleDown.periodSeconds; None: not since the scaler started).
    last_scale_down: float | None = None


@dataclass(frozen=True)
class PromiseView:
    """What the promise's recommendation was computed from, and what it predicts (for status and Events)."""

    max_age: float
    oldest_age: float
    #: Tasks/s per busy replica used (the floor until measured).
    per_replica: float
    #: True when per_replica is a measurement, False when it is the policy's floor.
    measured: bool
    arrivals: float
    start_latency: float
    #: Seconds the waiting tasks take to start with the recommended replicas (inf: never).
    drain_seconds: float
    #: False when even maxReplicaCount cannot keep the promise in the model.
    feasible: bool


@dataclass(frozen=True)
class Decision:
    """The outcome: how many replicas, why (in words), and the state to remember."""

    desired: int
    current: int
    reason: str
    action: Action
    new_state: ScalerState
    #: Load above activationBacklog (None when the backlog could not be read).
    active: bool | None = None
    #: This reading's own recommendation, before stabilization and step limits.
    recommendation: int | None = None
    #: Why a scale-up was held: QUEUE_PAUSED, or the accept path's reason (None: nothing was held).
    held: str | None = None
    #: The promise's inputs and prediction when maxAge decided (None: the depth target did).
    promise: PromiseView | None = None

    @property
    def changed(self) -> bool:
        """True when the actuator has something to do."""
        return self.desired != self.current


def decide(backlog: Backlog, current_replicas: int, policy: Policy, state: ScalerState, now: float,
           accept_path: AcceptPath | None = None, *, queue_paused: bool = False,
           observed: Observed | None = None) -> Decision:
    """Desired replicas for a pool now running `current_replicas`, given this reading.

    `accept_path` is the API's latency signal (None: not measured, nothing held);
    `queue_paused` is True while an operator has paused the pool's queue;
    `observed` is the oldest task's age, the completion count and the start latency
    the promise (policy.max_age) is kept with (None: the depth target decides).
    """
    current = current_replicas
    if current < 0:
        raise ValueError(f"current_replicas must be >= 0, got {current}")
    if policy.paused:
        return Decision(current, current, f"paused: replicas left at {current}", "paused", state)
    if backlog.error is not None:
        return _on_read_error(backlog, current, policy, state, now)

    if state.observed_since is None:
        # A fresh scaler has seen no history: treat the current count as recommended
        # a moment ago, so scale-down waits a full window and scale-to-zero a cooldown.
        state = ScalerState(observed_since=now, last_active=state.last_active, recommendations=((now, current),))
    observed = observed or Observed()
    rates = state.rates
    if observed.completed is not None:
        serving = current if observed.serving is None else min(observed.serving, current)
        rates = estimate(rates, now, observed.completed, backlog.load, backlog.ready, serving,
                         policy.throughput_half_life_seconds, in_flight=backlog.in_flight,
                         concurrency=policy.replica_concurrency)
    model = _model(backlog, current, policy, observed, rates)
    active = backlog.load > policy.activation_backlog or (
        model is not None and backlog.ready > 0 and model.oldest_age + model.start >= model.deadline)
    last_active = now if active else state.last_active
    if model is not None:
        rec, basis, view = _recommend_promise(backlog, current, policy, active, model, rates)
    else:
        (rec, basis), view = _recommend(backlog, current, policy, active), None
    window = policy.stabilization_window_seconds
    history = _remember(state, policy, now, rec)
    new_state = replace(state, last_active=last_active, recommendations=history, rates=rates)
    stabilized = max(r for _, r in history)

    if rec > current:
        desired, action = rec, "scale_up"
        if policy.scale_up_max_step is not None:
            desired = min(desired, current + policy.scale_up_max_step)
        note = "" if desired == rec else f" (scaleUp.maxStep {policy.scale_up_max_step})"
        what = f"scaled up {current}→{desired}{note}"
    elif stabilized < current and view is not None and stabilized > current * (1 - policy.tolerance):
        # The promise's hysteresis: a scale-up lands a tolerance above the need, so a scale-down waits until even
        # the window's highest recommendation is a tolerance below the count.  Without it a falling load was
        # followed down a replica or two per poll (300 of an invoice pool's 335 events on a simulated day).
        desired, action = current, "hold"
        what = (f"holding {current} (highest recommendation in the last {window:g}s: {stabilized}, within "
                f"tolerance {policy.tolerance:g})")
    elif stabilized < current and (wait := _down_period_left(policy, state, now)) > 0:
        desired, action = current, "hold"
        what = (f"holding {current} (highest recommendation in the last {window:g}s: {stabilized}; "
                f"scaleDown.periodSeconds: {wait:.0f}s left since the last scale-down)")
    elif stabilized < current:
        desired, action = stabilized, "scale_down"
        if policy.scale_down_max_step is not None:
            desired = max(desired, current - policy.scale_down_max_step)
        note = "" if desired == stabilized else f", scaleDown.maxStep {policy.scale_down_max_step}"
        what = f"scaled down {current}→{desired} (highest recommendation in the last {window:g}s: {stabilized}{note})"
    else:
        desired, action = current, "hold"
        what = f"holding {current}"
        if rec < current:
            what += f" (highest recommendation in the last {window:g}s: {stabilized})"

    if desired == 0 and current > 0:
        quiet_since = max(last_active if last_active is not None else -math.inf, new_state.observed_since)
        left = policy.cooldown_period - (now - quiet_since)
        if current > 1:
            desired, what = 1, f"scaled down {current}→1 (the last step to zero is taken from one replica)"
        elif left > 0:
            desired, action, what = 1, "hold", f"holding 1 (cooldownPeriod: {left:.0f}s left before zero)"
        else:
            what = f"scaled down 1→0 (idle for {now - quiet_since:.0f}s, cooldownPeriod {policy.cooldown_period:g}s)"

    final = policy.clamp(desired)
    if backlog.busy:
        final = max(final, 1)
    if final != desired:
        action = "scale_up" if final > current else "scale_down" if final < current else "hold"
        what = f"{what}; clamped to {final} (min {policy.min_replica_count}, max {policy.max_replica_count})"
    held = None
    if final > current and queue_paused:
        held_at = max(current, policy.min_replica_count)
        if held_at < final:
            held = QUEUE_PAUSED
            what = (f"scale-up to {final} held at {held_at}: {QUEUE_PAUSED}" if held_at == current else
                    f"scaled up {current}→{held_at} only (minReplicaCount); scale-up to {final} held: "
                    f"{QUEUE_PAUSED}")
            final, action = held_at, "hold" if held_at == current else "scale_up"
    if accept_path is not None and accept_path.saturated and policy.protect_accept_path:
        floor = max(policy.min_replica_count, 1 if backlog.busy or active else 0)
        # One below the current count, never below the floor (which may be above it: then up to the floor).
        shed_to = max(current - 1, floor)
        if shed_to < final:
            held = accept_path.reason
            budget = f"accept path over its latency budget ({held})"
            if final == current:
                what = f"scaled down {current}→{shed_to} (shedding one replica): {budget}"
            elif shed_to < current:
                what = f"scaled down {current}→{shed_to} (shedding one replica); scale-up to {final} held: {budget}"
            elif shed_to == current:
                what = f"scale-up to {final} held at {shed_to}: {budget}"
            else:
                what = f"scaled up {current}→{shed_to} only (the floor); scale-up to {final} held: {budget}"
            final = shed_to
            action = "hold" if final == current else "scale_up" if final > current else "scale_down"
    if final < current and desired < current:
        # The scaler's own scale-down (not a shed replica: the hold leaves the state as it would be without it).
        new_state = replace(new_state, last_scale_down=now)
    reason = f"{backlog.describe()}; {basis} → {rec}; {what}"
    return Decision(final, current, reason, action, new_state, active=active, recommendation=rec, held=held,
                    promise=view)


def _down_period_left(policy: Policy, state: ScalerState, now: float) -> float:
    """Seconds before scaleDown.periodSeconds allows another scale-down (0: now)."""
    if policy.scale_down_period_seconds is None or state.last_scale_down is None:
        return 0.0
    return max(0.0, policy.scale_down_period_seconds - (now - state.last_scale_down))


def _model(backlog: Backlog, current: int, policy: Policy, observed: Observed, rates: Rates | None) -> Model | None:
    """The promise's model of this reading, or None when the depth target decides (no maxAge or no age)."""
    if policy.max_age is None or observed.oldest_age is None:
        return None
    floor = policy.min_throughput_per_replica
    measured = rates.per_replica if rates is not None else None
    serving = current if observed.serving is None else min(observed.serving, current)
    return Model(
        # Orphaned messages go back to the ready list's head when Dramatiq requeues them; rows
        # waiting in the outbox (the fair order) are ready work the relay has not published yet.
        ready=backlog.ready + backlog.orphaned + backlog.outbox, due=backlog.due,
        oldest_age=max(0.0, observed.oldest_age),
        arrivals=(rates.arrivals or 0.0) if rates is not None else 0.0,
        per_replica=max(floor, measured) if measured is not None else floor, serving=serving,
        start=policy.pod_start_seconds if observed.start_latency is None else max(0.0, observed.start_latency),
        deadline=policy.max_age - policy.polling_interval, poll=policy.polling_interval,
    )


def _recommend_promise(backlog: Backlog, current: int, policy: Policy, active: bool, model: Model,
                       rates: Rates | None) -> tuple[int, str, PromiseView]:
    """The fewest replicas keeping maxAge in the model, the words that explain it, and what it saw."""
    assert policy.max_age is not None
    measured = rates is not None and rates.per_replica is not None and rates.per_replica >= model.per_replica
    how = "measured" if measured else "floor, not measured yet"
    seen = (f"oldest {model.oldest_age:.0f}s of maxAge {policy.max_age:g}s, {model.per_replica:.3g} tasks/s per "
            f"replica ({how}), arrivals {model.arrivals:.3g}/s, pod start {model.start:.0f}s")
    low, high = policy.min_replica_count, policy.max_replica_count
    if not active:
        found = plan(model, low, high)
        raw, basis = 0, f"{seen}; not above activationBacklog {policy.activation_backlog}"
    else:
        found = plan(model, low, high)
        raw = found.replicas
        surge = None
        if raw > current and rates is not None and rates.recent is not None and rates.recent > model.arrivals:
            surge = rates.recent
        if raw != current and (policy.tolerance > 0 or surge is not None):
            # A change goes to (down: only as far as) the count that keeps the promise with a tolerance's worth
            # less throughput: a pool at the edge does not flap, and a rising load is not followed poll by poll.
            # A scale-up is sized for the last interval's arrivals when they are higher: the smoothed rate lags a
            # rising load by its half-life, and sized on it the pool climbed a step a poll behind an import.
            margin = replace(model, per_replica=model.per_replica * (1 - policy.tolerance),
                             arrivals=model.arrivals if surge is None else surge)
            sized = plan(margin, raw, high).replicas
            raw = min(current, sized) if raw < current else sized
        if found.feasible:
            drain = "keeps no backlog" if found.drain_seconds == 0 else \
                f"start the waiting tasks in {found.drain_seconds:.0f}s"
            basis = f"{seen}; {found.replicas} keep the promise ({drain})"
        else:
            basis = f"{seen}; even maxReplicaCount {high} cannot keep the promise"
        if raw != found.replicas:
            basis += f", within tolerance {policy.tolerance:g}: {raw}"
            if surge is not None:
                basis += f" (sized for the last interval's arrivals, {surge:.3g}/s)"
    rec = policy.clamp(raw)
    if backlog.busy and rec < 1:
        rec, basis = 1, f"{basis}; at least 1 while messages are in flight, delayed or orphaned"
    view = PromiseView(policy.max_age, model.oldest_age, model.per_replica, measured, model.arrivals, model.start,
                       found.drain_seconds, found.feasible)
    return rec, basis, view


def _recommend(backlog: Backlog, current: int, policy: Policy, active: bool) -> tuple[int, str]:
    """This reading's replica count on its own, and the words that explain it."""
    target = policy.target_backlog_per_replica
    if not active:
        raw, basis = 0, f"not above activationBacklog {policy.activation_backlog}"
    else:
        raw = -(-backlog.load // target)
        basis = f"target {target}/replica"
        if current > 0 and abs(backlog.load / (current * target) - 1) <= policy.tolerance:
            raw, basis = current, f"{basis}, within tolerance {policy.tolerance:g} of {current}"
    rec = policy.clamp(raw)
    if rec != raw:
        bound = "maxReplicaCount" if rec < raw else "minReplicaCount"
        basis = f"{basis}: {raw}, {bound} {rec}"
    if backlog.busy and rec < 1:
        rec, basis = 1, f"{basis}; at least 1 while messages are in flight, delayed or orphaned"
    return rec, basis


def _remember(state: ScalerState, policy: Policy, now: float, replicas: int) -> tuple[tuple[float, int], ...]:
    """The recommendations still inside the stabilization window, plus `replicas` recommended `now`."""
    window = policy.stabilization_window_seconds
    return tuple((t, r) for t, r in state.recommendations if now - t < window) + ((now, replicas),)


def _on_read_error(backlog: Backlog, current: int, policy: Policy, state: ScalerState, now: float) -> Decision:
    """Unknown backlog: fallbackReplicas if set, else hold; never scale to zero on a guess.

    A fallback count is remembered as a recommendation of its moment, so the first
    readable backlog after it cannot undo it before the stabilization window has
    passed: without that, a Redis that answers every other poll flapped the pool
    between fallbackReplicas and the backlog's count at every poll.  Holding
    leaves the state as it was.
    """
    if policy.fallback_replicas is not None:
        target, how = policy.fallback_replicas, f"fallbackReplicas {policy.fallback_replicas}"
    else:
        target, how = current, f"holding {current}"
    # Never zero from a running pool: fallbackReplicas is validated >= 1, and clamping
    # a count >= 1 keeps it >= 1 because maxReplicaCount is >= 1.
    desired = policy.clamp(target)
    if desired != target:
        how += f", clamped to {desired}"
    new_state = state
    if policy.fallback_replicas is not None and state.observed_since is not None:
        new_state = replace(state, recommendations=_remember(state, policy, now, desired))
    return Decision(desired, current, f"{backlog.describe()}; {how}", "fallback", new_state)
