"""A small test client speaking the public contract over real HTTP and WebSocket connections."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect


class Api:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token
        self.http = httpx.AsyncClient(base_url=base_url, timeout=15.0)
        self.user: dict[str, Any] = {}

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**h, **(extra or {})}

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = self._headers(kw.pop("headers", None))
        return await self.http.request(method, path, headers=headers, **kw)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, **kw)

    async def signup(self, username: str | None = None, password: str = "correct horse") -> Api:
        username = username or f"u{uuid.uuid4().hex[:10]}"
        r = await self.http.post("/api/auth/register", json={"username": username, "password": password})
        assert r.status_code == 201, r.text
        r = await self.http.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]
        self.user = r.json()["user"]
        self.http.cookies.clear()  # tests authenticate with the bearer token unless they say otherwise
        return self

    @property
    def username(self) -> str:
        return str(self.user["username"])

    async def chat_with(self, *usernames: str, title: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"members": list(usernames)}
        if title is not None:
            body["title"] = title
        r = await self.post("/api/chats", json=body)
        assert r.status_code in (200, 201), r.text
        return dict(r.json()["chat"])

    async def history(self, chat_id: str, **params: Any) -> dict[str, Any]:
        r = await self.get(f"/api/chats/{chat_id}/messages", params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def all_messages(self, chat_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Every message after ``after``, paging with ``after=`` as a recovering client does."""
        out: list[dict[str, Any]] = []
        for _ in range(10_000):
            page = await self.history(chat_id, after=after, limit=200)
            out.extend(page["messages"])
            if not page["has_more"]:
                return out
            after = out[-1]["seq"]
        raise AssertionError("history did not end")

    async def socket(self, ws_url: str, **kw: Any) -> Socket:
        return await Socket.open(ws_url, self.token, **kw)


class Socket:
    """A WebSocket client that parses frames and waits for them with timeouts."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ready: dict[str, Any] = {}

    @classmethod
    async def open(
        cls, url: str, token: str | None, headers: dict[str, str] | None = None, compression: str | None = "deflate"
    ) -> Socket:
        h = {"Authorization": f"Bearer {token}"} if token else {}
        ws = await connect(
            url,
            additional_headers={**h, **(headers or {})},
            open_timeout=10,
            max_size=None,
            compression=compression,  # type: ignore[arg-type]
        )
        sock = cls(ws)
        sock.ready = await sock.expect("ready")
        return sock

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return dict(orjson.loads(raw))

    async def expect(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The next frame of type ``kind`` (matching ``match``), skipping others such as presence."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no {kind} frame matching {match}")
            frame = await self.recv(left)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def frames(self, kind: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return [await self.expect(kind, timeout) for _ in range(count)]

    async def quiet(self, kind: str, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Frames of ``kind`` arriving within ``seconds`` (to prove something was *not* sent)."""
        got = []
        end = asyncio.get_running_loop().time() + seconds
        while (left := end - asyncio.get_running_loop().time()) > 0:
            try:
                frame = await self.recv(left)
            except TimeoutError:
                break
            if frame.get("type") == kind:
                got.append(frame)
        return got

    async def send_text(self, chat_id: str, content: str, client_msg_id: str | None = None) -> dict[str, Any]:
        cmid = client_msg_id or uuid.uuid4().hex
        await self.send({"type": "send", "chat_id": chat_id, "content": content, "client_msg_id": cmid})
        return await self.expect("ack", client_msg_id=cmid)

    async def close(self) -> None:
        await self.ws.close()
