"""Rate limiters and the tier policy. In-memory limiters are per node; quotas live in the store."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .errors import RateLimited
from .models import Limits, User
from .ports import Clock


@dataclass(frozen=True, slots=True)
class TierPolicy:
    free_daily_messages: int | None
    free_storage_bytes: int
    free_max_file_bytes: int
    premium_daily_messages: int | None
    premium_storage_bytes: int
    premium_max_file_bytes: int

    _free: Limits = field(init=False, repr=False, compare=False)
    _premium: Limits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: limits_for runs for every message sent.
        free = Limits(self.free_daily_messages, self.free_storage_bytes, self.free_max_file_bytes)
        premium = Limits(self.premium_daily_messages, self.premium_storage_bytes, self.premium_max_file_bytes)
        object.__setattr__(self, "_free", free)
        object.__setattr__(self, "_premium", premium)

    def limits_for(self, user: User) -> Limits:
        return self._premium if user.is_premium else self._free


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens per second, at most ``burst`` saved up.

    A rate of 0 turns the limiter off. Idle buckets are forgotten once full again, so memory follows
    the number of recently active keys.
    """

    def __init__(self, clock: Clock, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = max(1, burst)
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def take(self, key: str) -> float:
        """Take one token. Returns 0 on success, else the seconds until a token is available."""
        if self._rate <= 0:
            return 0.0
        now = self._clock.monotonic()
        tokens, at = self._buckets.get(key, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def give_back(self, key: str) -> None:
        """Refund a token taken for an action that was then refused, so it is not charged."""
        if key in self._buckets:
            tokens, at = self._buckets[key]
            self._buckets[key] = (min(float(self._burst), tokens + 1.0), at)

    def _prune(self, now: float) -> None:
        full_after = self._burst / self._rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


class FailureWindow:
    """Counts failures per key over a sliding window; a key with ``max_failures`` in it is blocked."""

    def __init__(self, clock: Clock, max_failures: int, window_s: float, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window_s
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def check(self, key: str, what: str) -> None:
        """Raise ``RateLimited`` while ``key`` is blocked."""
        if self._max <= 0:
            return
        times = self._failures.get(key)
        if not times:
            return
        now = self._clock.monotonic()
        while times and now - times[0] >= self._window:
            times.popleft()
        if len(times) >= self._max:
            retry = times[0] + self._window - now
            raise RateLimited(f"too many failed sign-ins for this {what}; try again later", math.ceil(retry))

    def record_failure(self, key: str) -> None:
        if self._max <= 0:
            return
        now = self._clock.monotonic()
        if key not in self._failures and len(self._failures) >= self._max_keys:
            self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < self._window}
        times = self._failures.setdefault(key, deque(maxlen=self._max))
        times.append(now)
