"""The baseline: a bare FastAPI + uvicorn WebSocket relay. No auth, no storage, no acks, no seq.

``GET /ws?room=NAME`` joins a room; every text frame a socket sends goes, unchanged, to every other
socket of its room. ``GET /healthz`` answers 200. It runs on the same uvicorn stack as Stratochat
(httptools, uvloop, the same ``--ws`` implementation), so a ratio against it measures what our
contract's work costs, not the stack. ``stratochat bench --target relay`` drives it.

    python benchmarks/relay.py --port 8100 [--ws websockets-sansio]
"""

from __future__ import annotations

import argparse
import contextlib

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
rooms: dict[str, set[WebSocket]] = {}


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@app.websocket("/ws")
async def relay(ws: WebSocket, room: str = "lobby") -> None:
    await ws.accept()
    peers = rooms.setdefault(room, set())
    peers.add(ws)
    try:
        while True:
            text = await ws.receive_text()
            for peer in tuple(peers):
                if peer is not ws:
                    try:
                        await peer.send_text(text)
                    except Exception:  # that peer left; its own handler cleans up
                        peers.discard(peer)
    except (WebSocketDisconnect, KeyError):  # KeyError: a binary frame, which the relay does not carry
        pass
    finally:
        peers.discard(ws)
        if not peers and rooms.get(room) is peers:
            del rooms[room]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--ws", default="websockets-sansio", help="uvicorn WebSocket implementation")
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            ws=args.ws,
            http="httptools",
            loop="uvloop",
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            timeout_graceful_shutdown=5,
            server_header=False,
        )


if __name__ == "__main__":
    main()
