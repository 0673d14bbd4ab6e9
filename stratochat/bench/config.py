"""What one ``stratochat bench`` invocation runs: the options, parsed into a BenchConfig."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

SCENARIOS = ("pairs", "fanout", "idle", "reconnect")
TARGETS = ("stratochat", "relay", "socketio")
Target = Literal["stratochat", "relay", "socketio"]


@dataclass
class BenchConfig:
    scenarios: list[str] = field(default_factory=lambda: ["pairs"])
    target: Target = "stratochat"
    # None: the bench starts the target itself (a throwaway server on loopback) and measures it.
    url: str | None = None
    # Several nodes of one deployment (``--url`` given more than once; ``url`` is the first): clients go
    # round-robin over them, so the two partners of a pair always sit on different nodes.
    urls: list[str] = field(default_factory=list)
    # A process on this machine to measure (RSS, CPU) when ``url`` points at a server started elsewhere;
    # ``server_pids`` when there are several (their figures are summed).
    server_pid: int | None = None
    server_pids: list[int] = field(default_factory=list)
    # Nodes the bench starts itself (without ``url``): more than one, or the socketio target, also starts a
    # redis-server on loopback (unless ``redis_url`` names one) that the nodes share.
    nodes: int = 1
    redis_url: str | None = None
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    duration: float = 10.0
    warmup: float = 2.0
    # pairs and fanout
    pairs: int = 50
    window: int = 8
    rate: float | None = None
    group: int = 100
    size: int = 64
    drain: float = 5.0
    # idle
    sockets: int = 1000
    hold: float = 3.0
    # reconnect
    clients: int = 1000
    missed: int = 5
    # reconnect: pairs that keep sending (open loop, live_rate msg/s in total) while the clients drop and recover
    live_pairs: int = 20
    live_rate: float = 200.0
    # reconnect: the niceness of the recovering clients' workers (the live pairs' worker keeps its own)
    storm_nice: int = 10
    # idle and reconnect spread their sockets over this many accounts (None: a tenth, 2-500)
    users: int | None = None
    deflate: bool = False
    connect_concurrency: int = 200
    timeout: float = 60.0
    relay_ws: str = "websockets-sansio"
    relay_script: Path | None = None
    socketio_script: Path | None = None
    server_env: dict[str, str] = field(default_factory=dict)
    json: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.urls and self.url is None:
            self.url = self.urls[0]
        elif self.url is not None and not self.urls:
            self.urls = [self.url]
        if self.server_pid is not None and not self.server_pids:
            self.server_pids = [self.server_pid]
        elif self.server_pids and self.server_pid is None:
            self.server_pid = self.server_pids[0]

    def public(self) -> dict[str, Any]:
        """The options as they go into a report."""
        out = asdict(self)
        out["relay_script"] = str(self.relay_script) if self.relay_script else None
        out["socketio_script"] = str(self.socketio_script) if self.socketio_script else None
        for key in ("json", "quiet"):
            out.pop(key)
        return out

    def most_sockets(self) -> int:
        """The most sockets one run of ``cfg`` holds open at once (what the file-descriptor limit must allow)."""
        counts = {"pairs": 2 * self.pairs, "fanout": self.group + 1, "idle": self.sockets}
        counts["reconnect"] = self.clients + 2 * self.live_pairs
        return max(counts.get(s, 0) for s in self.scenarios) if self.scenarios else 0

    def accounts_for(self, sockets: int) -> int:
        if self.users is not None:
            return max(1, min(self.users, sockets))
        return max(2, min(500, sockets // 10))


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _non_negative(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _env_pair(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("must be NAME=VALUE")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stratochat bench",
        description=(
            "Drive a running Stratochat (or the bare relay baseline) through the public contract and report "
            "delivered messages/s, latency percentiles, errors, lost and duplicated messages, and, for a server "
            "it started or was given the pid of, RSS per socket and CPU per message."
        ),
        epilog="Scenarios: " + ", ".join(SCENARIOS) + " (several run one after the other against the same server).",
    )
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"{', '.join(SCENARIOS)} (default: pairs)")
    target = p.add_argument_group("target")
    target.add_argument(
        "--url",
        action="append",
        default=[],
        help="a running server (http://host:port); repeat for the nodes of one deployment (clients go round-robin, "
        "partners on different nodes); default: start the target on loopback",
    )
    target.add_argument(
        "--target",
        choices=TARGETS,
        default="stratochat",
        help="what speaks at --url (or to start): Stratochat, the bare relay, or python-socketio with Redis",
    )
    target.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="measure this local process (with --url, repeatable)",
    )
    target.add_argument(
        "--nodes",
        type=_positive_int,
        default=1,
        help="processes to start (without --url); more than one, or --target socketio, share a redis-server "
        "the bench starts too (default 1)",
    )
    target.add_argument("--redis-url", help="a running Redis for the nodes the bench starts, instead of its own")
    target.add_argument(
        "--server-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of a server the bench starts (repeatable)",
    )
    target.add_argument("--relay-ws", default="websockets-sansio", help="uvicorn --ws of a relay the bench starts")
    target.add_argument("--relay-script", type=Path, help="path of benchmarks/relay.py (default: the checkout's)")
    target.add_argument(
        "--socketio-script", type=Path, help="path of benchmarks/socketio_relay.py (default: the checkout's)"
    )
    load = p.add_argument_group("load")
    load.add_argument("--workers", type=_positive_int, help="load-generator processes (default: CPUs, at most 4)")
    load.add_argument("--duration", type=_positive, default=10.0, help="seconds of sending (default 10)")
    load.add_argument("--warmup", type=_non_negative, default=2.0, help="first seconds not measured (default 2)")
    load.add_argument("--pairs", type=_positive_int, default=50, help="pairs: client pairs (default 50)")
    load.add_argument("--window", type=_positive_int, default=8, help="closed loop: messages in flight per sender")
    load.add_argument("--rate", type=_positive, help="open loop: total messages/s instead of a window")
    load.add_argument("--group", type=_positive_int, default=100, help="fanout: receivers of the one sender")
    load.add_argument("--size", type=_positive_int, default=64, help="message content, characters (default 64)")
    load.add_argument("--drain", type=_positive, default=5.0, help="seconds without progress before the rest is lost")
    load.add_argument("--sockets", type=_positive_int, default=1000, help="idle: sockets to hold (default 1000)")
    load.add_argument("--hold", type=_non_negative, default=3.0, help="idle: seconds to hold them before measuring")
    load.add_argument("--clients", type=_positive_int, default=1000, help="reconnect: clients that drop (default 1000)")
    load.add_argument("--missed", type=_positive_int, default=5, help="reconnect: messages per chat while away")
    load.add_argument(
        "--live-pairs",
        type=_non_negative_int,
        default=20,
        help="reconnect: pairs sending over their sockets through the storm (default 20; 0: none)",
    )
    load.add_argument(
        "--live-rate",
        type=_positive,
        default=200.0,
        help="reconnect: the live pairs' messages/s in total (default 200)",
    )
    load.add_argument(
        "--storm-nice",
        type=_non_negative_int,
        default=10,
        help="reconnect: niceness of the recovering clients' workers, so on a shared machine they do not "
        "starve the server and the live pairs' worker (default 10; 0: none)",
    )
    load.add_argument("--users", type=_positive_int, help="idle/reconnect: accounts the sockets belong to")
    load.add_argument("--deflate", action="store_true", help="offer permessage-deflate, as browsers do")
    load.add_argument("--connect-concurrency", type=_positive_int, default=200, help="handshakes at once, in total")
    load.add_argument("--timeout", type=_positive, default=60.0, help="bound of each phase, seconds")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    out.add_argument("--quiet", action="store_true", help="no live progress line")
    return p


def parse(argv: Sequence[str]) -> BenchConfig:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    if args.warmup >= args.duration:
        parser.error("--warmup must be shorter than --duration")
    if args.server_pid and not args.url:
        parser.error("--server-pid goes with --url (a server the bench starts is measured anyway)")
    if args.url and (args.nodes != 1 or args.redis_url):
        parser.error("--nodes and --redis-url are for servers the bench starts, not with --url")
    if args.target == "relay" and args.nodes > 1:
        parser.error("the relay has no broker between processes: --nodes > 1 needs stratochat or socketio")
    cfg = BenchConfig(
        scenarios=list(dict.fromkeys(args.scenarios or ["pairs"])),
        target=args.target,
        urls=[u.rstrip("/") for u in args.url],
        server_pids=list(args.server_pid),
        nodes=args.nodes,
        redis_url=args.redis_url,
        duration=args.duration,
        warmup=args.warmup,
        pairs=args.pairs,
        window=args.window,
        rate=args.rate,
        group=args.group,
        size=args.size,
        drain=args.drain,
        sockets=args.sockets,
        hold=args.hold,
        clients=args.clients,
        missed=args.missed,
        live_pairs=args.live_pairs,
        live_rate=args.live_rate,
        storm_nice=args.storm_nice,
        users=args.users,
        deflate=args.deflate,
        connect_concurrency=args.connect_concurrency,
        timeout=args.timeout,
        relay_ws=args.relay_ws,
        relay_script=args.relay_script,
        socketio_script=args.socketio_script,
        server_env=dict(args.server_env),
        json=args.json,
        quiet=args.quiet,
    )
    if args.workers is not None:
        cfg.workers = args.workers
    return cfg
