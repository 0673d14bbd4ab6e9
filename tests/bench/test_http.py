"""The load generator's HTTP client (``stratochat.bench.http``) against small loopback servers: kept-alive
connections are reused, one the server closed is replaced and the request retried, an error status is
an HttpError with its code, and a server that is not there fails after the retries."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from stratochat.bench.http import Connections, HttpError


def _response(status: int, body: dict[str, object]) -> bytes:
    data = orjson.dumps(body)
    reason = {200: b"OK", 201: b"Created", 404: b"Not Found"}[status]
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        status,
        reason,
        len(data),
    )
    return head + data


class Server:
    """Answers each request with ``answer(method, path, body)``; closes a connection after
    ``per_connection`` requests without saying so (as a server's keep-alive timeout does)."""

    def __init__(self, answer: Callable[[str, str, bytes], bytes], per_connection: int = 1_000) -> None:
        self.answer = answer
        self.per_connection = per_connection
        self.connections = 0
        self.requests: list[tuple[str, str, bytes, dict[str, str]]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for _ in range(self.per_connection):
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((method, path, body, headers))
                writer.write(self.answer(method, path, body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Server], asyncio.Future[str]]]:
    servers: list[asyncio.Server] = []

    async def start(server: Server) -> str:
        s = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(s)
        return f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}"

    yield start  # type: ignore[misc]
    for s in servers:
        s.close()
        await s.wait_closed()


async def test_requests_reuse_kept_alive_connections(serve: Callable[[Server], asyncio.Future[str]]) -> None:
    server = Server(lambda m, p, b: _response(200, {"path": p, "method": m, "got": orjson.loads(b or b"null")}))
    url = await serve(server)
    async with Connections(url, 2, timeout=5) as http:
        replies = await asyncio.gather(
            *(http.request("GET", f"/x/{i}", {"Authorization": "Bearer t"}) for i in range(20))
        )
        posted = await http.request("POST", "/api/things", json={"a": 1})
    assert [r.json()["path"] for r in replies] == [f"/x/{i}" for i in range(20)]
    assert posted.status == 200 and posted.json() == {"path": "/api/things", "method": "POST", "got": {"a": 1}}
    assert server.connections == 2  # 21 requests, never more connections than slots
    _, _, body, headers = server.requests[-1]
    assert headers["content-type"] == "application/json" and orjson.loads(body) == {"a": 1}
    assert server.requests[0][3]["authorization"] == "Bearer t"
    assert headers["host"] == url.removeprefix("http://")


async def test_a_connection_the_server_closed_is_replaced_and_the_request_retried(
    serve: Callable[[Server], asyncio.Future[str]],
) -> None:
    server = Server(lambda m, p, b: _response(200, {"path": p}), per_connection=1)
    url = await serve(server)
    async with Connections(url, 1, timeout=5) as http:
        for i in range(5):
            await asyncio.sleep(0.01)  # the server has closed the last connection by now
            assert (await http.request("GET", f"/n/{i}")).json() == {"path": f"/n/{i}"}
    assert [p for _, p, _, _ in server.requests] == [f"/n/{i}" for i in range(5)]  # each sent once
    assert server.connections == 5


async def test_an_error_status_is_an_http_error_with_its_code(serve: Callable[[Server], asyncio.Future[str]]) -> None:
    url = await serve(Server(lambda m, p, b: _response(404, {"error": {"code": "not_found"}})))
    async with Connections(url, 1, timeout=5) as http:
        with pytest.raises(HttpError) as err:
            await http.request("GET", "/api/chats/nope/messages")
        assert err.value.status == 404 and err.value.code == "404"
        with pytest.raises(HttpError):  # and the connection is still usable
            await http.request("GET", "/again")


async def test_a_server_that_is_not_there_fails_after_the_retries() -> None:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Connections(f"http://127.0.0.1:{port}", 1, timeout=2) as http:
        with pytest.raises(HttpError) as err:
            await http.request("GET", "/healthz")
    assert err.value.status is None and err.value.code == "ConnectError"


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Connections("ws://127.0.0.1:1", 1, timeout=1)


async def test_an_ipv6_literal_url_is_reached_with_its_host_header() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = Server(lambda m, p, b: _response(200, {"path": p}))
    s = await asyncio.start_server(server.handle, "::1", 0)
    try:
        port = s.sockets[0].getsockname()[1]
        async with Connections(f"http://[::1]:{port}", 1, timeout=5) as http:
            assert (await http.request("GET", "/healthz")).json() == {"path": "/healthz"}
        assert server.requests[0][3]["host"] == f"[::1]:{port}"
    finally:
        s.close()
        await s.wait_closed()
