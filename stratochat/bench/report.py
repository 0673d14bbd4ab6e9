"""How results leave the bench: a live progress line on stderr, a table at the end, or JSON."""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO


def machine_info() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Progress:
    """One line, rewritten in place on a terminal; a line every few seconds otherwise."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.last_line = 0.0
        self.last_total = 0
        self.last_at = time.monotonic()
        self.width = 0

    def show(self, label: str, text: str) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not self.tty and now - self.last_line < 5:
            return
        self.last_line = now
        line = f"[{label}] {text}"
        if self.tty:
            pad = " " * max(0, self.width - len(line))
            self.stream.write("\r" + line + pad)
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def rate(self, total: int) -> float:
        now = time.monotonic()
        dt = now - self.last_at
        if dt < 0.25:
            return -1.0
        value = (total - self.last_total) / dt
        self.last_total, self.last_at = total, now
        return value

    def done(self) -> None:
        if self.stream is not None and self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
        self.width = 0
        self.last_total = 0


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


COLUMNS = (
    ("scenario", "run"),
    ("offered/s", "offered_per_s"),
    ("msgs/s", "delivered_per_s"),
    ("p50 ms", "p50"),
    ("p99 ms", "p99"),
    ("p99.9 ms", "p999"),
    ("lost", "lost"),
    ("dup", "duplicates"),
    ("errors", "errors_total"),
    ("cpu us/msg", "cpu_per_msg_us"),
    ("srv cores", "server_cores"),
    ("gen cores", "generator_cores"),
    ("KB/socket", "rss_per_socket_kb"),
)


def rows_of(run: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's rows: one, and for ``reconnect`` with live pairs a second for their traffic."""
    rows = [row_of(run)]
    live = run.get("live")
    if live:
        row = row_of({"scenario": "reconnect live", "mode": f"{live['pairs']} pairs, {live['rate']:g}/s", **live})
        rows.append(row | {"errors_total": None})  # errors are the run's, on the first row
    return rows


def row_of(run: dict[str, Any]) -> dict[str, Any]:
    latency = run.get("latency_ms") or {}
    server = run.get("server") or {}
    name = run["scenario"]
    if run.get("mode"):
        name += f" ({run['mode']})"
    return {
        "run": name,
        "offered_per_s": run.get("offered_per_s"),
        "delivered_per_s": run.get("delivered_per_s"),
        "p50": latency.get("p50"),
        "p99": latency.get("p99"),
        "p999": latency.get("p999"),
        "lost": run.get("lost"),
        "duplicates": run.get("duplicates"),
        "errors_total": run.get("errors_total"),
        "cpu_per_msg_us": server.get("cpu_per_msg_us"),
        "server_cores": server.get("cores"),
        "generator_cores": run.get("generator_cores"),
        "rss_per_socket_kb": server.get("rss_per_socket_kb"),
    }


def table(report: dict[str, Any]) -> str:
    runs = [r for r in report["runs"] if "skipped" not in r and "failed" not in r]
    rows = [[head for head, _ in COLUMNS]]
    for run in runs:
        for values in rows_of(run):
            rows.append([_fmt(values[key], 2 if key in ("p50", "p99", "p999") else 1) for _, key in COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    urls = report.get("urls") or [report["url"]]
    where = report["url"] if len(urls) == 1 else f"{len(urls)} nodes ({', '.join(urls)})"
    if report.get("redis"):
        where += f" with Redis at {report['redis']}"
    lines = [
        f"stratochat bench: {report['target']} at {where}  ({report['date']}, "
        f"{report['machine']['cpus']} CPUs, {report['config']['workers']} load workers)",
    ]
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for run in report["runs"]:
        if run.get("offered") is not None:
            lag = run.get("generator_lag_ms") or {}
            lines.append(
                f"  {run['scenario']}: offered {run['offered']:,}, sent {run['sent']:,}, delivered {run['delivered']:,}"
                f" (open loop; the generator sent p99 {lag.get('p99')} ms after due, max {lag.get('max')} ms)"
            )
        for note in run.get("notes", []):
            lines.append(f"  {run['scenario']}: {note}")
        if run.get("errors"):
            detail = ", ".join(f"{k} x{v}" for k, v in sorted(run["errors"].items()))
            lines.append(f"  {run['scenario']} errors: {detail}")
        if "skipped" in run:
            lines.append(f"  {run['scenario']}: skipped ({run['skipped']})")
        if "failed" in run:
            lines.append(f"  {run['scenario']}: FAILED: {run['failed']}")
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], as_json: bool, out: TextIO | None = None) -> None:
    import json

    out = out or sys.stdout
    if as_json:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write(table(report))
    out.flush()
