"""Latency histograms and delivery bitmaps, small enough to send between processes."""

from __future__ import annotations

import math
from array import array

# Buckets grow by 1% from 1 microsecond: percentiles are exact to 1%, up to ~1,000 s in 2,800 buckets.
_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)
BUCKETS = 2800


class Histogram:
    """Counts of latencies (nanoseconds in, milliseconds out) in log-spaced buckets; mergeable."""

    __slots__ = ("count", "counts", "max_ns", "total_ns")

    def __init__(self) -> None:
        self.counts = array("Q", bytes(8 * BUCKETS))
        self.count = 0
        self.total_ns = 0
        self.max_ns = 0

    def add(self, ns: int) -> None:
        if ns < 0:
            ns = 0
        us = ns / 1000.0
        i = int(math.log(us) / _LOG_GROWTH) + 1 if us >= 1.0 else 0
        self.counts[i if i < BUCKETS else BUCKETS - 1] += 1
        self.count += 1
        self.total_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns

    def merge(self, other: Histogram) -> None:
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.count += other.count
        self.total_ns += other.total_ns
        self.max_ns = max(self.max_ns, other.max_ns)

    def percentile_ms(self, p: float) -> float | None:
        """The latency that ``p`` percent of samples do not exceed (the bucket's upper edge)."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(self.count * p / 100.0))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                upper_us = _GROWTH**i if i > 0 else 1.0
                return min(upper_us / 1000.0, self.max_ns / 1e6)
        return self.max_ns / 1e6

    def summary(self) -> dict[str, float | None]:
        mean = self.total_ns / self.count / 1e6 if self.count else None
        return {
            "p50": _round(self.percentile_ms(50)),
            "p99": _round(self.percentile_ms(99)),
            "p999": _round(self.percentile_ms(99.9)),
            "max": _round(self.max_ns / 1e6) if self.count else None,
            "mean": _round(mean),
        }

    def __getstate__(self) -> tuple[bytes, int, int, int]:
        return (self.counts.tobytes(), self.count, self.total_ns, self.max_ns)

    def __setstate__(self, state: tuple[bytes, int, int, int]) -> None:
        raw, self.count, self.total_ns, self.max_ns = state
        self.counts = array("Q")
        self.counts.frombytes(raw)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Bitmap:
    """A growable set of small non-negative integers (message numbers), one bit each."""

    __slots__ = ("bits", "size")

    def __init__(self) -> None:
        self.bits = bytearray()
        self.size = 0

    def add(self, n: int) -> bool:
        """Set bit ``n``; False if it was set already (a duplicate)."""
        byte = n >> 3
        if byte >= len(self.bits):
            self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits) // 2, 64)))
        mask = 1 << (n & 7)
        if self.bits[byte] & mask:
            return False
        self.bits[byte] |= mask
        self.size += 1
        return True


def missing(expected: bytes, got: bytes) -> int:
    """How many numbers are in ``expected`` but not in ``got`` (both Bitmap bytes)."""
    want = int.from_bytes(expected, "little")
    have = int.from_bytes(got, "little")
    return (want & ~have).bit_count()
