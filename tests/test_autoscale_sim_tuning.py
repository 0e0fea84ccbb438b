"""The tuned KEDA baseline of bench/autoscale_sim.py: the search finds the largest target that keeps the promise.

The simulation reports the promise policy against a KEDA whose target was lowered until it keeps maxAge too;
a search that stopped early (at a bisection's guess, or at the chart's target) would report a dearer KEDA
than an engineer could set, and so flatter the promise.
"""

from __future__ import annotations

from test_chart_autoscale_sim import load_sim


def test_the_largest_target_that_keeps_the_share_wins_over_a_non_monotone_share():
    sim = load_sim()
    # Noisy near the edge, as one seed is: 9 keeps it though 7 and 8 do not, 10 and above never.
    shares = {1: 1.0, 2: 1.0, 3: 0.995, 4: 0.991, 5: 0.97, 6: 0.991, 7: 0.95, 8: 0.9, 9: 0.992}
    asked: list[int] = []

    def share(t: int) -> float:
        asked.append(t)
        return shares.get(t, 0.5)

    target, seen = sim.largest_target(share, start=3, need=0.99)
    assert target == 9
    assert len(asked) == len(set(asked)), "each target is simulated once"
    assert seen[9] == 0.992 and seen[12] == 0.5  # doubled from 3 to the first failure (12), then down
    assert 4 not in seen, "the search stops at the largest target that keeps it"


def test_a_start_that_fails_searches_below_it_and_one_is_the_floor():
    sim = load_sim()
    assert sim.largest_target(lambda t: 1.0 if t <= 5 else 0.0, start=10)[0] == 5
    target, seen = sim.largest_target(lambda t: 0.5, start=4)
    assert target == 1 and set(seen) == {1, 2, 3, 4}


def test_the_recorded_results_compare_with_the_target_found_and_it_keeps_the_promise():
    """Each committed seed names its tuned target, every target tried above it failed, and its steady run keeps 99 %."""
    import json
    from pathlib import Path

    sim = load_sim()
    results = Path(sim.HERE) / "results"
    for name in ("autoscale_sim.json", "autoscale_sim_seed2.json", "autoscale_sim_seed3.json"):
        recorded = json.loads((results / name).read_text())
        for queue in ("email", "invoice"):
            tuned = recorded["keda_tuned"][queue]
            tried = {int(t): share for t, share in tuned["tried"].items()}
            assert tried[tuned["target"]] >= sim.KEPT, (name, queue)
            assert all(share < sim.KEPT for t, share in tried.items() if t > tuned["target"]), (name, queue)
            rows = [r for r in recorded["rows"] if r["pool"] == queue and r["policy"] == "keda-tuned"]
            assert {r["trace"] for r in rows} == {t.name for t in sim.TRACES}, (name, queue)
            steady = next(r for r in rows if r["trace"] == "steady")
            assert steady["within_max_age"] == tuned["within_max_age"] >= sim.KEPT, (name, queue)


def test_a_pool_that_keeps_the_promise_at_any_target_ends_the_search_at_the_limit():
    """A pool whose work one replica does (the share never falls) stops doubling at the limit, not never."""
    sim = load_sim()
    asked: list[int] = []

    def share(t: int) -> float:
        asked.append(t)
        return 1.0

    target, seen = sim.largest_target(share, start=20, need=0.99, limit=1000)
    assert target == 1000
    assert asked == [20, 40, 80, 160, 320, 640, 1000]
    # Below the limit the search is as before: the limit only bounds the doubling.
    assert sim.largest_target(lambda t: 1.0 if t <= 700 else 0.0, start=20, limit=1000)[0] == 700
