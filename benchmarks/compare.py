"""Run Stratochat and the bare relay alternately, in one run, and print the ratios against the targets.

Absolute numbers on a shared machine move by 2x from minute to minute, so every case runs against
both targets back to back (relay first in odd rounds, Stratochat first in even ones), each with a
fresh server started by ``stratochat bench``, and the verdict uses the median of the per-round ratios.

    python benchmarks/compare.py                      # every case, 3 rounds, the sizes of issue 9
    python benchmarks/compare.py --rounds 1 --cases pairs,rate --duration 5 --pairs 20
"""

from __future__ import annotations

import argparse
import json
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
    # "ratio": Stratochat / relay against ``limit`` (>= when higher is better); "abs": Stratochat's own value.
    kind: str
    limit: float
    higher_is_better: bool


def _path(*keys: str) -> Callable[[dict[str, Any]], float | None]:
    def get(run: dict[str, Any]) -> float | None:
        value: Any = run
        for key in keys:
            if not isinstance(value, dict) or value.get(key) is None:
                return None
            value = value[key]
        return float(value)

    return get


CASES: dict[str, tuple[str, list[str], list[Metric], bool]] = {
    # name: (scenario, extra bench args, metrics, needs the relay too)
    "pairs": (
        "pairs",
        [],
        [
            Metric("delivered msgs/s", _path("delivered_per_s"), "ratio", 0.75, True),
            Metric("server CPU us/msg", _path("server", "cpu_per_msg_us"), "ratio", 1.3, False),
            Metric("p99 ms (closed loop)", _path("latency_ms", "p99"), "info", 0, False),
        ],
        True,
    ),
    "rate": (
        "pairs",
        ["--rate", "{rate}"],
        [Metric("p99 ms at {rate:g} msg/s", _path("latency_ms", "p99"), "ratio", 2.0, False)],
        True,
    ),
    "fanout": (
        "fanout",
        ["--group", "{group}"],
        [Metric("deliveries/s to {group}", _path("delivered_per_s"), "ratio", 0.8, True)],
        True,
    ),
    "idle": (
        "idle",
        ["--sockets", "{sockets}", "--users", "50"],
        [Metric("RSS KB per idle socket ({sockets})", _path("server", "rss_per_socket_kb"), "abs", 32, False)],
        True,
    ),
    "reconnect": (
        "reconnect",
        ["--clients", "{clients}"],
        [
            Metric("s until {clients} clients recovered", _path("all_recovered_s"), "abs", 30, False),
            Metric("lost while reconnecting", _path("lost"), "abs", 0, False),
        ],
        False,
    ),
}


def bench(target: str, scenario: str, args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "stratochat", "bench", scenario, "--target", target, "--json", "--quiet", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    run: dict[str, Any] = json.loads(proc.stdout)["runs"][0]
    return run


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--group", type=int, default=100)
    p.add_argument("--sockets", type=int, default=5000)
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--workers", type=int, help="load-generator processes of each bench run")
    p.add_argument("--bench-arg", action="append", default=[], help="passed to every bench run (repeatable)")
    p.add_argument("--out", type=Path, help="write every run and the summary here as JSON")
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r}")
    sizes = {"rate": args.rate, "group": args.group, "sockets": args.sockets, "clients": args.clients}
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
            scenario, extra, _, needs_relay = CASES[case]
            targets = ["relay", "stratochat"] if rnd % 2 == 0 else ["stratochat", "relay"]
            for target in targets if needs_relay else ["stratochat"]:
                case_args = [a.format(**sizes) for a in extra]
                print(f"round {rnd + 1}/{args.rounds}: {case} on {target}", file=sys.stderr, flush=True)
                try:
                    result = bench(target, scenario, common + case_args, timeout)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    # One failed run (a timeout on a busy machine) costs its own value, not the others'.
                    print(f"  failed: {exc}", file=sys.stderr, flush=True)
                    failures.append(f"round {rnd + 1} {case} on {target}: {str(exc).strip().splitlines()[-1]}")
                    result = {}
                runs.append({"round": rnd, "case": case, "target": target, "result": result})
    summary = []
    lines = [
        f"alternating comparison, {args.rounds} round(s), started {started}",
        f"{'case':<10} {'metric':<38} {'relay':>10} {'stratochat':>11} {'ratio':>7} {'target':>9}  verdict",
    ]
    for case in cases:
        for metric in CASES[case][2]:
            name = metric.name.format(**sizes)
            by_round: dict[int, dict[str, float | None]] = {}
            for r in runs:
                if r["case"] == case:
                    by_round.setdefault(r["round"], {})[r["target"]] = metric.get(r["result"])
            strat = [v["stratochat"] for v in by_round.values() if v.get("stratochat") is not None]
            relay = [v["relay"] for v in by_round.values() if v.get("relay") is not None]
            ratios = [
                v["stratochat"] / v["relay"]  # type: ignore[operator]
                for v in by_round.values()
                if v.get("stratochat") is not None and v.get("relay")
            ]
            s_med = statistics.median(strat) if strat else None
            r_med = statistics.median(relay) if relay else None
            ratio = statistics.median(ratios) if ratios else None
            verdict, target = "", ""
            value = ratio if metric.kind == "ratio" else s_med
            if metric.kind in ("ratio", "abs") and value is not None:
                ok = value >= metric.limit if metric.higher_is_better else value <= metric.limit
                verdict = "meets" if ok else "misses"
                target = ("x >= " if metric.higher_is_better else "x <= " if metric.kind == "ratio" else "<= ") + (
                    f"{metric.limit:g}"
                )
            elif metric.kind in ("ratio", "abs"):
                verdict = "no value"
            summary.append(
                {
                    "case": case,
                    "metric": name,
                    "relay": r_med,
                    "stratochat": s_med,
                    "ratio": ratio,
                    "ratios": ratios,
                    "verdict": verdict,
                }
            )
            ratio_s = f"{ratio:.2f}x" if ratio is not None else "-"
            lines.append(
                f"{case:<10} {name:<38} {_fmt(r_med):>10} {_fmt(s_med):>11} {ratio_s:>7} {target:>9}  {verdict}"
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
