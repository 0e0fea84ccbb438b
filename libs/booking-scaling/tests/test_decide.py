"""Named cases of decide(): each test pins one rule of the decision core."""

from __future__ import annotations

from collections.abc import Iterable

from booking_scaling.backlog import Backlog
from booking_scaling.decision import Decision, ScalerState, decide
from booking_scaling.depth import QueueDepth
from booking_scaling.policy import Policy
from booking_scaling.pressure import AcceptPath

POLICY = Policy(
    min_replica_count=0, max_replica_count=10, target_backlog_per_replica=10, activation_backlog=0,
    cooldown_period=120, stabilization_window_seconds=60, tolerance=0.1,
)
IDLE = Backlog()


def run(readings: Iterable[tuple[float, Backlog]], current: int, policy: Policy = POLICY) -> list[Decision]:
    """Feed readings at the given times, applying each decision as an actuator would."""
    state, decisions = ScalerState(), []
    for now, backlog in readings:
        decision = decide(backlog, current, policy, state, now)
        decisions.append(decision)
        state, current = decision.new_state, decision.desired
    return decisions


def test_a_burst_scales_up_at_once_to_the_computed_value():
    d = decide(Backlog(ready=47, in_flight=3), 0, POLICY, ScalerState(), 0)
    assert (d.desired, d.action) == (5, "scale_up")
    assert "backlog 50 (ready 47, in flight 3, delayed 0)" in d.reason
    assert "scaled up 0→5" in d.reason


def test_scale_up_step_is_limited():
    policy = Policy(max_replica_count=10, target_backlog_per_replica=10, scale_up_max_step=2)
    assert decide(Backlog(ready=100), 1, policy, ScalerState(), 0).desired == 3


def test_recommendation_is_clamped_to_max():
    d = decide(Backlog(ready=10_000), 2, POLICY, ScalerState(), 0)
    assert d.desired == 10
    assert "maxReplicaCount 10" in d.reason


def test_activation_backlog_keeps_zero_until_exceeded():
    policy = Policy(target_backlog_per_replica=10, activation_backlog=5)
    assert decide(Backlog(ready=5), 0, policy, ScalerState(), 0).desired == 0
    assert decide(Backlog(ready=6), 0, policy, ScalerState(), 0).desired == 1


def test_tolerance_ignores_small_changes():
    state = ScalerState(observed_since=-1000)
    assert decide(Backlog(ready=42), 4, POLICY, state, 0).desired == 4
    assert decide(Backlog(ready=46), 4, POLICY, state, 0).desired == 5


def test_scale_down_waits_for_the_stabilization_window():
    decisions = run([(0, Backlog(ready=80)), (30, Backlog(ready=20)), (59, Backlog(ready=20)),
                     (61, Backlog(ready=20))], current=0)
    assert [d.desired for d in decisions] == [8, 8, 8, 2]
    assert "highest recommendation in the last 60s: 8" in decisions[1].reason


def test_scale_down_uses_the_highest_recommendation_in_the_window():
    decisions = run([(0, Backlog(ready=80)), (40, Backlog(ready=50)), (70, Backlog(ready=10)),
                     (101, Backlog(ready=10))], current=0)
    assert [d.desired for d in decisions] == [8, 8, 5, 1]


def test_a_fresh_scaler_does_not_scale_down_on_one_reading():
    decisions = run([(0, Backlog(ready=10)), (59, Backlog(ready=10)), (60, Backlog(ready=10))], current=6)
    assert [d.desired for d in decisions] == [6, 6, 1]


def test_scale_down_step_is_limited():
    policy = Policy(max_replica_count=10, target_backlog_per_replica=10, stabilization_window_seconds=0,
                    scale_down_max_step=2)
    assert decide(Backlog(ready=10), 8, policy, ScalerState(), 0).desired == 6


def test_scale_down_period_allows_one_scale_down_per_period_and_never_holds_a_scale_up():
    """scaleDown.periodSeconds: a backlog draining poll by poll is followed down a step a period, not a staircase."""
    policy = Policy(max_replica_count=10, target_backlog_per_replica=10, stabilization_window_seconds=0,
                    scale_down_period_seconds=100)
    readings = [(0, Backlog(ready=80)), (1, Backlog(ready=50)), (11, Backlog(ready=30)), (61, Backlog(ready=10)),
                (70, Backlog(ready=90)), (101, Backlog(ready=10)), (110, Backlog(ready=10))]
    decisions = run(readings, current=8, policy=policy)
    assert [d.desired for d in decisions] == [8, 5, 5, 5, 9, 1, 1]
    assert "scaleDown.periodSeconds: 90s left since the last scale-down" in decisions[2].reason
    # Without the period each reading is followed at once.
    free = run(readings, current=8,
               policy=Policy(max_replica_count=10, target_backlog_per_replica=10, stabilization_window_seconds=0))
    assert [d.desired for d in free] == [8, 5, 3, 1, 9, 1, 1]


def test_never_jumps_from_many_to_zero():
    decisions = run([(0, IDLE), (200, IDLE), (201, IDLE)], current=5)
    assert [d.desired for d in decisions] == [5, 1, 0]
    assert "last step to zero is taken from one replica" in decisions[1].reason


def test_last_step_to_zero_waits_for_cooldown_since_last_active():
    decisions = run([(0, Backlog(ready=5)), (61, IDLE), (100, IDLE), (121, IDLE)], current=1)
    assert [d.desired for d in decisions] == [1, 1, 1, 0]
    assert "cooldownPeriod: 59s left before zero" in decisions[1].reason
    assert decisions[-1].new_state.last_active == 0


def test_in_flight_work_keeps_one_replica_even_below_activation():
    policy = Policy(target_backlog_per_replica=10, activation_backlog=5, cooldown_period=0)
    decisions = run([(0, IDLE), (500, Backlog(in_flight=1))], current=1, policy=policy)
    assert [d.desired for d in decisions] == [1, 1]
    assert "at least 1 while messages are in flight" in decisions[1].reason


def test_delayed_retries_keep_one_replica():
    assert run([(0, IDLE), (500, Backlog(delayed=3))], current=1)[-1].desired == 1


def test_delayed_retries_due_later_than_the_lead_time_allow_zero():
    decisions = run([(0, IDLE), (500, Backlog(delayed=3, delayed_due=0))], current=1)
    assert decisions[-1].desired == 0
    assert "delayed 0 due (+3 later)" in decisions[-1].reason


def test_orphaned_messages_keep_one_replica():
    assert run([(0, IDLE), (500, Backlog(orphaned=2))], current=1)[-1].desired == 1


def test_dead_letters_do_not_keep_workers():
    assert run([(0, IDLE), (500, Backlog(dead=100))], current=1)[-1].desired == 0


def test_read_error_holds_the_current_count():
    d = decide(Backlog.unreadable("Connection refused"), 3, POLICY, ScalerState(), 0)
    assert (d.desired, d.action) == (3, "fallback")
    assert d.reason == "backlog unreadable (Connection refused); holding 3"


def test_read_error_uses_fallback_replicas():
    policy = Policy(max_replica_count=5, fallback_replicas=2)
    assert decide(Backlog.unreadable("timeout"), 4, policy, ScalerState(), 0).desired == 2
    assert decide(Backlog.unreadable("timeout"), 0, policy, ScalerState(), 0).desired == 2


def test_read_error_does_not_touch_the_remembered_state():
    state = ScalerState(observed_since=0, last_active=5, recommendations=((5, 3),))
    assert decide(Backlog.unreadable("x"), 3, POLICY, state, 50).new_state == state


def test_a_fallback_count_is_not_undone_before_the_window_passes():
    """Reads that fail and recover must not flap the pool between fallbackReplicas and the backlog's count.

    Found by hypothesis (test_properties): an idle pool at 0 went to fallbackReplicas 1 on a
    read error and straight back to 0 at the next readable poll, 2 s into a 5 s window.
    """
    policy = Policy(min_replica_count=0, max_replica_count=1, fallback_replicas=1, cooldown_period=0,
                    stabilization_window_seconds=5)
    first = decide(IDLE, 0, policy, ScalerState(), 1.0)
    failed = decide(Backlog.unreadable("Connection refused"), first.desired, policy, first.new_state, 2.0)
    after = decide(IDLE, failed.desired, policy, failed.new_state, 3.0)
    later = decide(IDLE, after.desired, policy, after.new_state, 7.5)
    assert (first.desired, failed.desired, after.desired, later.desired) == (0, 1, 1, 0)
    assert after.action == "hold"


def test_read_error_after_idle_time_never_scales_to_zero():
    decisions = run([(0, IDLE), (1000, Backlog.unreadable("down"))], current=1)
    assert decisions[-1].desired == 1


def test_paused_changes_nothing_even_out_of_bounds():
    policy = Policy(max_replica_count=2, paused=True)
    d = decide(Backlog(ready=1000), 7, policy, ScalerState(), 0)
    assert (d.desired, d.action, d.reason) == (7, "paused", "paused: replicas left at 7")


def test_min_replicas_apply_even_when_idle():
    policy = Policy(min_replica_count=2, max_replica_count=4)
    assert decide(IDLE, 0, policy, ScalerState(), 0).desired == 2


def test_replicas_above_max_are_clamped_at_once():
    d = decide(Backlog(ready=1000), 15, POLICY, ScalerState(), 0)
    assert (d.desired, d.action) == (10, "scale_down")
    assert "clamped to 10" in d.reason


def test_history_is_trimmed_to_the_window():
    decisions = run([(t, Backlog(ready=10)) for t in range(0, 600, 5)], current=1)
    assert len(decisions[-1].new_state.recommendations) == 12


def test_delayed_retries_due_later_wait_for_the_cooldown_before_zero():
    far = Backlog(delayed=3, delayed_due=0)
    decisions = run([(0, IDLE), (100, far), (119, far), (121, far)], current=1)
    assert [d.desired for d in decisions] == [1, 1, 1, 0]
    assert "cooldownPeriod" in decisions[2].reason


def test_backlog_from_depths_sums_the_due_counts_read_with_a_lead_time():
    def depth(queue, delayed, due):
        return QueueDepth(queue, ready=1, in_flight=0, delayed=delayed, dead=0, delayed_due=due)

    both = Backlog.from_depths([depth("email", 4, 1), depth("invoice", 3, 0)])
    assert (both.delayed, both.delayed_due, both.due, both.load) == (7, 1, 1, 3)
    # A queue read without a lead time counts all its delayed messages as due
    mixed = Backlog.from_depths([depth("email", 4, 1), depth("invoice", 3, None)])
    assert (mixed.delayed_due, mixed.due) == (4, 4)
    unknown = Backlog.from_depths([depth("email", 4, None)])
    assert (unknown.delayed_due, unknown.due) == (None, 4)
    # An explicit count still wins
    assert Backlog.from_depths([depth("email", 4, 1)], delayed_due=2).due == 2


# -- the accept path's latency budget (issue 9) --------------------------------------
SLOW = AcceptPath(True, "/api/v1/bookings p99 180 ms over 2s (400 requests), budget 100 ms")
FAST = AcceptPath(False, "/api/v1/bookings p99 4 ms over 2s (400 requests), budget 100 ms")


def test_a_saturated_accept_path_holds_a_scale_up_at_the_floor_and_says_why():
    d = decide(Backlog(ready=50), 1, POLICY, ScalerState(), 0, accept_path=SLOW)
    assert (d.desired, d.action, d.recommendation) == (1, "hold", 5)
    assert d.held == SLOW.reason
    assert "scale-up to 5 held at 1: accept path over its latency budget (/api/v1/bookings p99 180 ms" in d.reason


def test_a_saturated_accept_path_sheds_one_replica_per_decision_down_to_the_floor():
    # Workers started while the API was idle: when it saturates, the pool yields one replica per decision
    d = decide(Backlog(ready=50), 4, POLICY, ScalerState(), 0, accept_path=SLOW)
    assert (d.desired, d.action, d.held) == (3, "scale_down", SLOW.reason)
    assert "scaled down 4→3 (shedding one replica); scale-up to 5 held" in d.reason
    current, state = d.desired, d.new_state
    for t in (2, 4, 6):
        d = decide(Backlog(ready=50), current, POLICY, state, t, accept_path=SLOW)
        current, state = d.desired, d.new_state
    assert current == 1, "never below the floor while work waits"
    # Even where the backlog alone would hold the pool, it sheds
    steady = decide(Backlog(ready=20), 2, POLICY, ScalerState(), 0)
    assert (steady.desired, steady.action) == (2, "hold")
    shed = decide(Backlog(ready=20), 2, POLICY, ScalerState(), 0, accept_path=SLOW)
    assert (shed.desired, shed.action) == (1, "scale_down") and "shedding one replica" in shed.reason


def test_a_fast_accept_path_or_no_signal_changes_nothing():
    plain = decide(Backlog(ready=50), 2, POLICY, ScalerState(), 0)
    assert decide(Backlog(ready=50), 2, POLICY, ScalerState(), 0, accept_path=FAST) == plain
    assert (plain.desired, plain.held) == (5, None)


def test_protect_accept_path_false_ignores_the_signal():
    policy = Policy(max_replica_count=10, target_backlog_per_replica=10, protect_accept_path=False)
    d = decide(Backlog(ready=50), 2, policy, ScalerState(), 0, accept_path=SLOW)
    assert (d.desired, d.held) == (5, None)


def test_held_from_zero_still_starts_the_one_worker_in_flight_work_needs():
    d = decide(Backlog(ready=40, in_flight=10), 0, POLICY, ScalerState(), 0, accept_path=SLOW)
    assert (d.desired, d.action) == (1, "scale_up")
    assert "scaled up 0→1 only (the floor); scale-up to 5 held" in d.reason


def test_held_below_min_still_rises_to_min():
    policy = Policy(min_replica_count=2, max_replica_count=10, target_backlog_per_replica=10)
    d = decide(Backlog(ready=100), 0, policy, ScalerState(), 0, accept_path=SLOW)
    assert d.desired == 2 and d.held is not None


def test_a_pool_at_zero_with_work_gets_one_worker_while_saturated_so_nothing_starves():
    d = decide(Backlog(ready=30), 0, POLICY, ScalerState(), 0, accept_path=SLOW)
    assert (d.desired, d.action) == (1, "scale_up")
    assert decide(Backlog(ready=3), 0, Policy(activation_backlog=5), ScalerState(), 0, accept_path=SLOW).desired == 0


def test_scale_down_goes_on_while_saturated():
    decisions = run([(0, Backlog(ready=80)), (61, Backlog(ready=20))], current=0)
    held = decide(Backlog(ready=20), 8, POLICY, decisions[0].new_state, 61, accept_path=SLOW)
    assert (held.desired, held.action, held.held) == (2, "scale_down", None)


def test_the_held_scale_up_comes_at_once_when_the_api_recovers():
    first = decide(Backlog(ready=50), 2, POLICY, ScalerState(), 0, accept_path=SLOW)
    second = decide(Backlog(ready=50), first.desired, POLICY, first.new_state, 2, accept_path=FAST)
    assert (first.desired, second.desired, second.action) == (1, 5, "scale_up")


def test_a_paused_or_unreadable_scaler_ignores_the_signal():
    assert decide(Backlog(ready=50), 2, Policy(paused=True), ScalerState(), 0, accept_path=SLOW).held is None
    d = decide(Backlog.unreadable("down"), 2, Policy(max_replica_count=5, fallback_replicas=4), ScalerState(), 0,
               accept_path=SLOW)
    assert (d.desired, d.action) == (4, "fallback")  # fallbackReplicas is the user's own choice for the unknown


# -- a queue paused by an operator (issue 11) ----------------------------------------
def test_a_paused_queue_holds_a_scale_up_and_says_so():
    d = decide(Backlog(ready=50), 2, POLICY, ScalerState(), 0, queue_paused=True)
    assert (d.desired, d.action, d.recommendation, d.held) == (2, "hold", 5, "queue paused")
    assert "scale-up to 5 held at 2: queue paused" in d.reason


def test_a_paused_queue_still_gets_its_minimum_and_nothing_more():
    policy = Policy(min_replica_count=1, max_replica_count=10, target_backlog_per_replica=10)
    d = decide(Backlog(ready=100), 0, policy, ScalerState(), 0, queue_paused=True)
    assert (d.desired, d.action, d.held) == (1, "scale_up", "queue paused")
    assert "scaled up 0→1 only (minReplicaCount); scale-up to 10 held: queue paused" in d.reason


def test_a_paused_queue_scales_down_as_usual_and_up_at_once_when_resumed():
    decisions = run([(0, Backlog(ready=80)), (61, Backlog(ready=20))], current=0)
    down = decide(Backlog(ready=20), 8, POLICY, decisions[0].new_state, 61, queue_paused=True)
    assert (down.desired, down.action, down.held) == (2, "scale_down", None)
    held = decide(Backlog(ready=80), 2, POLICY, down.new_state, 62, queue_paused=True)
    resumed = decide(Backlog(ready=80), 2, POLICY, held.new_state, 63)
    assert (held.desired, resumed.desired, resumed.held) == (2, 8, None)


def test_a_paused_queue_with_nothing_to_scale_up_holds_nothing():
    d = decide(Backlog(ready=20), 2, POLICY, ScalerState(), 0, queue_paused=True)
    assert d == decide(Backlog(ready=20), 2, POLICY, ScalerState(), 0)
    assert d.held is None
