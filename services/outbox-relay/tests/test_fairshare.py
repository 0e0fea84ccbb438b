"""The fair-share scheduler alone: examples, then Hypothesis properties over any arrival pattern."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outbox_relay.fairshare import Schedule, Tags, Waiting, schedule


def run(tags: Tags, waiting: list[Waiting], budget: int) -> Schedule:
    return schedule(tags, waiting, budget)


def test_a_tenant_alone_gets_the_whole_budget():
    s = run(Tags(), [Waiting("noisy", 1000, 1, head=1)], 50)
    assert s.order == ("noisy",) * 50


def test_a_quiet_tenant_goes_next_behind_a_flood():
    # The flood was being served before the quiet tenant arrived: its tag is ahead of the clock.
    first = run(Tags(), [Waiting("noisy", 10_000, 1, head=1)], 100)
    s = run(first.tags, [Waiting("noisy", 9_900, 1, head=101), Waiting("quiet", 1, 1, head=20_000)], 100)
    assert s.order[0] == "quiet"
    assert s.counts() == {"quiet": 1, "noisy": 99}


def test_weights_share_the_budget():
    s = run(Tags(), [Waiting("gold", 1000, 3, head=2), Waiting("basic", 1000, 1, head=1)], 400)
    assert s.counts() == {"gold": 300, "basic": 100}


def test_equal_tenants_alternate_oldest_first():
    s = run(Tags(), [Waiting("b", 3, 1, head=5), Waiting("a", 3, 1, head=9)], 6)
    assert s.order == ("b", "a", "b", "a", "b", "a")


def test_fewer_waiting_than_budget_publishes_them_all():
    s = run(Tags(), [Waiting("a", 2, 1), Waiting("b", 1, 5), Waiting("c", 0, 1)], 100)
    assert sorted(s.order) == ["a", "a", "b"]


def test_state_keeps_only_tags_ahead_of_the_clock():
    s = run(Tags(), [Waiting("a", 1, 1, head=1), Waiting("b", 5, 1, head=2)], 6)
    assert set(s.tags.finish) <= {"a", "b"}
    assert all(f > s.tags.vtime for f in s.tags.finish.values())


def test_a_zero_weight_counts_as_one():
    s = run(Tags(), [Waiting("a", 3, 0), Waiting("b", 3, 1)], 6)
    assert s.counts() == {"a": 3, "b": 3}


# -- properties -------------------------------------------------------------------------------

TENANTS = [f"t{i}" for i in range(6)]
waitings = st.lists(
    st.builds(Waiting, st.sampled_from(TENANTS), st.integers(0, 60), st.integers(1, 8), st.integers(0, 10**6)),
    max_size=6, unique_by=lambda w: w.tenant)
#: Earlier rounds with any arrivals: the state a real relay carries into the next call.
histories = st.lists(st.tuples(waitings, st.integers(0, 80)), max_size=5)


def after(history) -> Tags:
    tags = Tags()
    for waiting, budget in history:
        tags = schedule(tags, waiting, budget).tags
    return tags


@settings(max_examples=300)
@given(histories, waitings, st.integers(0, 200))
def test_work_conserving_it_fills_the_budget_while_anyone_waits(history, waiting, budget):
    s = schedule(after(history), waiting, budget)
    assert len(s.order) == min(budget, sum(w.count for w in waiting))
    counts = s.counts()
    assert all(counts.get(w.tenant, 0) <= w.count for w in waiting)


def reweighted(history, weights: dict[str, int]):
    """`history` with each tenant at its weight in `weights` (a plan's weight does not change mid-run)."""
    return [([Waiting(w.tenant, w.count, weights[w.tenant], w.head) for w in waiting], budget)
            for waiting, budget in history]


@settings(max_examples=300)
@given(histories, st.dictionaries(st.sampled_from(TENANTS), st.integers(1, 8), min_size=len(TENANTS)),
       st.lists(st.sampled_from(TENANTS), min_size=2, max_size=6, unique=True),
       st.lists(st.integers(1, 50), min_size=1, max_size=8))
def test_backlogged_tenants_share_within_a_bound_of_their_weights(history, plan, backlogged, budgets):
    """While i and j stay backlogged: |n_i/w_i - n_j/w_j| <= 2/w_i + 2/w_j at every instant.

    One 1/w each is the SFQ bound; the other is the lead a carried-over tag may hold.
    """
    tags = after(reweighted(history, plan))
    weights = {t: plan[t] for t in backlogged}
    served = dict.fromkeys(weights, 0)
    for budget in budgets:
        s = schedule(tags, [Waiting(t, 10**6, w, head=0) for t, w in weights.items()], budget)
        for tenant in s.order:
            served[tenant] += 1
            for i in weights:
                for j in weights:
                    gap = served[i] / weights[i] - served[j] / weights[j]
                    assert gap <= 2 / weights[i] + 2 / weights[j] + 1e-9
        tags = s.tags


@settings(max_examples=300)
@given(histories, waitings, st.integers(1, 8))
def test_a_tenant_with_one_task_is_served_within_one_round(history, others, weight):
    """A tenant with nothing published lately goes before any other tenant's second message."""
    tags = after(history)
    tags = Tags(tags.vtime, {t: f for t, f in tags.finish.items() if t != "quiet"})
    waiting = [*others, Waiting("quiet", 1, weight, head=10**7)]  # the newest row of all
    rivals = sum(1 for w in others if w.count > 0)
    s = schedule(tags, waiting, rivals + 1)
    assert "quiet" in s.order


@settings(max_examples=300)
@given(histories, waitings, st.dictionaries(st.sampled_from(TENANTS), st.integers(1, 8), min_size=len(TENANTS)),
       st.sampled_from(TENANTS))
def test_no_tenant_starves_whatever_the_others_backlogs(history, others, plan, victim):
    """Any waiting tenant i is served within 1 + sum over j != i of (w_j // w_i + 1) picks.

    Its tag is at most 1/w_i ahead of the clock, and each rival's starts are 1/w_j apart.
    """
    waiting = [Waiting(w.tenant, w.count, plan[w.tenant], w.head) for w in others if w.tenant != victim]
    w_i = plan[victim]
    waiting.append(Waiting(victim, 1, w_i, head=10**7))
    bound = 1 + sum(w.weight // w_i + 1 for w in waiting[:-1] if w.count > 0)
    s = schedule(after(reweighted(history, plan)), waiting, bound)
    assert victim in s.order


@settings(max_examples=300)
@given(histories, waitings, st.integers(0, 80))
def test_counts_past_the_budget_change_nothing(history, waiting, budget):
    """A turn reads each tenant's due rows only up to its budget (`fair.WAITING`): the schedule is the same."""
    tags = after(history)
    capped = [Waiting(w.tenant, min(w.count, budget), w.weight, w.head) for w in waiting]
    assert schedule(tags, capped, budget) == schedule(tags, waiting, budget)
