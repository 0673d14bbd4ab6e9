"""What one durable commit costs the disk: ``--count`` times, write ``--size`` KB and ``fdatasync`` it,
and print the latency percentiles. By default the writes go over a file already allocated, in turn, as
SQLite's WAL does once the store has rewound it (``adapters/store/sqlite.py``, ``_rewind``);
``--append`` grows the file instead, as a WAL that is never rewound does, where every sync also
commits the file system's allocation of the new blocks.

    python benchmarks/fsync_latency.py --dir /path/of/the/data/dir
    python benchmarks/fsync_latency.py --dir /path/of/the/data/dir --append

Compare it with the latency of the ``pairs --rate`` runs: a p99 far above this one's is not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

SLOTS = 100  # the rewound file: this many writes' worth of space, reused in turn


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def measure(directory: str, count: int, size_kb: int, append: bool) -> dict[str, float | int | bool]:
    buf = os.urandom(size_kb * 1024)
    fd, path = tempfile.mkstemp(prefix="fsync-latency-", dir=directory)
    try:
        if not append:
            for slot in range(SLOTS):
                os.pwrite(fd, buf, slot * len(buf))
            os.fsync(fd)
        times: list[float] = []
        for i in range(count):
            offset = (i if append else i % SLOTS) * len(buf)
            started = time.perf_counter()
            os.pwrite(fd, buf, offset)
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return {
        "count": count,
        "size_kb": size_kb,
        "append": append,
        "p50_ms": round(percentile(times, 0.50), 3),
        "p90_ms": round(percentile(times, 0.90), 3),
        "p99_ms": round(percentile(times, 0.99), 3),
        "p999_ms": round(percentile(times, 0.999), 3),
        "max_ms": round(times[-1], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=".", help="a directory on the disk to measure (the data dir's)")
    parser.add_argument("--count", type=int, default=1500, help="writes, each synced (1-1,000,000)")
    parser.add_argument("--size", type=int, default=40, help="KB per write: a small batch's WAL frames (1-65536)")
    parser.add_argument("--append", action="store_true", help="grow the file instead of writing over it")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 1_000_000 or not 1 <= args.size <= 65536:
        parser.error("--count must be 1-1,000,000 and --size 1-65536")
    result = measure(args.dir, args.count, args.size, args.append)
    if args.json:
        print(json.dumps(result))
    else:
        mode = "appended" if args.append else "over allocated blocks"
        print(
            f"{result['count']} writes of {result['size_kb']} KB + fdatasync, {mode}: p50 {result['p50_ms']} ms,"
            f" p90 {result['p90_ms']}, p99 {result['p99_ms']}, p99.9 {result['p999_ms']}, max {result['max_ms']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
