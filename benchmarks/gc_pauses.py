"""Run ``stratochat serve`` with a garbage-collector callback that logs every pause: a diagnostic for
latency spikes that no profile of the event loop shows (a full collection stops the whole process).

    python benchmarks/gc_pauses.py --log gc.log -- --port 8761      # arguments after -- go to `serve`
    stratochat bench reconnect --url http://127.0.0.1:8761 --server-pid PID

Each line: CLOCK_MONOTONIC seconds (the bench's clock), generation, pause in ms, objects collected and, for
full (generation 2) collections, the objects the collector tracks afterwards. Collections of generations 0
and 1 are logged when they take at least ``--min-ms``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any, TextIO


class PauseLog:
    def __init__(self, out: TextIO, min_ms: float) -> None:
        self.out = out
        self.min_ms = min_ms
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        ms = (time.perf_counter() - self.started) * 1000
        gen = info["generation"]
        if gen == 2 or ms >= self.min_ms:
            # Counting the tracked objects costs a pass over them, outside the timed pause.
            tracked = len(gc.get_objects()) if gen == 2 else -1
            self.out.write(
                f"{time.monotonic():.3f} gen{gen} {ms:.1f}ms collected={info['collected']} tracked={tracked}\n"
            )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log", required=True, help="file to write the pauses to")
    p.add_argument("--min-ms", type=float, default=5.0, help="log young collections from this long (default 5)")
    p.add_argument("serve_args", nargs=argparse.REMAINDER, help="-- then the arguments of `stratochat serve`")
    args = p.parse_args()
    serve_args = [a for a in args.serve_args if a != "--"]
    from stratochat.cli import main as cli_main

    with open(args.log, "w", buffering=1) as out:
        gc.callbacks.append(PauseLog(out, args.min_ms))
        return cli_main(["serve", *serve_args])


if __name__ == "__main__":
    sys.exit(main())
