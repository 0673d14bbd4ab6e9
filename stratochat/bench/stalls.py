"""What the target's nodes say of their own stalls during a run: the event loop's lag and the garbage
collector's pauses, from the histograms of ``GET /metrics`` read at the start and the end of the window.

A latency tail has two possible owners on a shared machine: the server (a long loop turn, a
collection) or the load generator (a worker that was not scheduled). These figures are the server's
side. Targets without those histograms (the baselines, an older Stratochat) give nothing.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

LAG = "stratochat_event_loop_lag_seconds"
GC = "stratochat_gc_pause_seconds"
_BUCKET = re.compile(r'^(\w+)_bucket\{(?:[^}]*,)?le="([^"]+)"\} (\S+)$')
_SUM = re.compile(r"^(\w+)_sum\{[^}]*\} (\S+)$")
# Lag and pauses longer than this count as stalls in the report.
STALL_S = 0.05
PAUSE_S = 0.01

Buckets = dict[str, dict[float, float]]  # family -> {upper bound: cumulative count}, summed over series


def parse(text: str) -> tuple[Buckets, dict[str, float]]:
    """The two families' buckets (summed over series: nodes, generations) and sums from a metrics page."""
    buckets: Buckets = {}
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if m := _BUCKET.match(line):
            name, le, value = m.groups()
            if name in (LAG, GC):
                bound = float("inf") if le == "+Inf" else float(le)
                family = buckets.setdefault(name, {})
                family[bound] = family.get(bound, 0.0) + float(value)
        elif (m := _SUM.match(line)) and m.group(1) in (LAG, GC):
            sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(2))
    return buckets, sums


def scrape(urls: list[str], timeout: float = 2.0) -> tuple[Buckets, dict[str, float]] | None:
    """Every node's page, summed; None when a node does not answer or keeps no such histograms."""
    total: Buckets = {}
    sums: dict[str, float] = {}
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as http:
            for url in urls:
                r = http.get(f"{url.rstrip('/')}/metrics")
                if r.status_code != 200:
                    return None
                buckets, page_sums = parse(r.text)
                if LAG not in buckets:
                    return None
                for name, family in buckets.items():
                    into = total.setdefault(name, {})
                    for bound, n in family.items():
                        into[bound] = into.get(bound, 0.0) + n
                for name, s in page_sums.items():
                    sums[name] = sums.get(name, 0.0) + s
    except httpx.HTTPError:
        return None
    return total, sums


def _over(family: dict[float, float], seconds: float) -> int:
    """Observations above the largest bound at or below ``seconds``."""
    below = max((b for b in family if b <= seconds), default=None)
    return int(family.get(float("inf"), 0) - (family[below] if below is not None else 0))


def _quantile_bound(family: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket that holds the ``q`` quantile (None: no observations)."""
    count = family.get(float("inf"), 0)
    if count <= 0:
        return None
    for bound in sorted(family):
        if family[bound] >= q * count:
            return bound
    return float("inf")


def _longest(family: dict[float, float]) -> float | None:
    """The upper bound of the highest bucket that gained an observation."""
    top = None
    previous = 0.0
    for bound in sorted(family):
        if family[bound] > previous:
            top = bound
        previous = family[bound]
    return top


def _ms(bound: float | None) -> float | str | None:
    if bound is None:
        return None
    return "inf" if bound == float("inf") else round(bound * 1000, 1)


def window(
    before: tuple[Buckets, dict[str, float]] | None, after: tuple[Buckets, dict[str, float]] | None
) -> dict[str, Any] | None:
    """The window's figures: the lag's p99 and longest (as bucket bounds, in ms), the stalls over 50 ms,
    the collections, those over 10 ms and their total time."""
    if before is None or after is None:
        return None
    diff: Buckets = {}
    for name in (LAG, GC):
        a, b = before[0].get(name, {}), after[0].get(name, {})
        diff[name] = {bound: b.get(bound, 0.0) - a.get(bound, 0.0) for bound in b}
    lag, gc = diff[LAG], diff[GC]
    return {
        "lag_p99_le_ms": _ms(_quantile_bound(lag, 0.99)),
        "lag_longest_le_ms": _ms(_longest(lag)),
        "stalls_50ms": _over(lag, STALL_S),
        "gc_collections": int(gc.get(float("inf"), 0)),
        "gc_pauses_10ms": _over(gc, PAUSE_S),
        "gc_longest_le_ms": _ms(_longest(gc)),
        "gc_s": round(after[1].get(GC, 0.0) - before[1].get(GC, 0.0), 3),
    }


def _upto(bound_ms: float | str | None) -> str:
    # A family with no observation in the window has no longest: say so rather than print "None".
    return "-" if bound_ms is None else f"<= {bound_ms} ms"


def note(figures: dict[str, Any] | None) -> str | None:
    """A line for the table."""
    if not figures:
        return None
    gc = f"{figures['gc_collections']:,} collections ({figures['gc_s']} s)"
    if figures["gc_collections"]:
        gc += f", {figures['gc_pauses_10ms']} over 10 ms, longest {_upto(figures['gc_longest_le_ms'])}"
    return (
        f"server stalls in the window: event loop lag p99 {_upto(figures['lag_p99_le_ms'])}, longest "
        f"{_upto(figures['lag_longest_le_ms'])}, {figures['stalls_50ms']} over 50 ms; {gc}"
    )
