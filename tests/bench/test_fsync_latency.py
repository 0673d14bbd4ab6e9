"""benchmarks/fsync_latency.py, once at a tiny size: it syncs what it writes and leaves no file behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fsync_latency.py"


@pytest.mark.parametrize("append", [False, True])
def test_it_reports_ordered_percentiles_and_cleans_up(tmp_path: Path, append: bool) -> None:
    cmd = [sys.executable, str(SCRIPT), "--dir", str(tmp_path), "--count", "20", "--size", "4", "--json"]
    out = subprocess.run(cmd + (["--append"] if append else []), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["count"] == 20 and result["size_kb"] == 4 and result["append"] is append
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert list(tmp_path.iterdir()) == []


def test_a_size_out_of_range_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--dir", str(tmp_path), "--size", "0"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "--size" in out.stderr
    assert list(tmp_path.iterdir()) == []
