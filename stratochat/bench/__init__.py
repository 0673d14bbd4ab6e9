"""``stratochat bench``: a load generator that drives any Stratochat (or the bare relay baseline)
through the public contract and reports throughput, latency, loss, duplicates and server cost.

Imported only by the ``bench`` subcommand, so serving never loads it.
"""

from .config import SCENARIOS, BenchConfig, parse
from .runner import BenchRunError, main, run
from .server import BenchSetupError

__all__ = ["SCENARIOS", "BenchConfig", "BenchRunError", "BenchSetupError", "main", "parse", "run"]
