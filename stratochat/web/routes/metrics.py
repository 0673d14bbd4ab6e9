"""``GET /metrics``: this node's counters in the Prometheus text format (version 0.0.4).

The hub's fan-out counters (payloads received from the broker, dropped because no local socket wanted
them, gaps filled from the store, duplicates dropped), open sockets and local users, and the counters
of the store and broker when they keep some (``batches``/``writes`` of the SQLite group commit, its WAL
rewinds and the WAL's size; the Redis broker's ``stats``), the process's open files against its
limit, and histograms of the event loop's lag and the garbage collector's pauses (``LoopWatch``).
Every sample carries the ``node`` label, so samples scraped through a load balancer say which
node answered. Counts only: no user ids, names or content.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Request
from starlette.responses import Response

from ...fdwatch import open_files as fd_count
from ...loopwatch import Histogram, LoopWatch
from ..deps import ServicesDep

router = APIRouter()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HUB_HELP = {
    "broker_in": "payloads received from the broker",
    "broker_in_dropped": "broker payloads for users with no socket on this node",
    "broker_out_dropped": "payloads shed from a full broker outbox",
    "gaps_filled": "seq gaps filled from the store",
    "duplicates_dropped": "messages dropped because the socket already had them",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{{{labels}}} {value:g}" for labels, value in samples]
    return lines


def _histogram(name: str, help_text: str, series: Iterable[tuple[str, Histogram]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for labels, hist in series:
        lines += [f'{name}_bucket{{{labels},le="{le}"}} {n}' for le, n in hist.cumulative()]
        lines += [f"{name}_sum{{{labels}}} {hist.sum:.6f}", f"{name}_count{{{labels}}} {hist.count}"]
    return lines


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, services: ServicesDep) -> Response:
    hub = services.hub
    node = f'node="{_label(hub.node_id)}"'
    lines: list[str] = []
    for key, value in hub.stats.items():
        help_text = _HUB_HELP.get(key, key.replace("_", " "))
        lines += _family(f"stratochat_hub_{key}_total", "counter", help_text, [(node, value)])
    lines += _family("stratochat_connections", "gauge", "open WebSocket connections", [(node, hub.connection_count())])
    local_users = len(hub.local_user_ids())
    lines += _family("stratochat_local_users", "gauge", "users with a socket on this node", [(node, local_users)])
    open_files, limit = fd_count()
    if open_files is not None:
        # Past the limit new connections are accepted and closed at once, silently: alert before it.
        lines += _family("stratochat_open_files", "gauge", "file descriptors open", [(node, open_files)])
        lines += _family("stratochat_open_files_limit", "gauge", "RLIMIT_NOFILE (soft)", [(node, limit)])
    store = services.health.get("store")
    for attr, help_text in (
        ("batches", "write transactions committed"),
        ("writes", "writes committed"),
        ("rewinds", "WAL copies the writer thread finished so that the WAL starts over"),
    ):
        count = getattr(store, attr, None)
        if isinstance(count, int):
            lines += _family(f"stratochat_store_{attr}_total", "counter", help_text, [(node, count)])
    wal = getattr(store, "wal_bytes", None)
    if isinstance(wal, int):
        lines += _family("stratochat_store_wal_bytes", "gauge", "size of the SQLite WAL file", [(node, wal)])
    broker_stats = getattr(services.health.get("broker"), "stats", None)
    if isinstance(broker_stats, dict):
        for key, stat in broker_stats.items():
            if isinstance(stat, int):
                lines += _family(f"stratochat_broker_{key}_total", "counter", f"broker {key}", [(node, stat)])
    watch: LoopWatch | None = getattr(request.state, "loopwatch", None)
    if watch is not None:
        lines += _histogram(
            "stratochat_event_loop_lag_seconds",
            f"how late a timer due every {watch.interval_s:g} s ran (every socket waits out a long loop turn)",
            [(node, watch.lag)],
        )
        lines += _histogram(
            "stratochat_gc_pause_seconds",
            "garbage collections, by generation: each stops the whole process",
            [(f'{node},generation="{gen}"', hist) for gen, hist in watch.gc_pauses.items()],
        )
    return Response("\n".join(lines) + "\n", media_type=CONTENT_TYPE)
