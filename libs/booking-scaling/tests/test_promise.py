"""The promise (maxAge): named cases, and hypothesis properties of the model and of decide() with it.

The model's promise is checked by an independent computation: every task's start
is found by stepping time and counting capacity, not by the model's own breakpoints.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from booking_scaling.backlog import Backlog
from booking_scaling.decision import ScalerState, decide
from booking_scaling.policy import Policy, PolicyError
from booking_scaling.promise import Model, Observed, Rates, estimate, plan

PROMISE = Policy(min_replica_count=0, max_replica_count=50, target_backlog_per_replica=10, polling_interval=5,
                 max_age=30, pod_start_seconds=20, min_throughput_per_replica=0.5, stabilization_window_seconds=60)


def measured(per_replica: float, arrivals: float, serving: int) -> ScalerState:
    """A state whose estimates were measured already (as after some polls)."""
    return ScalerState(observed_since=-1000, rates=Rates(-5, 0, 0, 0, serving, per_replica, arrivals, 0.0))


# -- named cases -------------------------------------------------------------------------------------
def test_without_an_age_reading_the_depth_target_decides():
    d = decide(Backlog(ready=47, in_flight=3), 0, PROMISE, ScalerState(), 0)
    assert (d.desired, d.promise) == (5, None)
    assert "target 10/replica" in d.reason


def test_the_promise_sizes_by_work_not_count():
    """Forty fast tasks need fewer replicas than forty slow ones, at the same age."""
    seen = Observed(oldest_age=5, completed=0, serving=2, start_latency=20)
    fast = decide(Backlog(ready=40), 2, PROMISE, measured(10.0, 1.0, 2), 0, observed=seen)
    slow = decide(Backlog(ready=40), 2, PROMISE, measured(0.6, 1.0, 2), 0, observed=seen)
    assert fast.recommendation == 1  # 10 tasks/s start 40 in 4 s
    assert slow.recommendation > 4
    assert slow.promise is not None and slow.promise.feasible
    assert "oldest 5s of maxAge 30s" in slow.reason and "keep the promise" in slow.reason


def test_an_older_task_and_a_slower_start_need_more_replicas():
    state = measured(1.0, 0.5, 2)
    seen = {"start_latency": 5}  # no completion count: the state's estimates stand
    young = decide(Backlog(ready=60), 2, PROMISE, state, 0, observed=Observed(oldest_age=2, **seen))
    old = decide(Backlog(ready=60), 2, PROMISE, state, 0, observed=Observed(oldest_age=40, **seen))
    slow_start = decide(Backlog(ready=60), 2, PROMISE, state, 0,
                        observed=Observed(oldest_age=2, completed=0, start_latency=24))
    assert young.desired < old.desired
    assert young.desired < slow_start.desired


def test_throughput_is_learnt_from_completions_while_work_waits():
    policy = replace(PROMISE, throughput_half_life_seconds=5)
    state, current = ScalerState(), 4
    # 4 replicas finish 8 tasks/s while work waits: 2 tasks/s each.
    for i in range(30):
        d = decide(Backlog(ready=100), current, policy, state, i * 5.0,
                   observed=Observed(oldest_age=3, completed=40 * i, serving=4))
        state = d.new_state
    assert state.rates is not None and state.rates.per_replica == pytest.approx(2.0, rel=0.01)
    assert d.promise is not None and d.promise.measured


def test_an_idle_pools_completions_say_nothing_about_its_speed():
    """Nothing waits: 4 replicas finishing 1 task/s in all could do far more; the estimate keeps its value."""
    rates = estimate(Rates(0, 0, 0, 0, 4, 2.0, 1.0, 0.25), 10, 10, 0, 0, 4, 60)
    assert rates.per_replica == 2.0
    faster = estimate(Rates(0, 0, 0, 0, 4, 0.1, 1.0, 0.25), 10, 10, 0, 0, 4, 60)
    assert faster.per_replica == 0.25  # but a replica did at least that much, smoothed


def test_with_the_concurrency_a_pool_never_saturated_is_measured_by_its_busy_threads():
    """8 threads a replica, 2 busy on average, 4 tasks/s done: a fully busy replica does 16/s, not the 4/s it did."""
    rates = Rates(0, 0, 0, 0, 1, in_flight=2)
    after = estimate(rates, 10, 40, 0, 0, 1, 60, in_flight=2, concurrency=8)
    assert after.per_replica == pytest.approx(16.0)
    assert estimate(rates, 10, 40, 0, 0, 1, 60, in_flight=2).per_replica == pytest.approx(4.0)


def test_a_restarted_counter_starts_a_new_interval():
    rates = estimate(Rates(0, 500, 10, 10, 4, 2.0, 3.0, 1.0), 5, 3, 10, 10, 4, 60)
    assert (rates.completed, rates.per_replica, rates.arrivals) == (3, 2.0, 3.0)


def test_a_slowdown_raises_the_count_and_the_floor_bounds_it():
    """SMTP three times slower: the measured throughput falls and the count rises; a stalled one stops at the floor."""
    policy = replace(PROMISE, throughput_half_life_seconds=10, max_replica_count=1000)
    state = measured(3.0, 6.0, 3)
    before = decide(Backlog(ready=30), 3, policy, state, 0, observed=Observed(oldest_age=5, completed=0))
    state = before.new_state
    for i in range(1, 20):  # 3 replicas now finish 1 task/s each while 6/s still arrive
        d = decide(Backlog(ready=30 + 15 * i), 3, policy, state, i * 5.0,
                   observed=Observed(oldest_age=10, completed=15 * i))
        state = d.new_state
    assert d.recommendation > before.recommendation
    stalled = decide(Backlog(ready=60), 3, policy, state, 200, observed=Observed(oldest_age=10, completed=15 * 19))
    assert stalled.promise is not None and stalled.promise.per_replica >= policy.min_throughput_per_replica


def test_a_scale_up_is_sized_for_the_rate_that_arrived_last_not_the_lagging_smoothed_one():
    """An import starts: 60 tasks/s arrive where 10/s did.  The smoothed rate (half-life 60 s) still reads under
    13/s after the poll; sized on it the pool climbed a step a poll behind the load (six scale-ups on a simulated
    import).  Sized on the last interval's own rate, it goes there in one."""
    policy = replace(PROMISE, throughput_half_life_seconds=60, tolerance=0.2)
    state = ScalerState(observed_since=-1000, rates=Rates(0, 1000, 0, 0, 2, 5.0, 10.0, 5.0))
    # 5 s on: the 2 replicas finished 50 and 250 more wait: 300 arrived, 60/s.
    d = decide(Backlog(ready=250), 2, policy, state, 5, observed=Observed(oldest_age=4, completed=1050, serving=2))
    assert d.promise is not None and d.promise.arrivals < 13
    assert d.new_state.rates is not None and d.new_state.rates.recent == pytest.approx(60)
    assert d.desired * 5.0 * (1 - policy.tolerance) >= 60


def test_one_busy_poll_does_not_scale_up_a_pool_that_keeps_the_promise():
    """The last interval's rate only sizes a scale-up the smoothed estimate asks for: a poll that saw twice the
    usual arrivals (Poisson noise, a client's small batch) does not add replicas by itself."""
    state = ScalerState(observed_since=-1000, rates=Rates(0, 1000, 5, 5, 3, 5.0, 10.0, 5.0))
    # 5 s on: 3 replicas finished 95 and 10 wait (young): 100 arrived, 20/s, against 10/s smoothed.
    d = decide(Backlog(ready=10), 3, PROMISE, state, 5, observed=Observed(oldest_age=1, completed=1095, serving=3))
    assert d.new_state.rates is not None and d.new_state.rates.recent == pytest.approx(20)
    assert d.desired == 3


def test_a_promise_too_far_gone_goes_to_max_and_says_so():
    d = decide(Backlog(ready=100_000), 1, PROMISE, measured(1.0, 50.0, 1), 0,
               observed=Observed(oldest_age=100, completed=0))
    assert d.desired == PROMISE.max_replica_count
    assert "even maxReplicaCount 50 cannot keep the promise" in d.reason


def test_a_young_task_below_activation_waits_and_an_old_one_wakes_the_pool():
    policy = replace(PROMISE, activation_backlog=10)
    young = decide(Backlog(ready=2), 0, policy, ScalerState(), 0, observed=Observed(oldest_age=1))
    old = decide(Backlog(ready=2), 0, policy, ScalerState(), 0, observed=Observed(oldest_age=6))
    assert (young.desired, old.desired) == (0, 1)  # 6 s + a 20 s start reaches the 25 s deadline


def test_max_age_is_validated_naming_the_field():
    with pytest.raises(PolicyError, match="maxAge"):
        Policy(max_age=0)
    with pytest.raises(PolicyError, match="maxAge .* pollingInterval"):
        Policy(max_age=4, polling_interval=5)
    with pytest.raises(PolicyError, match="minThroughputPerReplica"):
        Policy(min_throughput_per_replica=0)
    assert Policy.from_spec({"maxAge": 30, "podStartSeconds": 12}).max_age == 30
    assert Policy.from_spec(Policy(max_age=20).to_spec()) == Policy(max_age=20)


# -- properties of the model ---------------------------------------------------------------------------
models = st.builds(
    Model,
    ready=st.integers(0, 2000), due=st.integers(0, 50), oldest_age=st.floats(0, 120),
    arrivals=st.floats(0, 100), per_replica=st.floats(0.05, 20), serving=st.integers(0, 30),
    start=st.floats(0, 90), deadline=st.floats(1, 300), poll=st.sampled_from([0.0, 5.0]),
)
prop = settings(max_examples=300, deadline=None)


def worst_lateness(model: Model, n: int, horizon: float) -> float:
    """On a fine time grid: the most any task (waiting now, or arriving within `horizon`) starts after its due time.

    Independent of Model.keeps: the capacity is tabulated on the grid and each task starts at the
    first grid time at which the tasks started reach its place in the queue.
    """
    arrivals = []
    if model.ready:
        arrivals.append(-model.oldest_age * (1 - np.arange(1, model.ready + 1) / model.ready))
    arrivals.append(np.zeros(model.due))
    if model.arrivals:
        arrivals.append(np.arange(1, int(model.arrivals * horizon) + 1) / model.arrivals)
    tau = np.concatenate(arrivals)
    if tau.size == 0:
        return -math.inf
    due_by = np.maximum(tau + model.deadline, model.rescue)
    grid = np.linspace(0, horizon + model.deadline + model.start + 10, 200_001)
    added = max(0, n - model.serving) * np.clip(grid - model.start, 0, None)
    cap = model.per_replica * (min(n, model.serving) * grid + added)
    at = np.searchsorted(cap + 1e-6, np.arange(1, tau.size + 1), side="left")
    if at[-1] >= grid.size:
        return math.inf
    return float(np.max(grid[at] - due_by))


@prop
@given(models, st.integers(0, 5), st.integers(1, 200))
def test_plan_is_monotone_in_backlog_and_age(model, low, high):
    assume(low <= high)
    more = plan(replace(model, ready=model.ready + 50), low, high).replicas
    older = plan(replace(model, oldest_age=model.oldest_age + 10), low, high).replicas
    base = plan(model, low, high).replicas
    assert base <= more and base <= older


@prop
@given(models, st.integers(0, 5), st.integers(1, 200))
def test_plan_stays_within_bounds_and_is_the_fewest(model, low, high):
    assume(low <= high)
    found = plan(model, low, high)
    assert low <= found.replicas <= high
    if found.feasible and found.replicas > low:
        assert not model.keeps(found.replicas - 1)
    if not found.feasible:
        assert found.replicas == high


@settings(max_examples=150, deadline=None)
@given(st.builds(Model, ready=st.integers(0, 300), due=st.integers(0, 20), oldest_age=st.floats(0, 60),
                 arrivals=st.floats(0, 5), per_replica=st.floats(0.2, 5), serving=st.integers(0, 10),
                 start=st.floats(0, 40), deadline=st.floats(5, 120), poll=st.just(5.0)))
def test_the_chosen_count_keeps_the_promise_and_one_fewer_does_not(model):
    found = plan(model, 0, 400)
    assume(found.feasible and model.ready + model.due > 0)
    tick = (4 * model.deadline + 2 * model.start + 10) / 200_000 * 2 + 1e-6
    assert worst_lateness(model, found.replicas, 3 * model.deadline + model.start) <= tick
    if found.replicas > 0:
        fewer = worst_lateness(model, found.replicas - 1, 3 * model.deadline + model.start)
        # One fewer breaks it (the grid's tasks are whole, the model's fluid: within one task's time),
        # unless only the arrivals' endless growth did (the horizon is finite).
        one_task = 1 / (model.per_replica * max(1, found.replicas - 1))
        assert fewer > -one_task or (found.replicas - 1) * model.per_replica < model.arrivals


# -- properties of decide() with the promise --------------------------------------------------------------
@st.composite
def promise_policies(draw) -> Policy:
    low = draw(st.integers(0, 3))
    high = draw(st.integers(max(low, 1), 60))
    poll = draw(st.sampled_from([1.0, 5.0, 15.0]))
    return Policy(min_replica_count=low, max_replica_count=high, polling_interval=poll,
                  max_age=poll + draw(st.floats(1, 300)), pod_start_seconds=draw(st.floats(0, 90)),
                  min_throughput_per_replica=draw(st.sampled_from([0.05, 0.5, 2.0])),
                  activation_backlog=draw(st.sampled_from([0, 0, 5])),
                  stabilization_window_seconds=draw(st.sampled_from([0, 30, 60])),
                  scale_down_max_step=draw(st.none() | st.integers(1, 3)),
                  tolerance=draw(st.sampled_from([0.0, 0.1, 0.2])))


readings = st.tuples(
    st.builds(Backlog, ready=st.integers(0, 500), in_flight=st.integers(0, 20), delayed=st.integers(0, 5),
              orphaned=st.integers(0, 2)),
    st.floats(0, 200),       # oldest age
    st.integers(0, 400),     # completions since the last poll
    st.none() | st.floats(0, 120),  # measured start latency
)


@prop
@given(promise_policies(), st.integers(0, 10), st.lists(readings, min_size=1, max_size=30))
def test_decide_with_the_promise_keeps_the_floor_the_bounds_and_never_leaves_work_at_zero(policy, start, seq):
    state, current, done, now = ScalerState(), start, 0, 0.0
    for backlog, age, finished, latency in seq:
        now += policy.polling_interval
        done += finished
        d = decide(backlog, current, policy, state, now,
                   observed=Observed(oldest_age=age if backlog.ready else 0.0, completed=done, start_latency=latency))
        assert policy.min_replica_count <= d.desired <= policy.max_replica_count
        if backlog.busy:
            assert d.desired >= 1
        if backlog.ready and policy.activation_backlog == 0:
            assert d.desired >= 1 and d.promise is not None
        state, current = d.new_state, d.desired


def decide_and_scale(policy, state, now, current, up, *, ready, in_flight, age, started, serving, start_latency):
    """One poll of a closed loop: the decision, and the replicas' ready times after it (new ones start later)."""
    d = decide(Backlog(ready=int(ready), in_flight=in_flight), current, policy, state, now,
               observed=Observed(oldest_age=age, completed=int(started), serving=serving,
                                 start_latency=start_latency))
    if d.desired > current:
        up = up + [now + start_latency] * (d.desired - current)
    elif d.desired < current:
        up = sorted(up)[: d.desired]
    return d, up


def fluid(policy: Policy, arrivals: float, per_replica: float, start_latency: float, polls: int) -> list[int]:
    """A closed loop on a steady input: a fluid queue served by the replicas decide() asks for.

    Replicas added serve `start_latency` after they were asked for; the oldest task's age is
    read from the cumulative arrival and start curves (FIFO); the tasks in flight are the
    arrivals of the last 1/per_replica seconds (a task takes that long on one replica).
    """
    state, current, now = ScalerState(), 1, 0.0
    arrived = started = 0.0
    up: list[float] = [0.0]  # when each replica started serving
    out = []
    dt = policy.polling_interval
    for _ in range(polls):
        serving = sum(1 for t in up if t <= now)
        arrived += arrivals * dt
        started = min(arrived, started + serving * per_replica * dt)
        now += dt
        ready = arrived - started
        age = now - started / arrivals if ready >= 1 else 0.0
        in_flight = math.ceil(min(started, arrivals / per_replica, serving))
        d, up = decide_and_scale(policy, state, now, current, up, ready=ready, in_flight=in_flight, age=age,
                                 started=started, serving=serving, start_latency=start_latency)
        state, current = d.new_state, d.desired
        out.append(current)
    return out


@settings(max_examples=80, deadline=None)
@given(st.floats(0.5, 50), st.floats(0.2, 5), st.floats(0, 60), st.sampled_from([2.0, 5.0]),
       st.floats(20, 120))
def test_no_oscillation_on_a_steady_input(arrivals, per_replica, latency, poll, max_age):
    need = math.ceil(arrivals / per_replica)
    assume(need <= 40)
    policy = Policy(min_replica_count=1, max_replica_count=60, polling_interval=poll, max_age=max_age,
                    pod_start_seconds=latency, min_throughput_per_replica=0.1, tolerance=0.1,
                    throughput_half_life_seconds=30, stabilization_window_seconds=60)
    # Half an hour, the last quarter quiet: over 150 random inputs of this domain (its corners included)
    # the last change came at most 250 s in, and the loop's slowest parts (the 60 s window, a start of up
    # to 60 s, the 30 s half-life) have long settled by then.  An hour cost twice the CPU.
    history = fluid(policy, arrivals, per_replica, latency, polls=int(1800 / poll))
    tail = history[len(history) // 2:]
    assert len(set(tail)) == 1, f"still changing in the last quarter hour: {sorted(set(tail))}"
    # And it serves the load, to the precision whole completion counts allow.
    assert tail[-1] * per_replica >= arrivals * (1 - 1e-4)


@prop
@given(promise_policies(), st.integers(0, 10), st.lists(readings, min_size=1, max_size=20), st.booleans())
def test_the_holds_still_apply_under_the_promise(policy, start, seq, paused):
    """Accept path over budget: no scale-up past the floor, one replica shed at a time; a paused queue: no scale-up."""
    from booking_scaling.pressure import AcceptPath

    policy = replace(policy, protect_accept_path=True)
    state, current, done, now = ScalerState(), start, 0, 0.0
    for backlog, age, finished, latency in seq:
        now += policy.polling_interval
        done += finished
        seen = Observed(oldest_age=age if backlog.ready else 0.0, completed=done, start_latency=latency)
        signal = AcceptPath(True, "p99 180 ms") if not paused else None
        d = decide(backlog, current, policy, state, now, accept_path=signal, queue_paused=paused, observed=seen)
        floor = max(policy.min_replica_count, 1 if backlog.busy or d.active else 0)
        if paused:
            assert d.desired <= max(current, policy.min_replica_count) or d.desired <= floor
        else:
            assert d.desired <= max(current - 1, floor)
        state, current = d.new_state, d.desired


def fluid_falling(policy: Policy, high: float, low: float, seconds: float, per_replica: float,
                  start_latency: float) -> list[tuple[int, int]]:
    """The closed loop of `fluid` on a load falling linearly from `high` to `low` tasks/s: each change (from, to).

    The oldest task's age is read from the cumulative arrival curve (FIFO), since the rate is not constant.
    A replica runs one task at a time (replicaConcurrency 1, the invoice worker's): its busy replicas are the
    tasks in flight, so an over-provisioned pool still measures what a replica can do.
    """
    state, current, now = ScalerState(), 1, 0.0
    arrived = started = 0.0
    times, cumulative = [0.0], [0.0]
    up: list[float] = [0.0]
    changes = []
    dt = policy.polling_interval
    while now < seconds:
        rate = high + (low - high) * now / seconds
        serving = sum(1 for t in up if t <= now)
        arrived += rate * dt
        started = min(arrived, started + serving * per_replica * dt)
        now += dt
        times.append(now)
        cumulative.append(arrived)
        ready = arrived - started
        age = now - float(np.interp(started, cumulative, times)) if ready >= 1 else 0.0
        in_flight = math.ceil(min(started, rate / per_replica, serving))
        d, up = decide_and_scale(policy, state, now, current, up, ready=ready, in_flight=in_flight, age=age,
                                 started=started, serving=serving, start_latency=start_latency)
        if d.desired != current:
            changes.append((current, d.desired))
        state, current = d.new_state, d.desired
    return changes


@settings(max_examples=40, deadline=None)
@given(st.floats(10, 40), st.floats(0.05, 0.5), st.floats(0.1, 2), st.floats(0, 45), st.sampled_from([5.0, 15.0]),
       st.sampled_from([0.1, 0.2]), st.sampled_from([60.0, 300.0]))
def test_a_falling_load_is_followed_down_in_steps_of_at_least_the_tolerance(high, fall, per_replica, latency, poll,
                                                                              tolerance, window):
    """A scale-up lands a tolerance above the need; a scale-down must wait until it is that far below, too.

    Otherwise a load falling smoothly (the evening of a diurnal day) is followed down one or two replicas a
    poll: the simulated invoice pool made 308 scale-downs and 27 scale-ups in a 4-hour day, against KEDA's 130
    changes in all.  So every scale-down removes more than a tolerance of the count (to the floor at least).
    """
    assume(20 <= high / per_replica <= 200)  # enough replicas that halving the load must remove some
    policy = Policy(min_replica_count=1, max_replica_count=400, polling_interval=poll, max_age=120,
                    pod_start_seconds=latency, min_throughput_per_replica=0.02, tolerance=tolerance,
                    throughput_half_life_seconds=60, stabilization_window_seconds=window, replica_concurrency=1)
    changes = fluid_falling(policy, high, high * fall, 7200, per_replica, latency)
    downs = [(a, b) for a, b in changes if b < a]
    assert downs, "a load falling to a fraction of itself is followed down"
    small = [(a, b) for a, b in downs if b > a * (1 - tolerance) and b != policy.min_replica_count]
    assert not small, f"scale-downs within the tolerance: {small[:10]} of {len(downs)}"
