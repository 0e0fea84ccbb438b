"""Which processes a local scale-down stops: the idlest by the operator's ranking, the newest when nothing is known."""

from __future__ import annotations

from booking_scaling.podload import PodLoad
from bookingctl.retire import retirees

POOL = ["email-worker-1", "email-worker-2", "email-worker-3"]  # oldest first


def load(in_flight: int, last_work_ms: int | None) -> PodLoad:
    return PodLoad(in_flight=in_flight, last_work_ms=last_work_ms, workers=1)


def test_nothing_known_retires_the_newest():
    assert retirees(POOL, {}, 1) == ["email-worker-3"]
    assert retirees(POOL, {"email-worker-9": load(0, None)}, 2) == ["email-worker-3", "email-worker-2"]


def test_a_busy_newest_process_is_spared_for_an_idle_older_one():
    loads = {"email-worker-1": load(0, 1_000), "email-worker-2": load(0, 5_000), "email-worker-3": load(2, 9_000)}
    assert retirees(POOL, loads, 1) == ["email-worker-1"]
    assert retirees(POOL, loads, 2) == ["email-worker-1", "email-worker-2"]


def test_fewest_in_flight_before_least_recent_work():
    loads = {"email-worker-1": load(1, 0), "email-worker-2": load(0, 9_000), "email-worker-3": load(3, 0)}
    assert retirees(POOL, loads, 3) == ["email-worker-2", "email-worker-1", "email-worker-3"]


def test_a_process_not_yet_stamped_goes_first_as_an_unstamped_pod_does():
    loads = {"email-worker-1": load(0, None), "email-worker-3": load(0, None)}
    assert retirees(POOL, loads, 1) == ["email-worker-2"]


def test_ties_go_to_the_newest_not_to_the_name():
    pool = [f"email-worker-{i}" for i in (2, 10, 11)]  # "email-worker-10" sorts before "-2" by name
    loads = dict.fromkeys(pool, load(0, None))
    assert retirees(pool, loads, 2) == ["email-worker-11", "email-worker-10"]


def test_nothing_to_retire():
    assert retirees(POOL, {"email-worker-1": load(0, 1)}, 0) == []
    assert retirees(POOL, {}, -1) == []
