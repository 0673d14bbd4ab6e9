"""Run Stratochat and a baseline alternately, in one run, and print the ratios against the targets.

Absolute numbers on a shared machine move by 2x from minute to minute, so every case runs against
both targets back to back (baseline first in odd rounds, Stratochat first in even ones), each with a
fresh server started by ``stratochat bench``, and the verdict uses the median of the per-round ratios.

The single-node cases (pairs, rate, rate5000, fanout, idle, idle20k) compare with the bare relay;
reconnect has no baseline (the relay keeps no history) and is judged on its own. ``redis`` (redis-pairs,
redis-rate, redis-overload) compares two Stratochat nodes sharing a Redis with two python-socketio
processes sharing one (``benchmarks/socketio_relay.py``), pairs split across the two: capacity (closed
loop), p99 at a fixed rate, and an open loop at twice the capacity that target showed in the same round,
whose delivered/s is reported as a fraction of that capacity. Loss verdicts take the worst round.

    python benchmarks/compare.py                      # the single-node cases, 3 rounds, the sizes of issue 9
    python benchmarks/compare.py --rounds 1 --cases rate5000,idle20k,reconnect --duration 5
    python benchmarks/compare.py --rounds 1 --cases pairs,rate --duration 5 --pairs 20
    python benchmarks/compare.py --rounds 2 --cases redis --duration 8
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Metric:
    name: str
    get: Callable[[dict[str, Any]], float | None]
    # "ratio": Stratochat / baseline against ``limit`` (>= when higher is better); "abs": Stratochat's own value.
    kind: str
    # a number, or the name of a size ("sockets20k": every socket asked for)
    limit: float | str
    higher_is_better: bool
    # "worst": the verdict takes the worst round, not the median (loss: one round losing a message is a miss).
    agg: str = "median"


def _path(*keys: str) -> Callable[[dict[str, Any]], float | None]:
    def get(run: dict[str, Any]) -> float | None:
        value: Any = run
        for key in keys:
            if not isinstance(value, dict) or value.get(key) is None:
                return None
            value = value[key]
        return float(value)

    return get


def _delivered_of_offered(run: dict[str, Any]) -> float | None:
    """Open loop: the share of what the schedule offered that was delivered (1.0: everything)."""
    if not run.get("offered"):
        return None
    return float(run["delivered"]) / float(run["offered"])


def _lost_and_dup(*keys: str) -> Callable[[dict[str, Any]], float | None]:
    def get(run: dict[str, Any]) -> float | None:
        value: Any = run
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, dict) or value.get("lost") is None:
            return None
        return float(value["lost"] + value.get("duplicates", 0))

    return get


def _held(run: dict[str, Any]) -> float | None:
    """idle: the sockets that connected and were still open at the end of the hold."""
    if run.get("still_open") is None:
        return None
    return float(min(run["connected"], run["still_open"]))


CASES: dict[str, tuple[str, list[str], list[Metric], str | None]] = {
    # name: (scenario, extra bench args, metrics, the baseline target it is compared with, if any)
    "pairs": (
        "pairs",
        [],
        [
            Metric("delivered msgs/s", _path("delivered_per_s"), "ratio", 0.75, True),
            Metric("server CPU us/msg", _path("server", "cpu_per_msg_us"), "ratio", 1.3, False),
            Metric("p99 ms (closed loop)", _path("latency_ms", "p99"), "info", 0, False),
        ],
        "relay",
    ),
    "rate": (
        "pairs",
        ["--rate", "{rate}"],
        [Metric("p99 ms at {rate:g} msg/s", _path("latency_ms", "p99"), "ratio", 2.0, False)],
        "relay",
    ),
    "rate5000": (
        "pairs",
        ["--rate", "{fast_rate}"],
        [
            Metric("delivered / offered at {fast_rate:g} msg/s", _delivered_of_offered, "abs", 1.0, True, "worst"),
            Metric("lost + dup at {fast_rate:g} msg/s", _lost_and_dup(), "abs", 0, False, "worst"),
            Metric("p99 ms at {fast_rate:g} msg/s", _path("latency_ms", "p99"), "ratio", 3.0, False),
            Metric("generator lag p99 ms", _path("generator_lag_ms", "p99"), "info", 0, False),
        ],
        "relay",
    ),
    "fanout": (
        "fanout",
        ["--group", "{group}"],
        [Metric("deliveries/s to {group}", _path("delivered_per_s"), "ratio", 0.8, True)],
        "relay",
    ),
    "idle": (
        "idle",
        ["--sockets", "{sockets}", "--users", "50"],
        [Metric("RSS KB per idle socket ({sockets})", _path("server", "rss_per_socket_kb"), "abs", 32, False)],
        "relay",
    ),
    "idle20k": (
        "idle",
        ["--sockets", "{sockets20k}", "--users", "50"],
        [
            Metric("idle sockets held of {sockets20k}", _held, "abs", "sockets20k", True, "worst"),
            Metric("RSS KB per idle socket ({sockets20k})", _path("server", "rss_per_socket_kb"), "info", 0, False),
        ],
        "relay",
    ),
    "reconnect": (
        "reconnect",
        ["--clients", "{clients}", "--live-pairs", "{live_pairs}", "--live-rate", "{live_rate}"],
        [
            Metric("s until {clients} clients recovered", _path("all_recovered_s"), "abs", 30, False),
            Metric("lost + dup while reconnecting", _lost_and_dup(), "abs", 0, False, "worst"),
            Metric("live p99 ms during the storm", _path("live", "latency_ms", "p99"), "abs", 100, False),
            Metric("live lost + dup", _lost_and_dup("live"), "abs", 0, False, "worst"),
        ],
        None,
    ),
    # Two nodes sharing a Redis, each pair's partners on different nodes: every message crosses Redis.
    "redis-pairs": (
        "pairs",
        ["--nodes", "2"],
        [
            Metric("2 nodes: capacity, delivered msgs/s", _path("delivered_per_s"), "ratio", 3.0, True),
            Metric("2 nodes: server CPU us/msg", _path("server", "cpu_per_msg_us"), "info", 0, False),
            Metric("2 nodes: p99 ms (closed loop)", _path("latency_ms", "p99"), "info", 0, False),
        ],
        "socketio",
    ),
    "redis-rate": (
        "pairs",
        ["--nodes", "2", "--rate", "{rate}"],
        [
            Metric("2 nodes: p99 ms at {rate:g} msg/s", _path("latency_ms", "p99"), "abs", 30, False),
            Metric("2 nodes: lost + dup at {rate:g} msg/s", _lost_and_dup(), "abs", 0, False, "worst"),
        ],
        "socketio",
    ),
    # Open loop at twice the capacity the same target showed in redis-pairs of the same round.
    "redis-overload": (
        "pairs",
        ["--nodes", "2", "--rate", "{overload}"],
        [
            Metric("2 nodes at 2x capacity: delivered/capacity", _path("capacity_fraction"), "abs", 0.8, True),
            Metric("2 nodes at 2x capacity: p99 ms", _path("latency_ms", "p99"), "info", 0, False),
            Metric("2 nodes at 2x capacity: errors", _path("errors_total"), "info", 0, False),
            Metric("2 nodes at 2x capacity: lost", _path("lost"), "info", 0, False),
        ],
        "socketio",
    ),
}
ALIASES = {"redis": ["redis-pairs", "redis-rate", "redis-overload"]}
DEFAULT_CASES = ["pairs", "rate", "rate5000", "fanout", "idle", "idle20k", "reconnect"]


def bench(target: str, scenario: str, args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "stratochat", "bench", scenario, "--target", target, "--json", "--quiet", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the bench then stops the servers (and Redis) it started.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-2000:]}")
    run: dict[str, Any] = json.loads(stdout)["runs"][0]
    return run


def _capacity(runs: list[dict[str, Any]], rnd: int, target: str) -> float | None:
    """delivered msgs/s of ``target``'s redis-pairs run in round ``rnd``."""
    for r in runs:
        if r["round"] == rnd and r["case"] == "redis-pairs" and r["target"] == target:
            value = r["result"].get("delivered_per_s")
            return float(value) if value else None
    return None


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--cases",
        default=",".join(DEFAULT_CASES),
        help=f"comma-separated, of {', '.join(CASES)}, or redis (= {', '.join(ALIASES['redis'])})",
    )
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--group", type=int, default=100)
    p.add_argument("--sockets", type=int, default=5000)
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--fast-rate", type=float, default=5000.0, help="rate5000: the open loop's msg/s")
    p.add_argument("--sockets20k", type=int, default=20000, help="idle20k: sockets on one server process")
    p.add_argument("--live-pairs", type=int, default=20, help="reconnect: pairs sending through the storm")
    p.add_argument("--live-rate", type=float, default=200.0, help="reconnect: their msg/s in total")
    p.add_argument("--workers", type=int, help="load-generator processes of each bench run")
    p.add_argument("--bench-arg", action="append", default=[], help="passed to every bench run (repeatable)")
    p.add_argument("--out", type=Path, help="write every run and the summary here as JSON")
    args = p.parse_args(argv)
    cases = list(
        dict.fromkeys(x for c in args.cases.split(",") if c.strip() for x in ALIASES.get(c.strip(), [c.strip()]))
    )
    if "redis-overload" in cases and "redis-pairs" not in cases:
        cases.insert(cases.index("redis-overload"), "redis-pairs")  # the overload rate comes from its capacity
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r}")
    sizes = {
        "rate": args.rate,
        "group": args.group,
        "sockets": args.sockets,
        "clients": args.clients,
        "fast_rate": args.fast_rate,
        "sockets20k": args.sockets20k,
        "live_pairs": args.live_pairs,
        "live_rate": args.live_rate,
    }
    common = ["--duration", str(args.duration), "--warmup", str(args.warmup), "--pairs", str(args.pairs)]
    common += ["--window", str(args.window), *args.bench_arg]
    if args.workers:
        common += ["--workers", str(args.workers)]
    timeout = args.duration + 600
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for rnd in range(args.rounds):
        for case in cases:
            scenario, extra, _, baseline = CASES[case]
            targets = [baseline, "stratochat"] if rnd % 2 == 0 else ["stratochat", baseline]
            for target in [t for t in targets if t is not None]:
                capacity = None
                if case == "redis-overload":
                    capacity = _capacity(runs, rnd, target)
                print(f"round {rnd + 1}/{args.rounds}: {case} on {target}", file=sys.stderr, flush=True)
                try:
                    if case == "redis-overload" and not capacity:
                        raise RuntimeError(f"no redis-pairs capacity of {target} in this round to double")
                    case_args = [a.format(**sizes, overload=round(2 * (capacity or 0))) for a in extra]
                    result = bench(target, scenario, common + case_args, timeout)
                    if capacity:
                        result["capacity"] = capacity
                        result["capacity_fraction"] = round(result["delivered_per_s"] / capacity, 3)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
                    # One failed run (a timeout on a busy machine) costs its own value, not the others'.
                    print(f"  failed: {exc}", file=sys.stderr, flush=True)
                    failures.append(f"round {rnd + 1} {case} on {target}: {str(exc).strip().splitlines()[-1]}")
                    result = {}
                runs.append({"round": rnd, "case": case, "target": target, "result": result})
    summary = []
    lines = [
        f"alternating comparison, {args.rounds} round(s), started {started}",
        f"{'case':<15} {'metric':<44} {'vs':<8} {'baseline':>10} {'stratochat':>11} {'ratio':>7} {'target':>9}"
        "  verdict",
    ]
    for case in cases:
        base = CASES[case][3] or "-"
        for metric in CASES[case][2]:
            name = metric.name.format(**sizes)
            by_round: dict[int, dict[str, float | None]] = {}
            for r in runs:
                if r["case"] == case:
                    by_round.setdefault(r["round"], {})[r["target"]] = metric.get(r["result"])
            strat = [x for v in by_round.values() if (x := v.get("stratochat")) is not None]
            relay = [x for v in by_round.values() if (x := v.get(base)) is not None]
            ratios = [
                v["stratochat"] / v[base]  # type: ignore[operator]
                for v in by_round.values()
                if v.get("stratochat") is not None and v.get(base)
            ]
            s_med = statistics.median(strat) if strat else None
            r_med = statistics.median(relay) if relay else None
            ratio = statistics.median(ratios) if ratios else None
            verdict, target = "", ""
            if metric.agg == "worst" and strat:
                s_med = min(strat) if metric.higher_is_better else max(strat)
            value = ratio if metric.kind == "ratio" else s_med
            limit = float(sizes[metric.limit]) if isinstance(metric.limit, str) else metric.limit
            if metric.kind in ("ratio", "abs") and value is not None:
                ok = value >= limit if metric.higher_is_better else value <= limit
                verdict = "meets" if ok else "misses"
                target = ("x " if metric.kind == "ratio" else "") + (">= " if metric.higher_is_better else "<= ")
                target += f"{limit:g}"
            elif metric.kind in ("ratio", "abs"):
                verdict = "no value"
            summary.append(
                {
                    "case": case,
                    "metric": name,
                    "baseline_target": CASES[case][3],
                    "baseline": r_med,
                    "stratochat": s_med,
                    "ratio": ratio,
                    "ratios": ratios,
                    "verdict": verdict,
                }
            )
            ratio_s = f"{ratio:.2f}x" if ratio is not None else "-"
            lines.append(
                f"{case:<15} {name:<44} {base:<8} {_fmt(r_med):>10} {_fmt(s_med):>11} {ratio_s:>7} {target:>9}"
                f"  {verdict}"
            )
    lines += [f"failed: {f}" for f in failures]
    print("\n".join(lines))
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "started": started,
                    "args": vars(args) | {"out": str(args.out)},
                    "summary": summary,
                    "failures": failures,
                    "runs": runs,
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
