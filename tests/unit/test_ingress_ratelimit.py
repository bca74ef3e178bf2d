"""The per-account token buckets of the ingress, on a fake clock."""

from __future__ import annotations

import pytest

from infra.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fresh_account_may_burst_twice_its_rate_then_waits():
    clock = Clock()
    buckets = TokenBuckets(rate=5, clock=clock)
    assert all(buckets.acquire("facebook/page-1") == 0.0 for _ in range(10))
    wait = buckets.acquire("facebook/page-1")
    assert wait == pytest.approx(0.2)
    assert buckets.retry_after(wait) == 1


def test_tokens_come_back_at_the_rate():
    clock = Clock()
    buckets = TokenBuckets(rate=5, burst=10, clock=clock)
    assert buckets.acquire("a", 10) == 0.0
    clock.now += 0.5  # 2.5 tokens back
    assert buckets.acquire("a", 2) == 0.0
    assert buckets.acquire("a", 1) > 0


def test_one_account_exhausted_does_not_slow_another():
    clock = Clock()
    buckets = TokenBuckets(rate=1, clock=clock)
    assert buckets.acquire("facebook/noisy", 2) == 0.0
    assert buckets.acquire("facebook/noisy") > 0
    assert buckets.acquire("facebook/quiet") == 0.0


def test_a_batch_over_several_accounts_is_all_or_nothing():
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=2, clock=clock)
    assert buckets.acquire("b", 2) == 0.0
    wait = buckets.acquire_all({"a": 1, "b": 1})
    assert wait == pytest.approx(1.0)
    # "a" was not charged for the refused batch.
    assert buckets.acquire("a", 2) == 0.0


def test_a_refused_request_takes_nothing():
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=2, clock=clock)
    assert buckets.acquire("a", 2) == 0.0
    for _ in range(5):
        assert buckets.acquire("a") > 0
    clock.now += 1.0
    assert buckets.acquire("a") == 0.0


def test_a_batch_larger_than_the_bucket_passes_when_full_and_leaves_debt():
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=20, clock=clock)
    assert buckets.acquire("a", 50) == 0.0
    # 30 tokens of debt: the next item waits until the bucket is back above one.
    assert buckets.acquire("a") == pytest.approx(3.1)
    clock.now += 3.1
    assert buckets.acquire("a") == 0.0


def test_refilled_buckets_are_forgotten():
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=20, clock=clock)
    for page in range(100):
        buckets.acquire(f"facebook/{page}")
    assert len(buckets) == 100
    clock.now += 5
    buckets.acquire("facebook/new")
    assert len(buckets) == 1


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-1, None), (1, 0)])
def test_rates_and_bursts_must_be_positive(rate, burst):
    with pytest.raises(ValueError):
        TokenBuckets(rate, burst)
