"""Isolation inside one worker process: per-endpoint slots and the circuit breaker (pure, with a fake clock)."""

from __future__ import annotations

import pytest

from webhook_worker.limits import CircuitBreaker, Slots, put_back_ms


def test_slots_are_per_endpoint_and_given_back():
    slots = Slots(2)
    with slots.slot("a") as a1, slots.slot("a") as a2, slots.slot("a") as a3, slots.slot("b") as b1:
        assert (a1, a2, a3, b1) == (True, True, False, True)
        assert slots.busy("a") == 2
    assert slots.busy("a") == 0 and slots.busy("b") == 0
    with pytest.raises(ValueError, match="CONCURRENCY"):
        Slots(0, setting="BOOKING_WEBHOOKS_ENDPOINT_CONCURRENCY")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_breaker_opens_after_failures_in_a_row_and_lets_one_trial_through():
    clock = Clock()
    b = CircuitBreaker(threshold=3, cooloff=10, max_cooloff=25, clock=clock)
    for _ in range(2):
        b.record("a", ok=False)
    assert b.wait_seconds("a") == 0  # two failures: still closed
    b.record("a", ok=False)
    assert b.wait_seconds("a") == pytest.approx(10)
    assert b.wait_seconds("b") == 0  # other endpoints are not affected
    clock.now += 10
    assert b.wait_seconds("a") == 0  # half-open: the trial goes
    assert b.wait_seconds("a") > 0  # ... and only the trial
    b.record("a", ok=False)  # the trial failed: open for twice as long
    assert b.wait_seconds("a") == pytest.approx(20)
    clock.now += 20
    assert b.wait_seconds("a") == 0
    b.record("a", ok=False)
    assert b.wait_seconds("a") == pytest.approx(25)  # capped
    clock.now += 25
    assert b.wait_seconds("a") == 0
    b.record("a", ok=True)  # the trial worked: closed, counts forgotten
    assert b.wait_seconds("a") == 0
    b.record("a", ok=False)
    assert b.wait_seconds("a") == 0


def test_a_trial_that_never_reports_is_given_up():
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooloff=10, trial_timeout=30, clock=clock)
    b.record("a", ok=False)
    clock.now += 10
    assert b.wait_seconds("a") == 0  # the trial goes, and its thread dies before recording
    clock.now += 29
    assert b.wait_seconds("a") > 0
    clock.now += 1
    assert b.wait_seconds("a") == 0  # another trial


def test_a_success_resets_the_run_of_failures():
    b = CircuitBreaker(threshold=2, clock=Clock())
    b.record("a", ok=False)
    b.record("a", ok=True)
    b.record("a", ok=False)
    assert b.wait_seconds("a") == 0


def test_a_timeout_opens_the_breaker_at_once_and_the_others_wait_for_the_trials_deadline():
    clock = Clock()
    b = CircuitBreaker(threshold=5, cooloff=10, trial_timeout=20, clock=clock)
    b.record("a", ok=False)
    assert b.wait_seconds("a") == 0  # one plain failure: still closed
    b.record("a", ok=False, timed_out=True)  # a timeout held a thread for the whole deadline
    assert b.wait_seconds("a") == pytest.approx(10)
    assert b.cooloff_seconds("a") == 10 and b.cooloff_seconds("b") == 0
    clock.now += 10
    assert b.wait_seconds("a") == 0  # the trial goes
    clock.now += 3
    assert b.wait_seconds("a") == pytest.approx(17)  # the rest wait for its deadline, not a second at a time


def test_slots_tell_how_long_every_running_attempt_has_held_its_slot():
    clock = Clock()
    slots = Slots(2, clock=clock)
    assert slots.held_seconds("a") == 0
    with slots.slot("a"):
        clock.now += 7
        assert slots.held_seconds("a") == pytest.approx(7)
        with slots.slot("a"):
            clock.now += 2
            # One attempt stuck for 9 s, one of 2 s: the endpoint's slots have been held 2 s, not 9.
            assert slots.held_seconds("a") == pytest.approx(2)
        assert slots.held_seconds("a") == pytest.approx(9)
    assert slots.held_seconds("a") == 0 and slots.busy("a") == 0


def test_a_share_caps_the_slots_at_a_fraction_of_the_threads():
    assert Slots(8).limit_to_share_of(16, 4) == 4  # an endpoint: a quarter
    assert Slots(2).limit_to_share_of(16, 4) == 2
    assert Slots(4).limit_to_share_of(2, 4) == 1
    assert Slots(1 << 30).limit_to_share_of(16, 2) == 8  # a tenant: half


def test_deliveries_put_back_are_spread_after_the_wait():
    assert put_back_ms(5, 10, 0.0) == 5001
    assert put_back_ms(5, 10, 0.5) == 10001
