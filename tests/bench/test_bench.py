"""``stratochat bench`` at tiny sizes: each scenario runs, and loss and duplicates are detected.

Not timed tests: nothing here asserts a throughput or a latency, only that the bench measures, counts
and reports (a delivered message counted once, a dropped one as lost, a repeated one as a duplicate).
"""

from __future__ import annotations

import asyncio
import io
import json
import multiprocessing
import os
import pickle
import resource
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from stratochat.bench import BenchConfig, BenchSetupError, parse, run
from stratochat.bench import scenarios as bench_scenarios
from stratochat.bench.scenarios import SOCKETIO_PATH, Nodes
from stratochat.bench.stats import Bitmap, Histogram, missing
from stratochat.bench.workers import start_pipe_reader
from stratochat.core.hub import Hub, _UserSlot
from tests.services.redis import RedisServer
from tests.services.server import ThreadServer

ROOT = Path(__file__).resolve().parents[2]
TINY: dict[str, Any] = dict(
    workers=1,
    duration=1.2,
    warmup=0.2,
    pairs=2,
    window=2,
    group=3,
    sockets=6,
    hold=0.2,
    clients=6,
    users=2,
    missed=3,
    live_pairs=1,
    live_rate=10.0,
    drain=1.0,
    timeout=20.0,
    quiet=True,
)


def bench(url: str | None, scenarios: list[str], **overrides: Any) -> dict[str, Any]:
    cfg = BenchConfig(scenarios=scenarios, url=url, **{**TINY, **overrides})
    out = io.StringIO()
    doc = run(cfg, out=out)
    assert "msgs/s" in out.getvalue()  # the table was printed
    return doc


def bench_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``stratochat bench ARGS`` in a process of its own, one load worker, one second of sending."""
    return subprocess.run(
        [sys.executable, "-m", "stratochat", "bench", *args, "--workers", "1", "--duration", "1", "--warmup", "0.2"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )


@pytest.fixture
def unlimited(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    """A server with the tier limits lifted, as the bench sets up its own."""
    return make_server(free_daily_messages=None, login_max_failures=0, login_ip_max_failures=0)


def test_every_scenario_runs_without_loss(unlimited: ThreadServer) -> None:
    """pairs, fanout (over two workers), idle and reconnect deliver everything exactly once."""
    doc = bench(unlimited.url, ["pairs", "fanout", "idle", "reconnect"], workers=2)
    runs = {r["scenario"]: r for r in doc["runs"]}
    for name in ("pairs", "fanout"):
        r = runs[name]
        assert r["delivered"] > 0 and r["acked"] > 0, r
        assert (r["lost"], r["duplicates"], r["out_of_order"], r["errors_total"]) == (0, 0, 0, 0), r
        assert r["latency_ms"]["p50"] is not None and r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
    # Every acked fan-out message reached each of the 3 receivers.
    assert runs["fanout"]["delivered"] == 3 * runs["fanout"]["acked"]
    assert runs["pairs"]["delivered"] == runs["pairs"]["acked"]
    assert runs["idle"]["connected"] == 6 and runs["idle"]["still_open"] == 6
    rec = runs["reconnect"]
    assert rec["acked_while_away"] == 3 and rec["expected_recoveries"] == 6 * 3
    assert (rec["lost"], rec["duplicates"], rec["clients_recovered"]) == (0, 0, 6), rec
    assert rec["all_recovered_s"] is not None
    # No server pid was given for a URL: no server measurements are invented.
    assert "server" not in runs["pairs"]
    # The server's own stalls come from its /metrics, pid or not: the window saw the loop's timer tick.
    for name in ("pairs", "fanout", "reconnect"):
        stalls = runs[name]["server_stalls"]
        assert stalls["lag_p99_le_ms"] is not None and stalls["stalls_50ms"] >= 0, stalls
        assert any(n.startswith("server stalls in the window") for n in runs[name]["notes"])
    assert "server_stalls" not in runs["idle"]


def _drop_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub loses the 5th message frame it delivers to a receiver, while believing it delivered it."""
    original = Hub._deliver_local
    seen = {"n": 0}

    def dropping(
        self: Hub,
        user_id: str,
        slot: _UserSlot,
        frame: str,
        chat_seq: tuple[str, int] | None,
        exclude: str | None,
    ) -> None:
        if chat_seq is not None and any(c != exclude for c in slot.conns):
            seen["n"] += 1
            if seen["n"] == 5:
                slot.last_seq[chat_seq[0]] = chat_seq[1]
                return
        original(self, user_id, slot, frame, chat_seq, exclude)

    monkeypatch.setattr(Hub, "_deliver_local", dropping)


def _repeat_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub sends the 5th message frame it delivers to a receiver twice."""
    original = Hub._deliver_local
    seen = {"n": 0}

    def repeating(
        self: Hub,
        user_id: str,
        slot: _UserSlot,
        frame: str,
        chat_seq: tuple[str, int] | None,
        exclude: str | None,
    ) -> None:
        original(self, user_id, slot, frame, chat_seq, exclude)
        if chat_seq is not None and any(c != exclude for c in slot.conns):
            seen["n"] += 1
            if seen["n"] == 5:
                for conn in slot.conns.values():
                    if conn.conn_id != exclude:
                        conn.send_text(frame)

    monkeypatch.setattr(Hub, "_deliver_local", repeating)


def test_reconnect_with_live_traffic(unlimited: ThreadServer) -> None:
    """Live pairs keep sending over their sockets while the others drop and recover: both are reported,
    apart, and each delivers everything exactly once."""
    (r,) = bench(unlimited.url, ["reconnect"], workers=2, live_pairs=2, live_rate=40.0, warmup=0.5)["runs"]
    assert (r["lost"], r["duplicates"], r["clients_recovered"], r["errors_total"]) == (0, 0, 6, 0), r
    assert r["recovered_messages"] == r["expected_recoveries"] == 6 * 3 and r["all_recovered_s"] is not None
    live = r["live"]
    assert live["pairs"] == 2 and live["delivered"] > 0 and live["offered"] > 0, live
    assert (live["lost"], live["duplicates"], live["out_of_order"], live["refused"]) == (0, 0, 0, 0), live
    assert live["delivered"] == live["acked"] == live["sent"] == live["offered"], live
    assert live["latency_ms"]["p99"] is not None and live["generator_lag_ms"]["p50"] is not None
    text = io.StringIO()
    run(BenchConfig(scenarios=["reconnect"], url=unlimited.url, **{**TINY, "live_pairs": 0}), out=text)
    assert "reconnect live" not in text.getvalue()  # --live-pairs 0: no live traffic, no row


def test_a_message_lost_from_the_live_traffic_is_reported(
    monkeypatch: pytest.MonkeyPatch, unlimited: ThreadServer
) -> None:
    """During reconnect only the live pairs get message frames: a dropped one is live lost=1, while
    the recovery (over REST) still finds everything."""
    _drop_one(monkeypatch)
    (r,) = bench(unlimited.url, ["reconnect"], live_pairs=2, live_rate=40.0, warmup=0.5)["runs"]
    assert (r["lost"], r["clients_recovered"]) == (0, 6), r
    assert (r["live"]["lost"], r["live"]["duplicates"]) == (1, 0), r["live"]


def test_a_dropped_message_is_reported_lost(monkeypatch: pytest.MonkeyPatch, unlimited: ThreadServer) -> None:
    """A server that acks a message but never delivers it makes the bench report lost=1."""
    _drop_one(monkeypatch)
    (r,) = bench(unlimited.url, ["pairs"])["runs"]
    assert r["lost"] == 1 and r["duplicates"] == 0, r
    assert r["delivered"] == r["acked"] - 1


def test_a_repeated_message_is_reported_duplicate(monkeypatch: pytest.MonkeyPatch, unlimited: ThreadServer) -> None:
    """A server that delivers one message twice makes the bench report duplicates=1."""
    _repeat_one(monkeypatch)
    (r,) = bench(unlimited.url, ["pairs"])["runs"]
    assert r["duplicates"] == 1 and r["lost"] == 0, r
    assert r["delivered"] == r["acked"]


def test_bench_starts_and_measures_its_own_server() -> None:
    """Without --url the bench starts Stratochat itself (limits lifted), measures its CPU and RSS, and
    stops it; the open loop sends at the asked rate."""
    doc = bench(None, ["pairs", "idle"], rate=40.0, duration=1.5, warmup=0.5)
    pairs, idle = doc["runs"]
    assert doc["started_server"] is True and pairs["mode"] == "rate 40/s"
    assert (pairs["lost"], pairs["duplicates"], pairs["errors_total"]) == (0, 0, 0), pairs
    # 40 messages/s for 1.5 s, whatever the machine's speed (an open loop does not wait for deliveries).
    assert 45 <= pairs["sent"] <= 75, pairs
    assert pairs["offered"] == pairs["sent"] == pairs["delivered"], pairs  # offered vs delivered
    assert pairs["generator_lag_ms"]["p50"] is not None
    server = pairs["server"]
    assert server["cpu_s"] >= 0 and server["rss_kb_start"] > 10_000 and server["cpu_per_msg_us"] > 0
    assert idle["server"]["rss_kb_held"] > 0 and "rss_per_socket_kb" in idle["server"]
    # `stratochat serve` lifted its open-files limit to the hard one (which it inherited from us).
    assert idle["server"]["fd_limit"] == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    pid = server["pid"]
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_bench_drives_the_bare_relay() -> None:
    """--target relay starts benchmarks/relay.py and runs pairs, fanout and idle against it; reconnect
    is skipped, since the relay keeps no history."""
    doc = bench(None, ["pairs", "fanout", "idle", "reconnect"], target="relay")
    runs = {r["scenario"]: r for r in doc["runs"]}
    for name in ("pairs", "fanout"):
        assert runs[name]["delivered"] > 0, runs[name]
        assert (runs[name]["lost"], runs[name]["duplicates"]) == (0, 0), runs[name]
    assert runs["fanout"]["delivered"] == 3 * runs["fanout"]["sent"]
    assert runs["idle"]["connected"] == 6
    assert "skipped" in runs["reconnect"]
    assert runs["pairs"]["server"]["cpu_per_msg_us"] > 0


def test_cli_help_and_bad_arguments() -> None:
    """`stratochat bench --help` documents the scenarios; a bad option exits 2 with a message."""
    ok = subprocess.run(
        [sys.executable, "-m", "stratochat", "bench", "--help"], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0 and "reconnect" in ok.stdout and "--window" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "stratochat", "bench", "nosuch"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "unknown scenario" in bad.stderr
    with pytest.raises(SystemExit):
        parse(["pairs", "--warmup", "5", "--duration", "2"])
    cfg = parse(["fanout", "idle", "--group", "7", "--json", "--url", "http://127.0.0.1:1/"])
    assert cfg.scenarios == ["fanout", "idle"] and cfg.group == 7 and cfg.url == "http://127.0.0.1:1"


def test_a_server_whose_limits_refuse_the_load_is_named_in_the_report(
    make_server: Callable[..., ThreadServer],
) -> None:
    """Against a server on its default limits the sends meet its burst limit: the run says that its
    figures measure those limits, and how to lift them, instead of leaving a bare error count."""
    limited = make_server(burst_rate=1, burst_size=2, login_max_failures=0, login_ip_max_failures=0)
    cfg = BenchConfig(scenarios=["pairs"], url=limited.url, **{**TINY, "window": 4})
    out = io.StringIO()
    doc = run(cfg, out=out)
    (r,) = doc["runs"]
    assert r["errors"].get("error frame: rate_limited", 0) > 0 and r["lost"] == 0
    (note,) = [n for n in r["notes"] if "for its limits" in n]
    assert "STRATOCHAT_BURST_RATE=0" in note
    assert "measure its limits, not its speed" in out.getvalue()


def test_a_scenario_the_server_refuses_keeps_the_runs_before_it(make_server: Callable[..., ThreadServer]) -> None:
    """A server that runs out of sign-ups after the first scenario: its table still prints, the refused
    scenario says why and how to lift the limit, the rest are not run, and the exit status is 1."""
    limited = make_server(signup_rate=0.01, signup_burst=4, free_daily_messages=None, login_ip_max_failures=0)
    proc = bench_cli("pairs", "fanout", "idle", "--url", limited.url, "--quiet", "--pairs", "2", "--group", "3")
    assert proc.returncode == 1, proc.stderr
    (pairs_row,) = [line for line in proc.stdout.splitlines() if line.startswith("pairs (window")]
    assert pairs_row.split()[4].replace(",", "").isdigit()  # offered "-", then msgs/s
    (failed,) = [line for line in proc.stdout.splitlines() if "fanout: FAILED" in line]
    assert "answered 429" in failed and "STRATOCHAT_SIGNUP_RATE=0" in failed
    assert "idle: skipped (not run after fanout failed)" in proc.stdout
    assert "fanout failed" in proc.stderr


def test_an_unlimited_run_has_no_limits_note(unlimited: ThreadServer) -> None:
    (r,) = bench(unlimited.url, ["pairs"])["runs"]
    assert r["errors_total"] == 0
    assert not [n for n in r.get("notes", []) if "for its limits" in n]


def test_cli_json_against_a_url(unlimited: ThreadServer) -> None:
    """`stratochat bench --url ... --json` prints one JSON document and exits 0 when nothing was lost."""
    proc = bench_cli("pairs", "--url", unlimited.url, "--json", "--quiet", "--pairs", "1", "--drain", "1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["runs"][0]["scenario"] == "pairs" and doc["runs"][0]["lost"] == 0


def test_a_worker_reads_a_command_that_arrives_in_pieces() -> None:
    """A command bigger than the pipe's buffer, written in two parts with a pause between, reaches the
    worker whole (it was once taken for the coordinator going away); then the pipe's close does."""
    parent, child = multiprocessing.Pipe()
    command = ("drain", {"expected": {k: bytes([k % 251]) * 4096 for k in range(256)}})
    body = pickle.dumps(command)
    assert len(body) > 1 << 20

    async def receive() -> list[Any]:
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        start_pipe_reader(child, asyncio.get_running_loop(), inbox)

        def write() -> None:
            os.write(parent.fileno(), struct.pack("!i", len(body)) + body[:1000])
            time.sleep(0.3)
            fd = parent.fileno()
            view = memoryview(body)[1000:]
            while view:
                view = view[os.write(fd, view) :]
            parent.close()

        writer = threading.Thread(target=write)
        writer.start()
        got = [await asyncio.wait_for(inbox.get(), 10), await asyncio.wait_for(inbox.get(), 10)]
        writer.join()
        return got

    try:
        first, then = uvloop.run(receive())
    finally:
        child.close()
    assert first == command
    assert then is None


def test_server_stalls_are_the_difference_of_two_metrics_pages() -> None:
    """The loop's lag and the collector's pauses in a window: bucket counts of the page at its end minus
    those at its start, summed over nodes and generations."""
    from stratochat.bench import stalls

    def page(lag: list[int], gc: list[int], gc_sum: float) -> str:
        bounds = ["0.001", "0.01", "0.05", "0.1", "+Inf"]
        lines = [f'{stalls.LAG}_bucket{{node="n",le="{b}"}} {n}' for b, n in zip(bounds, lag, strict=True)]
        gen0 = f'{stalls.GC}_bucket{{node="n",generation="0",le='
        lines += [f'{gen0}"{b}"}} {n}' for b, n in zip(bounds, gc, strict=True)]
        lines += [f'{stalls.GC}_bucket{{node="n",generation="2",le="{b}"}} 1' for b in bounds]
        lines += [f'{stalls.LAG}_sum{{node="n"}} 1.0', f'{stalls.GC}_sum{{node="n",generation="0"}} {gc_sum}']
        return "\n".join(["# TYPE x histogram", "other_metric 3", *lines])

    before = stalls.parse(page([10, 10, 10, 10, 10], [5, 5, 5, 5, 5], 0.5))
    after = stalls.parse(page([100, 190, 196, 199, 200], [50, 52, 55, 55, 55], 0.75))
    assert before[0][stalls.GC][float("inf")] == 6  # generation 0's 5 and generation 2's 1
    figures = stalls.window(before, after)
    assert figures == {
        "lag_p99_le_ms": 100.0,  # 190 observations, the 99th percentile within 0.1 s
        "lag_longest_le_ms": "inf",
        "stalls_50ms": 4,
        "gc_collections": 50,
        "gc_pauses_10ms": 3,
        "gc_longest_le_ms": 50.0,
        "gc_s": 0.25,
    }
    assert "4 over 50 ms" in (stalls.note(figures) or "")
    assert "50 collections (0.25 s), 3 over 10 ms, longest <= 50.0 ms" in (stalls.note(figures) or "")
    quiet = stalls.window(after, after)  # nothing collected in the window: no "longest" to print
    assert quiet is not None and quiet["gc_collections"] == 0 and quiet["gc_longest_le_ms"] is None
    assert (stalls.note(quiet) or "").endswith("; 0 collections (0.0 s)")
    assert "None" not in (stalls.note(quiet) or "")
    assert stalls.window(None, after) is None and stalls.note(None) is None


def test_histogram_and_bitmaps() -> None:
    """Percentiles are within 1% of the true value; bitmaps count duplicates and what is missing."""
    h = Histogram()
    for ms in range(1, 1001):
        h.add(ms * 1_000_000)
    p50, p99 = h.percentile_ms(50), h.percentile_ms(99)
    assert p50 is not None and 500 <= p50 <= 505
    assert p99 is not None and 990 <= p99 <= 1000
    other = Histogram()
    other.add(5_000_000_000)
    h.merge(other)
    assert h.count == 1001 and h.summary()["max"] == 5000.0
    a, b = Bitmap(), Bitmap()
    for n in (0, 3, 700, 701):
        assert a.add(n)
    assert not a.add(700) and a.size == 4
    b.add(3)
    assert missing(bytes(a.bits), bytes(b.bits)) == 3 and missing(bytes(b.bits), bytes(a.bits)) == 0


def test_compare_script_alternates_and_prints_ratios(tmp_path: Path) -> None:
    """benchmarks/compare.py runs the relay and Stratochat back to back and prints their ratio."""
    out = tmp_path / "compare.json"
    proc = subprocess.run(
        [
            *[sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--rounds", "1", "--cases", "pairs"],
            *["--duration", "1", "--warmup", "0.2", "--pairs", "1", "--workers", "1", "--out", str(out)],
            *["--bench-arg=--drain=1"],
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "delivered msgs/s" in proc.stdout and "x >= 0.75" in proc.stdout
    doc = json.loads(out.read_text())
    assert {r["target"] for r in doc["runs"]} == {"relay", "stratochat"}
    first = doc["summary"][0]
    assert first["ratio"] is not None and first["ratio"] > 0


def test_serve_raises_its_open_files_limit() -> None:
    """A process started with a low soft limit (1,024 is the usual default) lifts it to the hard one."""
    code = (
        "import resource; soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard)); "
        "from stratochat.cli import raise_open_files_limit; "
        "now = raise_open_files_limit(); print(now[0], now[1], resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    soft, hard, in_force = (int(x) for x in out.stdout.split())
    assert soft == hard == in_force


def test_too_many_sockets_for_the_local_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that needs more ephemeral ports than the machine has is refused before it starts."""
    monkeypatch.setattr(bench_scenarios, "local_port_range", lambda: (55000, 60999))
    bench_scenarios.check_ports("http://127.0.0.1:1", 10)
    with pytest.raises(BenchSetupError, match="ip_local_port_range"):
        bench_scenarios.check_ports("http://127.0.0.1:1", 5500)
    # Spread over two nodes, each address has its own ports.
    bench_scenarios.check_node_ports(["http://127.0.0.1:1", "http://127.0.0.1:2"], 9000)
    with pytest.raises(BenchSetupError, match="ip_local_port_range"):
        bench_scenarios.check_node_ports(["http://127.0.0.1:1", "http://127.0.0.1:2"], 11000)


def test_compare_script_reconnect_and_rate_cases(tmp_path: Path) -> None:
    """compare.py's reconnect case prints the live p99 with its verdict next to the recovery's; rate5000
    prints delivered/offered, loss and the p99 ratio."""
    proc = subprocess.run(
        [
            *[
                sys.executable,
                str(ROOT / "benchmarks" / "compare.py"),
                "--rounds",
                "1",
                "--cases",
                "rate5000,reconnect",
            ],
            *["--duration", "1", "--warmup", "0.2", "--pairs", "1", "--workers", "1", "--fast-rate", "20"],
            *["--clients", "4", "--live-pairs", "1", "--live-rate", "10", "--bench-arg=--drain=1"],
            "--bench-arg=--users=2",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "failed" not in proc.stdout, proc.stdout
    for metric in ("s until 4 clients recovered", "live p99 ms during the storm", "delivered / offered at 20"):
        line = next(x for x in proc.stdout.splitlines() if metric in x)
        assert line.rstrip().endswith(("meets", "misses")), line
    assert "<= 100" in proc.stdout and "x <= 3" in proc.stdout


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_two_stratochat_nodes_with_redis() -> None:
    """--nodes 2 starts a redis-server and two Stratochat processes on one data dir; each pair's partners
    sit on different nodes, so every message crosses Redis; both nodes and Redis are measured and stopped."""
    doc = bench(None, ["pairs"], nodes=2)
    (r,) = doc["runs"]
    assert len(doc["urls"]) == 2 and doc["redis"].startswith("redis://127.0.0.1:")
    assert r["delivered"] > 0 and r["delivered"] == r["acked"], r
    assert (r["lost"], r["duplicates"]) == (0, 0), r
    # Known server bug (reported; the hub's gap fill, not the bench): a fill sends the sender's own
    # messages that it fetched from the store to the sending socket too. Anything else is an error.
    assert set(r["errors"]) <= {"own message echoed to its sending socket"}, r
    pids = r["server"]["pids"]
    assert len(pids) == 2 and r["server"]["redis_cores"] >= 0
    assert all(_gone(pid) for pid in pids)


def test_bench_drives_socketio_over_redis(redis_server: RedisServer) -> None:
    """--target socketio starts benchmarks/socketio_relay.py twice on a given Redis and speaks Socket.IO to
    it: pairs across the two processes and fanout arrive exactly once; reconnect is skipped."""
    doc = bench(None, ["pairs", "fanout", "reconnect"], target="socketio", nodes=2, redis_url=redis_server.url)
    runs = {r["scenario"]: r for r in doc["runs"]}
    assert "redis" not in doc or doc["redis"] == redis_server.url
    for name in ("pairs", "fanout"):
        r = runs[name]
        assert r["delivered"] > 0, r
        assert (r["lost"], r["duplicates"], r["errors_total"]) == (0, 0, 0), r
    assert runs["fanout"]["delivered"] == 3 * runs["fanout"]["sent"]
    assert "skipped" in runs["reconnect"]
    assert len(runs["pairs"]["server"]["pids"]) == 2


def test_several_urls_put_partners_on_different_nodes() -> None:
    """Client n goes to node n % N: the two partners of every pair are on different nodes."""
    nodes = Nodes(["http://a:1", "http://b:2"], "socketio", "r1")
    assert nodes.url(0) == "ws://a:1" + SOCKETIO_PATH and nodes.url(1) == "ws://b:2" + SOCKETIO_PATH
    assert nodes.room(3) == "r1-3"
    relay = Nodes(["http://a:1"], "relay", "r1")
    assert relay.url(5, "room") == "ws://a:1/ws?room=room" and relay.room(5) is None
    cfg = parse(["pairs", "--url", "http://a:1/", "--url", "http://b:2", "--server-pid", "7"])
    assert cfg.urls == ["http://a:1", "http://b:2"] and cfg.url == "http://a:1" and cfg.server_pids == [7]
    with pytest.raises(SystemExit):
        parse(["pairs", "--target", "relay", "--nodes", "2"])
