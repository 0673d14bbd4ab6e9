"""Rate limiters and tiers on a fake clock."""

from __future__ import annotations

import pytest

from stratochat.core.clock import FakeClock
from stratochat.core.errors import RateLimited
from stratochat.core.limits import FailureWindow, TierPolicy, TokenBuckets
from stratochat.core.models import User


def test_token_bucket_refills_at_its_rate() -> None:
    """A bucket gives ``burst`` tokens at once, then ``rate`` per second, and says how long to wait."""
    clock = FakeClock()
    buckets = TokenBuckets(clock, rate=2, burst=3)
    assert [buckets.take("u") for _ in range(3)] == [0, 0, 0]
    wait = buckets.take("u")
    assert wait == pytest.approx(0.5)
    clock.advance(0.5)
    assert buckets.take("u") == 0
    assert buckets.take("other") == 0  # buckets are per key


def test_token_bucket_refund_and_off() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock, rate=1, burst=1)
    assert buckets.take("u") == 0
    buckets.give_back("u")
    assert buckets.take("u") == 0
    off = TokenBuckets(clock, rate=0, burst=1)
    assert all(off.take("u") == 0 for _ in range(100))


def test_failure_window_blocks_then_forgets() -> None:
    clock = FakeClock()
    window = FailureWindow(clock, max_failures=3, window_s=60)
    for _ in range(3):
        window.check("k", "account")
        window.record_failure("k")
    with pytest.raises(RateLimited) as info:
        window.check("k", "account")
    assert 0 < info.value.retry_after <= 60
    window.check("other", "account")
    clock.advance(61)
    window.check("k", "account")


def test_tiers() -> None:
    policy = TierPolicy(1000, 50, 2, None, 5000, 25)
    assert policy.limits_for(User("1", "a")).daily_messages == 1000
    premium = policy.limits_for(User("1", "a", is_premium=True))
    assert premium.daily_messages is None and premium.storage_bytes == 5000 and premium.max_file_bytes == 25
