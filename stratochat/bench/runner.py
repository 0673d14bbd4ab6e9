"""The coordinator: sets a scenario up, starts the worker processes, moves them phase by phase, and
turns what they report into one result (throughput, latency, loss, duplicates, server cost).

Every process it starts (workers, and the server when no ``--url`` is given) is stopped before
``run`` returns, whatever happened; every wait is bounded by ``--timeout`` or ``--drain``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, TextIO

from . import report, scenarios, stalls
from .config import BenchConfig, parse
from .server import BenchSetupError, ProcStats, Sample, StartedDeployment
from .stats import Histogram, missing
from .workers import raise_fd_limit, worker_main

# Workers get the "go" this long before they start sending, so all start together.
START_DELAY_NS = 300_000_000
# File descriptors a process needs besides its sockets (SQLite, pipes, logs, HTTP connections).
FD_HEADROOM = 1024


# Error frames that mean the server's tier limits refused the load, not that it could not carry it.
LIMIT_ERRORS = ("error frame: rate_limited", "error frame: quota_exceeded")


def limits_note(errors: Counter[str]) -> str | None:
    """A note for a run whose sends the server's limits refused: its figures measure those limits."""
    refused = sum(errors.get(kind, 0) for kind in LIMIT_ERRORS)
    if not refused:
        return None
    return (
        f"the server refused {refused:,} sends for its limits (rate_limited, quota_exceeded): these figures "
        "measure its limits, not its speed; lift them (STRATOCHAT_BURST_RATE=0, "
        "STRATOCHAT_FREE_DAILY_MESSAGES=unlimited) or leave out --url to bench a server of its own"
    )


class BenchRunError(Exception):
    """A worker failed or did not answer in time."""


class ScenarioRun:
    def __init__(
        self,
        cfg: BenchConfig,
        scenario: str,
        urls: list[str],
        stats: ProcStats | None,
        progress: report.Progress,
        redis_stats: ProcStats | None = None,
    ):
        self.cfg = cfg
        self.scenario = scenario
        self.urls = urls
        self.url = urls[0]
        self.stats = stats
        self.redis_stats = redis_stats
        self.progress = progress
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        self.latest: dict[int, dict[str, Any]] = {}
        # Phase messages read early (a worker may finish a phase before the coordinator's clock says so).
        self.early: list[tuple[int, str, dict[str, Any]]] = []
        # Workers that sent their result: they may close the pipe any time after.
        self.finished: set[int] = set()
        self.gone: set[int] = set()
        self.worker_errors: dict[int, dict[str, int]] = {}
        self.label = scenario

    # workers -------------------------------------------------------------------------------------
    def start_workers(self, setup: scenarios.Setup) -> None:
        ctx = multiprocessing.get_context("spawn")
        for plan in setup.plans:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), name=f"bench-worker-{plan.index}", daemon=True)
            proc.start()
            child.close()
            parent.send(plan)
            self.conns.append(parent)
            self.procs.append(proc)

    def stop_workers(self) -> None:
        for conn in self.conns:
            conn.close()  # a worker still waiting for a command sees the pipe close and exits
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)

    def broadcast(self, kind: str, **payload: Any) -> None:
        for conn in self.conns:
            conn.send((kind, payload))

    def _pump(self, timeout: float) -> list[tuple[int, str, dict[str, Any]]]:
        """Read what the workers sent within ``timeout``; progress is kept, the rest returned."""
        out: list[tuple[int, str, dict[str, Any]]] = []
        listening = [c for i, c in enumerate(self.conns) if i not in self.gone]
        if not listening:
            time.sleep(timeout)
            return out
        for conn in wait(listening, timeout=timeout):
            assert isinstance(conn, Connection)
            i = self.conns.index(conn)
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError) as exc:
                if i in self.finished:
                    self.gone.add(i)
                    continue
                self.procs[i].join(timeout=1)  # for its exit code (negative: the signal that killed it)
                raise BenchRunError(f"worker {i} exited unexpectedly (exit code {self.procs[i].exitcode})") from exc
            if kind == "failed":
                raise BenchRunError(f"worker {i} failed:\n{payload['error']}")
            if kind == "progress":
                self.latest[i] = payload
            else:
                if kind == "result":
                    self.finished.add(i)
                out.append((i, kind, payload))
        self._show()
        return out

    def collect(self, kind: str, timeout: float, moving: str | None = None) -> list[dict[str, Any]]:
        """Wait for ``kind`` from every worker, for ``timeout`` s; with ``moving`` (a progress counter),
        for ``timeout`` s after that counter last grew, so a slow but steady phase (20,000 handshakes) ends."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        last = -1
        early, self.early = self.early, []
        while len(got) < len(self.conns):
            if moving is not None:
                now_at = sum(p.get(moving, 0) for p in self.latest.values())
                if now_at > last:
                    last, deadline = now_at, time.monotonic() + timeout
            left = deadline - time.monotonic()
            if left <= 0:
                waiting = sorted(set(range(len(self.conns))) - set(got))
                raise BenchRunError(f"workers {waiting} sent no '{kind}' within {timeout:.0f}s")
            for i, k, payload in early or self._pump(min(left, 0.25)):
                if k != kind:
                    raise BenchRunError(f"worker {i} sent '{k}' while the coordinator waited for '{kind}'")
                got[i] = payload
                if "errors" in payload:
                    self.worker_errors[i] = payload["errors"]
            early = []
        return [got[i] for i in range(len(self.conns))]

    def pump_until(self, t_ns: int) -> None:
        while (left := (t_ns - time.monotonic_ns()) / 1e9) > 0:
            self.early.extend(self._pump(min(left, 0.25)))

    def _show(self) -> None:
        delivered = sum(p.get("delivered", 0) for p in self.latest.values())
        errors = sum(p.get("errors", 0) for p in self.latest.values())
        rate = self.progress.rate(delivered)
        text = f"delivered {delivered:,}"
        if rate >= 0:
            text += f" ({rate:,.0f}/s)"
        if self.scenario == "reconnect":
            recovered = sum(p.get("recovered", 0) for p in self.latest.values())
            text = f"recovered clients {recovered:,}  live delivered {delivered:,}"
        self.progress.show(self.label, f"{text}  errors {errors}")

    def sample(self) -> Sample | None:
        return self.stats.sample() if self.stats is not None else None

    def redis_sample(self) -> Sample | None:
        return self.redis_stats.sample() if self.redis_stats is not None else None

    def stalls(self) -> tuple[stalls.Buckets, dict[str, float]] | None:
        """The nodes' loop-lag and collector histograms now (Stratochat's ``/metrics``)."""
        return stalls.scrape(self.urls) if self.cfg.target == "stratochat" else None

    def _add_stalls(self, result: dict[str, Any], before: Any, after: Any) -> None:
        figures = stalls.window(before, after)
        if figures is not None:
            result["server_stalls"] = figures
            result.setdefault("notes", []).append(stalls.note(figures))

    # the run -------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.monotonic()
        self.progress.show(self.label, "setting up accounts and chats")
        setup = asyncio.run(scenarios.setup(cfg, self.scenario, self.urls))
        result: dict[str, Any] = {"scenario": self.scenario, **setup.info}
        if self.scenario in ("pairs", "fanout"):
            result["mode"] = f"rate {cfg.rate:g}/s" if cfg.rate is not None else f"window {cfg.window}"
        result["setup_s"] = round(time.monotonic() - started, 2)
        before = self.sample()
        self.start_workers(setup)
        try:
            connected = self.collect("connected", cfg.timeout + 30, moving="connected")
            errors: Counter[str] = Counter()
            result["connected"] = sum(c["ok"] for c in connected)
            result["connect_s"] = round(max(c["seconds"] for c in connected), 2)
            if self.scenario in ("pairs", "fanout"):
                self._traffic(setup, result)
            elif self.scenario == "idle":
                self._idle(result, before)
            else:
                self._reconnect(setup, result, errors)
        finally:
            self.stop_workers()
            self.progress.done()
        # A worker's error counts are its totals so far: the last ones it sent count.
        for counts in self.worker_errors.values():
            errors.update(counts)
        result["errors"] = dict(errors)
        result["errors_total"] = sum(errors.values())
        note = limits_note(errors)
        if note is not None:
            result.setdefault("notes", []).append(note)
        return result

    def _traffic(self, setup: scenarios.Setup, result: dict[str, Any]) -> None:
        cfg = self.cfg
        t_go = time.monotonic_ns() + START_DELAY_NS
        t_measure = t_go + int(cfg.warmup * 1e9)
        t_stop = t_go + int(cfg.duration * 1e9)
        self.broadcast("go", t_go=t_go, t_measure=t_measure, t_stop=t_stop)
        self.pump_until(t_measure)
        s0, r0, m0 = self.sample(), self.redis_sample(), self.stalls()
        self.pump_until(t_stop)
        s1, r1, m1 = self.sample(), self.redis_sample(), self.stalls()
        window_s = cfg.duration - cfg.warmup
        done = self._drain_traffic(setup, result, window_s)
        s2 = self.sample()
        result["generator_cores"] = round(sum(p["cpu_window"] for p in done) / window_s, 2)
        if "offered" in result:
            result["offered_per_s"] = round(result["offered"] / cfg.duration, 1)
        delivered_window = result["delivered_window"]
        if s0 is not None and s1 is not None:
            cpu = s1.cpu_s - s0.cpu_s
            result["server"] = {
                "pid": self.stats.pid if self.stats else None,
                "cpu_s": round(cpu, 3),
                "cores": round(cpu / max(1e-9, s1.at - s0.at), 2),
                "cpu_per_msg_us": round(cpu / delivered_window * 1e6, 1) if delivered_window else None,
                "rss_kb_start": s0.rss_kb,
                "rss_kb_end": (s2 or s1).rss_kb,
            }
            self._nodes_and_redis(result["server"], r0, r1)
        self._add_stalls(result, m0, m1)

    def _nodes_and_redis(self, server: dict[str, Any], r0: Sample | None, r1: Sample | None) -> None:
        """Several nodes: which pids the server figures sum; a Redis the bench started: its cores."""
        if self.stats is not None and len(self.stats.pids) > 1:
            server["pids"] = list(self.stats.pids)
        if r0 is not None and r1 is not None:
            server["redis_cores"] = round((r1.cpu_s - r0.cpu_s) / max(1e-9, r1.at - r0.at), 2)

    def _drain_traffic(self, setup: scenarios.Setup, into: dict[str, Any], window_s: float) -> list[dict[str, Any]]:
        """After the senders stopped: collect what was sent and acked, tell each worker what its receivers
        should get, collect what they got, and put the figures (offered, sent, delivered, latency, lost,
        duplicates, the generator's lag) into ``into``. Returns the workers' results."""
        cfg = self.cfg
        sent = self.collect("sent", cfg.drain + cfg.timeout)
        senders: dict[int, dict[str, Any]] = {}
        for part in sent:
            senders.update(part["senders"])
        for i, plan in enumerate(setup.plans):
            keys = {k for c in plan.clients for k in c.receives_from}
            self.conns[i].send(("drain", {"expected": {k: senders[k]["acked_bits"] for k in keys if k in senders}}))
        done = self.collect("result", 3 * cfg.drain + cfg.timeout)
        hist, before, lag = Histogram(), Histogram(), Histogram()
        lost = 0
        for part in done:
            hist.merge(part["hist"])
            before.merge(part["hist_before"])
            lag.merge(part["lag"])
            for received in part["received"]:
                for key, bits in received.items():
                    lost += missing(senders[key]["acked_bits"], bits)
        delivered_window = sum(p["window_delivered"] for p in done)
        n_sent = sum(s["sent"] for s in senders.values())
        n_acked = sum(s["acked"] for s in senders.values())
        n_errored = sum(s["errored"] for s in senders.values())
        offered = [s["offered"] for s in senders.values() if s["offered"] is not None]
        if offered:
            # Open loop: what the schedule offered, to compare with what was sent and delivered.
            into["offered"] = sum(offered)
        into.update(
            sent=n_sent,
            acked=n_acked,
            refused=n_errored,
            unacked=n_sent - n_acked - n_errored,
            delivered=sum(p["delivered"] for p in done),
            delivered_window=delivered_window,
            delivered_per_s=round(delivered_window / window_s, 1) if window_s > 0 else None,
            latency_ms=hist.summary(),
            lost=lost,
            duplicates=sum(p["duplicates"] for p in done),
            out_of_order=sum(p["out_of_order"] for p in done),
            window_s=round(window_s, 3),
        )
        if offered:
            into["generator_lag_ms"] = lag.summary()
        if self.scenario == "reconnect":
            # The live pairs' latency before the drop: the same traffic without the storm, to compare with.
            into["latency_before_ms"] = before.summary()
        return done

    def _idle(self, result: dict[str, Any], before: Sample | None) -> None:
        deadline = time.monotonic_ns() + int(self.cfg.hold * 1e9)
        self.pump_until(deadline)
        held = self.sample()
        self.broadcast("stop")
        done = self.collect("result", self.cfg.timeout)
        result["still_open"] = sum(p["still_open"] for p in done)
        if before is not None and held is not None:
            n = max(1, result["connected"])
            result["server"] = {
                "pid": self.stats.pid if self.stats else None,
                "rss_kb_before": before.rss_kb,
                "rss_kb_held": held.rss_kb,
                "rss_per_socket_kb": round((held.rss_kb - before.rss_kb) / n, 2),
                "cpu_s_connecting": round(held.cpu_s - before.cpu_s, 3),
                "fd_limit": self.stats.fd_limit() if self.stats else None,
            }
        result["notes"] = [
            f"{result['connected']:,} of {self.cfg.sockets:,} sockets connected in {result['connect_s']} s, "
            f"{result['still_open']:,} still open after {self.cfg.hold:g} s"
        ]
        fd_limit = (result.get("server") or {}).get("fd_limit")
        if fd_limit is not None and fd_limit < self.cfg.sockets + 100:
            result["notes"].append(
                f"the server may open only {fd_limit:,} files (its sockets included): raise its RLIMIT_NOFILE"
            )

    def _reconnect(self, setup: scenarios.Setup, result: dict[str, Any], errors: Counter[str]) -> None:
        cfg = self.cfg
        # The live pairs start first and settle for --warmup s; their figures count from the drop on.
        t_go = time.monotonic_ns() + START_DELAY_NS
        self.broadcast("live", t_go=t_go)
        self.pump_until(t_go + int(cfg.warmup * 1e9))
        m0 = self.stalls()
        t_drop = time.monotonic_ns()
        self.broadcast("drop", t_measure=t_drop)
        self.collect("dropped", cfg.timeout)
        self.progress.show(self.label, "sending while the clients are away")
        missed = asyncio.run(scenarios.send_missed(cfg, self.url, setup.chats))
        errors.update(missed["errors"])
        acked: dict[str, set[int]] = {c: set(seqs) for c, seqs in missed["acked"].items()}
        s0, r0 = self.sample(), self.redis_sample()
        t0 = time.monotonic_ns()
        self.broadcast("reconnect", t0=t0)
        done = self.collect("recovered", cfg.timeout + 30)
        s1, r1, m1 = self.sample(), self.redis_sample(), self.stalls()
        t_end = time.monotonic_ns()
        elapsed = max(1e-9, (t_end - t0) / 1e9)
        self.broadcast("stop_live", t_stop=t_end)
        live: dict[str, Any] = {"pairs": cfg.live_pairs, "rate": cfg.live_rate if cfg.live_pairs else None}
        live_done = self._drain_traffic(setup, live, (t_end - t_drop) / 1e9)
        live_cpu = sum(p["cpu_window"] for p in live_done)
        live_s = (t_end - t_go) / 1e9
        lost = 0
        times: list[float] = []
        complete = 0
        expected = 0
        plan_clients = [c for plan in setup.plans for c in plan.clients if c.chats]
        results = [c for part in done for c in part["clients"]]
        for spec, got in zip(plan_clients, results, strict=True):
            missing_here = 0
            for chat in spec.chats:
                want = acked.get(chat, set())
                expected += len(want)
                missing_here += len(want - set(got["recovered"].get(chat, ())))
            lost += missing_here
            if got["recovery_ns"] is not None:
                times.append(got["recovery_ns"] / 1e9)
                if missing_here == 0:
                    complete += 1
        times.sort()

        def pct(p: float) -> float | None:
            return round(times[min(len(times) - 1, int(len(times) * p / 100))], 3) if times else None

        if cfg.live_pairs:
            live["offered_per_s"] = (
                round(live["offered"] / max(1e-9, (t_end - t_go) / 1e9), 1) if "offered" in live else None
            )
        result.update(
            acked_while_away=sum(len(v) for v in acked.values()),
            expected_recoveries=expected,
            recovered_messages=expected - lost,
            lost=lost,
            duplicates=sum(p["duplicates"] for p in done),
            clients_recovered=complete,
            recovery_s={"p50": pct(50), "p99": pct(99), "max": round(times[-1], 3) if times else None},
            all_recovered_s=round(times[-1], 3) if times and complete == cfg.clients else None,
            # The live pairs' worker is counted too: it shares the machine with the recovering ones.
            generator_cores=round(sum(p["cpu"] for p in done) / elapsed + live_cpu / max(1e-9, live_s), 2),
            live=live if cfg.live_pairs else None,
        )
        if s0 is not None and s1 is not None:
            result["server"] = {
                "pid": self.stats.pid if self.stats else None,
                "cpu_s": round(s1.cpu_s - s0.cpu_s, 3),
                "cores": round((s1.cpu_s - s0.cpu_s) / elapsed, 2),
                "rss_kb_end": s1.rss_kb,
            }
            self._nodes_and_redis(result["server"], r0, r1)
        rec = result["recovery_s"]
        result["notes"] = [
            f"{complete:,} of {cfg.clients:,} clients recovered every missed message: all within "
            f"{result['all_recovered_s']} s (p50 {rec['p50']} s, p99 {rec['p99']} s); {expected - lost:,} of "
            f"{expected:,} missed deliveries recovered, lost {lost}, dup {result['duplicates']}"
            + (f" (their load workers at nice {cfg.storm_nice})" if cfg.storm_nice else "")
        ]
        if cfg.live_pairs:
            lat = live["latency_ms"]
            result["notes"].append(
                f"live traffic ({cfg.live_pairs} pairs, {cfg.live_rate:g} msg/s offered) from the drop until all "
                f"recovered ({live['window_s']:.1f} s): {live['delivered']:,} of {live.get('offered', 0):,} offered "
                f"delivered, p50/p99/p99.9 {lat['p50']}/{lat['p99']}/{lat['p999']} ms, lost {live['lost']}, "
                f"dup {live['duplicates']} (before the drop: p50/p99 {live['latency_before_ms']['p50']}/"
                f"{live['latency_before_ms']['p99']} ms; the generator sent p99 {live['generator_lag_ms']['p99']} ms "
                "after due)"
            )
        self._add_stalls(result, m0, m1)


def run(cfg: BenchConfig, *, out: TextIO | None = None, err: TextIO | None = None) -> dict[str, Any]:
    """Run every scenario of ``cfg`` and write the report (table or JSON) to ``out``; returns it."""
    # A server the bench starts inherits this limit (and raises its soft limit to it at startup).
    raise_fd_limit(cfg.most_sockets() + FD_HEADROOM)
    progress = report.Progress(None if cfg.quiet else (err or sys.stderr))
    doc: dict[str, Any] = {
        "bench": "stratochat-bench/1",
        "date": report.now_iso(),
        "machine": report.machine_info(),
        "target": cfg.target,
        "url": cfg.url,
        "started_server": cfg.url is None,
        "config": cfg.public(),
        "runs": [],
    }
    with contextlib.ExitStack() as stack:
        redis_stats = None
        if cfg.url is None:
            nodes = f"{cfg.nodes} {cfg.target} servers" if cfg.nodes > 1 else f"a {cfg.target} server"
            progress.show("bench", f"starting {nodes}")
            deployment = stack.enter_context(StartedDeployment(cfg))
            urls = deployment.urls
            pids = deployment.pids
            if deployment.redis_pid is not None:
                redis_stats = ProcStats(deployment.redis_pid)
            doc["redis"] = deployment.redis_url
        else:
            urls, pids = cfg.urls, cfg.server_pids
        doc["url"] = urls[0]
        doc["urls"] = urls
        stats = ProcStats(*pids) if pids else None
        for at, scenario in enumerate(cfg.scenarios):
            if scenario == "reconnect" and cfg.target != "stratochat":
                doc["runs"].append(
                    {"scenario": scenario, "skipped": f"the {cfg.target} baseline keeps no history to recover from"}
                )
                continue
            try:
                doc["runs"].append(ScenarioRun(cfg, scenario, urls, stats, progress, redis_stats).run())
            except (BenchSetupError, BenchRunError) as exc:
                # The scenarios already run keep their figures; the rest would meet the same server.
                progress.done()
                doc["runs"].append({"scenario": scenario, "failed": str(exc)})
                doc["runs"].extend(
                    {"scenario": s, "skipped": f"not run after {scenario} failed"} for s in cfg.scenarios[at + 1 :]
                )
                break
    report.write(doc, cfg.json, out)
    return doc


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str]) -> int:
    """``stratochat bench ...``: 0 when every run delivered everything exactly once, 3 when some run
    lost or duplicated messages, 1 when a scenario could not run."""
    cfg = parse(argv)
    # SIGTERM (a timeout, a supervisor) unwinds like Ctrl-C, so the servers and workers are stopped.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        doc = run(cfg)
    except (BenchSetupError, BenchRunError) as exc:  # before any scenario: the servers did not start
        print(f"stratochat bench: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = [r for r in doc["runs"] if "failed" in r]
    for r in failed:
        print(f"stratochat bench: {r['scenario']} failed: {r['failed']}", file=sys.stderr)
    bad = [
        r
        for r in doc["runs"]
        if r.get("lost")
        or r.get("duplicates")
        or (r.get("live") or {}).get("lost")
        or (r.get("live") or {}).get("duplicates")
    ]
    return 1 if failed else 3 if bad else 0
