"""The tighter promise first: which pools yield the CPU to a pool at risk, named cases and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from booking_scaling.yielding import AT_RISK, SAFE, SLACK, Promise, Yielding, decide

LOCAL = {"email": 20.0, "webhook": 30.0, "audit": 60.0, "invoice": 120.0}


def ages(**oldest: float) -> dict[str, Promise]:
    return {q: Promise(m, oldest.get(q, 0.0)) for q, m in LOCAL.items()}


def test_nothing_yields_while_every_promise_has_room():
    assert decide(ages(email=2.9, webhook=4, audit=8, invoice=17)) == Yielding()


def test_an_email_burst_holds_every_pool_with_a_longer_promise():
    d = decide(ages(email=3, invoice=10))
    assert d.at_risk == {"email"}
    assert d.yielding == {"webhook", "audit", "invoice"}
    assert "email (oldest 3s of maxAge 20s)" in d.reason(ages(email=3, invoice=10))


def test_a_held_pool_yields_until_half_its_own_promise_then_not_again_until_the_risk_is_over():
    d = decide(ages(email=3))
    d = decide(ages(email=12, audit=29, invoice=40), d)
    assert d.yielding == {"webhook", "audit", "invoice"}  # audit and invoice at risk too, but looser than email
    d = decide(ages(email=15, audit=30, invoice=40), d)
    assert d.yielding == {"webhook", "invoice"} and d.spent == {"audit"}
    d = decide(ages(email=8, audit=20, invoice=40), d)  # audit drained under half again: still spent
    assert d.yielding == {"webhook", "invoice"}
    # Email out of risk: audit (at risk itself) is now the tightest, and invoice yields to it alone.
    d = decide(ages(email=0.5, audit=20, invoice=40), d)
    assert (d.at_risk, d.yielding) == ({"audit", "invoice"}, {"invoice"})
    assert decide(ages(), d) == Yielding()


def test_a_pool_at_risk_stays_so_until_it_is_back_under_the_safe_share():
    risky = decide(ages(email=3))
    assert decide(ages(email=1.5), risky).at_risk == {"email"}  # 1.5 s >= 5 % of 20 s
    assert decide(ages(email=0.9), risky).at_risk == frozenset()
    assert decide(ages(email=1.5)).at_risk == frozenset()  # not at risk before: 15 % is the bar


def test_nobody_yields_to_a_pool_with_a_looser_promise():
    assert decide(ages(invoice=40)).yielding == frozenset()
    assert decide(ages(audit=15)).yielding == {"invoice"}


names = st.sampled_from(["a", "b", "c", "d", "e"])
promises = st.dictionaries(names, st.builds(Promise, st.floats(5, 600), st.floats(0, 900)), min_size=1)


@settings(max_examples=300, deadline=None)
@given(st.lists(promises, min_size=1, max_size=6))
def test_properties(rounds):
    d = Yielding()
    for promises in rounds:
        d = decide(promises, d)
        assert d.at_risk <= promises.keys() and d.yielding <= promises.keys()
        # Nothing yields unless some pool is at risk, and never the tightest promise at risk.
        if not d.at_risk:
            assert d == Yielding()
            continue
        tightest = min(promises[q].max_age for q in d.at_risk)
        assert all(promises[q].max_age > tightest for q in d.yielding)
        # A yield costs a pool at most SLACK of its own promise.
        assert all(promises[q].oldest_age < SLACK * promises[q].max_age for q in d.yielding)
        # Past AT_RISK of its promise a pool is at risk whatever it was; under SAFE it never is.
        for q, p in promises.items():
            if p.oldest_age >= AT_RISK * p.max_age:
                assert q in d.at_risk
            if p.oldest_age < SAFE * p.max_age:
                assert q not in d.at_risk
