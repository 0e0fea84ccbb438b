"""The token bucket script on a real Redis: a burst, then the sustained rate, refunds and the generation."""

from __future__ import annotations

import uuid

import pytest
import redis

from booking_core.model import buckets


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def bucket(client):
    return buckets.TokenBuckets(client, f"test-{uuid.uuid4().hex[:8]}:limits")


def redis_now(client) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def test_a_full_bucket_admits_its_burst_then_refuses_with_the_time_until_one_token_is_back(bucket):
    verdicts = [bucket.take("t", rate=0.5, burst=5) for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert [v.remaining for v in verdicts[:5]] == [4, 3, 2, 1, 0]
    refused = verdicts[-1]
    # One token every 2 s: the sixth comes back within 2 s of the first take, and not much sooner.
    assert 1.5 < refused.retry_after <= 2.0
    assert refused.remaining == 0
    # The bucket is full again after 5 tokens' worth of refill.
    assert 9.0 < refused.reset_after <= 10.0


def test_after_its_burst_a_tenant_is_admitted_at_the_sustained_rate(bucket, client):
    rate, burst = 40.0, 5
    start = redis_now(client)
    admitted = 0
    while redis_now(client) - start < 1.0:
        admitted += bucket.take("t", rate=rate, burst=burst).allowed
    elapsed = redis_now(client) - start
    # The burst, plus one token every 25 ms of the script's own clock (Redis TIME), give or take one.
    assert burst + rate * elapsed - 2 <= admitted <= burst + rate * elapsed + 1


def test_a_refused_take_changes_nothing(bucket):
    for _ in range(3):
        bucket.take("t", rate=0.1, burst=3)
    first = bucket.take("t", rate=0.1, burst=3)
    for _ in range(20):
        later = bucket.take("t", rate=0.1, burst=3)
    assert not first.allowed and not later.allowed
    # Refusals did not push the next token further away (retry_after only shrinks with time).
    assert later.retry_after <= first.retry_after


def test_a_refund_gives_one_token_back_and_never_fills_past_the_burst(bucket, client):
    for _ in range(2):
        assert bucket.take("t", rate=0.1, burst=2).allowed
    assert not bucket.take("t", rate=0.1, burst=2).allowed
    bucket.refund("t", rate=0.1, burst=2)
    assert bucket.take("t", rate=0.1, burst=2).allowed
    # An idle bucket is no key at all; refunding it leaves it so (a full bucket holds no more).
    bucket.refund("idle", rate=0.1, burst=2)
    assert client.exists(bucket.key("idle")) == 0
    assert [bucket.take("idle", rate=0.1, burst=2).allowed for _ in range(3)] == [True, True, False]


def test_buckets_are_per_name(bucket):
    assert bucket.take("a", rate=0.1, burst=1).allowed
    assert not bucket.take("a", rate=0.1, burst=1).allowed
    assert bucket.take("b", rate=0.1, burst=1).allowed


def test_every_decision_carries_the_plans_generation(bucket, client):
    before = bucket.take("t", rate=10, burst=10).generation
    buckets.bump_generation(client)
    after = bucket.take("t", rate=10, burst=10).generation
    assert int(after) == int(before) + 1


def test_a_key_expires_once_its_bucket_would_be_full(bucket, client):
    bucket.take("t", rate=100, burst=10)
    ttl = client.pttl(bucket.key("t"))
    assert 0 < ttl <= 10  # one token's worth of refill: 10 ms


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_bucket_without_a_rate_or_a_burst_is_refused(bucket, rate, burst):
    with pytest.raises(ValueError):
        bucket.take("t", rate=rate, burst=burst)


def test_a_lease_takes_at_most_its_share_of_what_is_left_and_one_near_the_end(bucket):
    # 100 tokens, a twentieth of what is left at most: 5, then 4 of 95, ... and 1 each once under 40.
    first = bucket.take("t", rate=0.01, burst=100, want=20, divisor=20)
    assert (first.taken, first.remaining) == (5, 95)
    assert bucket.take("t", rate=0.01, burst=100, want=2, divisor=20).taken == 2  # never more than wanted
    taken = 7
    while (v := bucket.take("t", rate=0.01, burst=100, want=20, divisor=20)).allowed:
        assert v.taken == max(1, (v.remaining + v.taken) // 20)
        taken += v.taken
    assert taken == 100 and v.taken == 0 and v.retry_after > 0


def test_tokens_given_back_are_taken_again_but_never_past_the_burst(bucket):
    assert bucket.take("t", rate=0.01, burst=10, want=10).taken == 10
    assert bucket.take("t", rate=0.01, burst=10, give_back=4).taken == 1  # 4 back, then one taken
    assert bucket.take("t", rate=0.01, burst=10, want=10).taken == 3
    assert bucket.take("t", rate=0.01, burst=10, give_back=50, want=0).remaining == 10  # capped: a full bucket
