"""Properties of decide() over random policies and random sequences of readings.

Each test drives the core as an actuator would (the desired count becomes the
next current count) and checks one rule of issue 5 at every step, computed
from the readings themselves rather than from the core's own state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from booking_scaling.backlog import Backlog
from booking_scaling.decision import Decision, ScalerState, decide
from booking_scaling.policy import Policy
from booking_scaling.pressure import AcceptPath

# Every rule gets a few hundred random histories: cheap, because decide() is pure.
rule = settings(max_examples=300, deadline=None)


@st.composite
def policies(draw, paused: bool | None = False) -> Policy:
    """Any valid policy; `paused=None` lets hypothesis choose."""
    low = draw(st.integers(0, 3))
    high = draw(st.integers(max(low, 1), 8))
    return Policy(
        min_replica_count=low,
        max_replica_count=high,
        target_backlog_per_replica=draw(st.integers(1, 20)),
        activation_backlog=draw(st.integers(0, 5)),
        cooldown_period=draw(st.sampled_from([0, 10, 60, 300])),
        stabilization_window_seconds=draw(st.sampled_from([0, 5, 30, 60])),
        scale_up_max_step=draw(st.none() | st.integers(1, 3)),
        scale_down_max_step=draw(st.none() | st.integers(1, 3)),
        tolerance=draw(st.sampled_from([0.0, 0.1, 0.3])),
        fallback_replicas=draw(st.none() | st.integers(1, high)),
        paused=draw(st.booleans()) if paused is None else paused,
        protect_accept_path=draw(st.booleans()),
    )


backlogs = st.builds(
    Backlog,
    ready=st.integers(0, 200),
    in_flight=st.integers(0, 10),
    delayed=st.integers(0, 5),
    orphaned=st.integers(0, 2),
    dead=st.integers(0, 5),
)
readings = st.one_of(
    st.just(Backlog()),  # idle: drains happen often
    backlogs,
    backlogs.map(lambda b: Backlog(delayed=b.delayed, delayed_due=min(b.delayed, b.dead), ready=b.ready)),
    st.sampled_from(["Connection refused", "Timeout reading from socket"]).map(Backlog.unreadable),
)
# Gaps around the policies' windows and cooldowns find their edges; floats find the rest.
gaps = st.sampled_from([1.0, 5.0, 10.0, 30.0, 59.0, 61.0, 120.0, 301.0]) | st.floats(0.5, 90, allow_nan=False)
steps = st.lists(st.tuples(gaps, readings), min_size=1, max_size=40)


@dataclass
class Step:
    """One decision in context: when, on what reading, from how many replicas."""

    now: float
    backlog: Backlog
    current: int
    decision: Decision


def simulate(policy: Policy, start: int, sequence: list[tuple[float, Backlog]]) -> list[Step]:
    """Run the sequence, applying every decision as the next current count."""
    now, current, state, out = 0.0, start, ScalerState(), []
    for dt, backlog in sequence:
        now += dt
        decision = decide(backlog, current, policy, state, now)
        out.append(Step(now, backlog, current, decision))
        state, current = decision.new_state, decision.desired
    return out


def observed(history: list[Step]) -> list[Step]:
    """Steps whose reading the core took into account (not paused, not unreadable)."""
    return [s for s in history if s.backlog.error is None and s.decision.action != "paused"]


def lower_bound(policy: Policy, backlog: Backlog) -> int:
    """The least the core may recommend for this reading, tolerance included."""
    if backlog.load > policy.activation_backlog:
        need = math.ceil(backlog.load / (policy.target_backlog_per_replica * (1 + policy.tolerance)) - 1e-9)
    else:
        need = 0
    need = policy.clamp(need)
    return max(need, 1) if backlog.busy else need


starts = st.sampled_from([0, 1, 2]) | st.integers(0, 10)


@rule
@given(policies(paused=None), starts, steps)
def test_desired_is_always_within_min_and_max_unless_paused(policy, start, sequence):
    for step in simulate(policy, start, sequence):
        if not policy.paused:
            assert policy.min_replica_count <= step.decision.desired <= policy.max_replica_count


@rule
@given(policies(paused=True), starts, steps)
def test_paused_changes_nothing(policy, start, sequence):
    for step in simulate(policy, start, sequence):
        assert step.decision.desired == step.current == start
        assert step.decision.new_state == ScalerState()


@rule
@given(policies(), starts, steps)
def test_never_below_one_while_anything_is_in_flight_delayed_or_orphaned(policy, start, sequence):
    for step in observed(simulate(policy, start, sequence)):
        if step.backlog.busy:
            assert step.decision.desired >= 1


@rule
@given(policies(), starts, steps)
def test_read_error_holds_or_falls_back_and_never_goes_to_zero(policy, start, sequence):
    for step in simulate(policy, start, sequence):
        if step.backlog.error is None:
            continue
        target = policy.fallback_replicas if policy.fallback_replicas is not None else step.current
        expected = policy.clamp(target)
        if step.current > 0:
            expected = max(expected, 1)
        assert step.decision.desired == expected
        assert step.decision.action == "fallback"


@rule
@given(policies(), starts, steps)
def test_zero_is_reached_only_from_one_replica(policy, start, sequence):
    for step in simulate(policy, start, sequence):
        if step.current > 1:
            assert step.decision.desired >= 1


@rule
@given(policies(), starts, steps)
def test_zero_only_after_cooldown_since_the_last_active_reading(policy, start, sequence):
    history = simulate(policy, start, sequence)
    seen = observed(history)
    for step in seen:
        if step.decision.desired == 0 and step.current > 0:
            assert step.now - seen[0].now >= policy.cooldown_period
            for earlier in seen:
                if step.now - earlier.now < policy.cooldown_period and earlier.now <= step.now:
                    assert earlier.backlog.load <= policy.activation_backlog


@rule
@given(policies(), starts, steps)
def test_scale_up_is_immediate_within_the_step_limit(policy, start, sequence):
    for step in observed(simulate(policy, start, sequence)):
        need = lower_bound(policy, step.backlog)
        if need > step.current:
            step_cap = step.current + (policy.scale_up_max_step or need)
            assert step.decision.desired >= min(need, step_cap)


@rule
@given(policies(), starts, steps)
def test_steps_are_limited_when_within_bounds(policy, start, sequence):
    for step in observed(simulate(policy, start, sequence)):
        if not policy.min_replica_count <= step.current <= policy.max_replica_count:
            continue  # the clamp brings it back at once, whatever the steps
        change = step.decision.desired - step.current
        if policy.scale_up_max_step is not None:
            assert change <= policy.scale_up_max_step
        if policy.scale_down_max_step is not None:
            assert -change <= policy.scale_down_max_step


@rule
@given(policies(), starts, steps)
@example(  # a fallback count undone 2 s into a 5 s window (a fresh-clone run, 2026-12-01)
    Policy(min_replica_count=0, max_replica_count=1, target_backlog_per_replica=1, cooldown_period=0,
           stabilization_window_seconds=5, tolerance=0.0, fallback_replicas=1, protect_accept_path=False),
    0, [(1.0, Backlog()), (1.0, Backlog.unreadable("Connection refused")), (1.0, Backlog())])
def test_scale_down_only_after_the_window_and_never_below_its_readings(policy, start, sequence):
    seen = observed(simulate(policy, start, sequence))
    window = policy.stabilization_window_seconds
    for step in seen:
        if step.decision.desired >= step.current or step.current > policy.max_replica_count:
            continue
        assert step.now - seen[0].now >= window
        for earlier in seen:
            if earlier.now <= step.now and step.now - earlier.now < window:
                assert step.decision.desired >= lower_bound(policy, earlier.backlog)


@settings(max_examples=100, deadline=None)
@given(policies(), starts, steps)
def test_an_idle_pool_drains_to_min(policy, start, sequence):
    quiet = [(10.0, Backlog())] * (2 * policy.max_replica_count + 80)
    history = simulate(policy, start, sequence + quiet)
    assert history[-1].decision.desired == policy.min_replica_count


@settings(max_examples=100, deadline=None)
@given(policies(), starts, steps, st.integers(1, 300))
def test_a_steady_load_settles_on_the_computed_count(policy, start, sequence, ready):
    steady = [(10.0, Backlog(ready=ready))] * (2 * policy.max_replica_count + 40)
    final = simulate(policy, start, sequence + steady)[-1].decision.desired
    exact = policy.clamp(math.ceil(ready / policy.target_backlog_per_replica)) if ready > policy.activation_backlog \
        else policy.min_replica_count
    if final != exact:  # only the tolerance may keep it elsewhere
        assert abs(ready / (final * policy.target_backlog_per_replica) - 1) <= policy.tolerance


# -- the accept path's latency budget (issue 9) -----------------------------------------
signals = st.none() | st.builds(AcceptPath, st.booleans(), st.sampled_from(["p99 180 ms", "p99 3 ms"]))
protected = st.lists(st.tuples(gaps, readings, signals), min_size=1, max_size=40)


def simulate_with_signal(policy: Policy, start: int, sequence) -> list[tuple[Step, Decision]]:
    """Like simulate(), with an accept-path signal per reading; each step paired with the decision
    the core would have taken from the same state without the signal."""
    now, current, state, out = 0.0, start, ScalerState(), []
    for dt, backlog, signal in sequence:
        now += dt
        decision = decide(backlog, current, policy, state, now, accept_path=signal)
        unprotected = decide(backlog, current, policy, state, now)
        out.append((Step(now, backlog, current, decision), unprotected))
        state, current = decision.new_state, decision.desired
    return out


def floor(policy: Policy, step: Step) -> int:
    """The least a held decision may leave: min, and 1 while work is in flight, due or active."""
    busy = step.backlog.error is None and (step.backlog.busy or step.backlog.load > policy.activation_backlog)
    return max(policy.min_replica_count, 1 if busy else 0)


@rule
@given(policies(), starts, protected)
def test_saturated_never_scales_up_past_the_floor_and_sheds_one_at_a_time(policy, start, sequence):
    for step, _ in simulate_with_signal(policy, start, sequence):
        if step.decision.held is not None:
            low = floor(policy, step)
            assert step.decision.desired == (step.current - 1 if step.current > low else low)


@rule
@given(policies(), starts, protected)
def test_a_held_decision_never_goes_below_the_in_flight_floor(policy, start, sequence):
    for step, _ in simulate_with_signal(policy, start, sequence):
        if step.backlog.error is None and step.backlog.busy:
            assert step.decision.desired >= 1
        if step.decision.held is not None:
            assert step.decision.desired >= floor(policy, step)


@rule
@given(policies(), starts, protected)
def test_the_signal_only_ever_lowers_the_count_by_one_at_most_and_is_named(policy, start, sequence):
    for step, unprotected in simulate_with_signal(policy, start, sequence):
        d = step.decision
        assert d.new_state == unprotected.new_state  # the window keeps the real recommendation
        if d.held is None:
            assert (d.desired, d.action) == (unprotected.desired, unprotected.action)
        else:
            assert d.desired < unprotected.desired or d.desired < step.current
            assert d.desired >= min(step.current, floor(policy, step)) and d.desired >= step.current - 1
            assert d.held in d.reason


@rule
@given(policies(), starts, protected)
def test_only_a_saturated_signal_with_protection_on_holds(policy, start, sequence):
    for (step, _), (_, _, signal) in zip(simulate_with_signal(policy, start, sequence), sequence, strict=True):
        if step.decision.held is not None:
            assert signal is not None and signal.saturated and policy.protect_accept_path
            assert step.decision.held == signal.reason
