"""Which pods a scale-down marks with a low pod-deletion-cost: the pure choice, apart from any I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from booking_scaling.podload import PodLoad
from queue_autoscaler.deletion_cost import PodView, idlest_first, plan


def load(in_flight: int, last: int | None = 1_000) -> PodLoad:
    return PodLoad(in_flight=in_flight, last_work_ms=last, workers=1)


def test_the_idle_pods_go_first_the_busy_last():
    loads = {"busy": load(2), "idle": load(0, 5_000), "one": load(1)}
    assert idlest_first(["busy", "one", "idle"], loads) == ["idle", "one", "busy"]


def test_among_idle_pods_the_one_idle_longest_goes_first_and_a_pod_without_presence_before_all():
    loads = {"just-done": load(0, 9_000), "long-idle": load(0, 1_000), "never": load(0, None)}
    assert idlest_first(["just-done", "long-idle", "never", "starting"], loads) == [
        "starting", "never", "long-idle", "just-done"]


def test_ties_are_broken_by_name_so_the_same_reading_gives_the_same_choice():
    loads = {"b": load(0, 1), "a": load(0, 1)}
    assert idlest_first(["b", "a"], loads) == ["a", "b"]


def test_the_plan_marks_the_idlest_lowest_and_clears_a_busy_pods_old_mark():
    pods = [PodView("render", cost="-1"), PodView("idle"), PodView("idler"), PodView("busy")]
    loads = {"render": load(1), "idle": load(0, 9_000), "idler": load(0, 1_000), "busy": load(3)}
    assert plan(pods, loads, remove=2) == {"idler": -2, "idle": -1, "render": None}


def test_no_write_that_changes_nothing():
    pods = [PodView("idle", cost="-1"), PodView("busy")]
    loads = {"idle": load(0), "busy": load(2)}
    assert plan(pods, loads, remove=1) == {}


def test_a_mark_not_set_by_the_plan_is_rewritten_and_an_unparsable_one_replaced():
    pods = [PodView("idle", cost="oops"), PodView("busy", cost="100")]
    loads = {"idle": load(0), "busy": load(2)}
    assert plan(pods, loads, remove=1) == {"idle": -1, "busy": None}


def test_removing_more_than_there_are_marks_them_all_and_nothing_removes_nothing():
    pods = [PodView("a"), PodView("b", cost="-3")]
    assert plan(pods, {}, remove=5) == {"a": -2, "b": -1}
    assert plan(pods, {}, remove=0) == {"b": None}


loads_st = st.dictionaries(st.sampled_from("abcdefgh"),
                           st.builds(load, st.integers(0, 5), st.one_of(st.none(), st.integers(0, 10**6))))


@given(names=st.sets(st.sampled_from("abcdefgh"), min_size=1), loads=loads_st, remove=st.integers(0, 9),
       marked=st.sets(st.sampled_from("abcdefgh")))
def test_after_the_plan_the_lowest_costs_are_the_idlest_pods(names, loads, remove, marked):
    pods = [PodView(n, cost="-7" if n in marked else None) for n in sorted(names)]
    patches = plan(pods, loads, remove)
    after = {p.name: patches[p.name] if p.name in patches else (int(p.cost) if p.cost else None) for p in pods}
    doomed = {n for n, c in after.items() if c is not None and c < 0}
    assert len(doomed) == min(remove, len(names))
    spared = set(names) - doomed
    rank = idlest_first(names, loads)
    # every pod marked for deletion is at least as idle as every pod spared
    assert all(rank.index(d) < rank.index(s) for d in doomed for s in spared)
    # no pod outside the chosen keeps a mark; patches only where the value changes
    assert all(after[n] is None for n in spared)
    assert all((None if v is None else str(v)) != next(p.cost for p in pods if p.name == n)
               for n, v in patches.items())
