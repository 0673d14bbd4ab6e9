"""Chats, the inbox, history and read markers over real HTTP."""

from __future__ import annotations

from collections.abc import Callable

from tests.client import Api
from tests.web.test_auth import error_code


async def test_direct_chat_is_deduplicated(alice: Api, bob: Api) -> None:
    r = await alice.post("/api/chats", json={"members": [bob.username]})
    assert r.status_code == 201
    chat = r.json()["chat"]
    assert chat["is_group"] is False and chat["title"] is None
    assert {m["username"] for m in chat["members"]} == {alice.username, bob.username}
    assert chat["last_seq"] == 0 and chat["unread_count"] == 0 and chat["last_message_content"] is None
    again = await alice.post("/api/chats", json={"members": [bob.username, alice.username]})
    assert again.status_code == 200 and again.json()["chat"]["chat_id"] == chat["chat_id"]
    reverse = await bob.post("/api/chats", json={"members": [alice.username]})
    assert reverse.status_code == 200 and reverse.json()["chat"]["chat_id"] == chat["chat_id"]


async def test_group_chat_and_limits(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_group_members=3)
    async with Api(server.url) as a, Api(server.url) as b, Api(server.url) as c, Api(server.url) as d:
        for x in (a, b, c, d):
            await x.signup()
        r = await a.post("/api/chats", json={"members": [b.username, c.username], "title": "Team"})
        assert r.status_code == 201 and r.json()["chat"]["is_group"] and r.json()["chat"]["title"] == "Team"
        titled = await a.post("/api/chats", json={"members": [b.username], "title": "Pair"})
        assert titled.status_code == 201 and titled.json()["chat"]["is_group"] is True
        r = await a.post("/api/chats", json={"members": [b.username, c.username, d.username]})
        assert r.status_code == 400 and error_code(r) == "bad_request"
        for body in (
            {"members": []},
            {"members": [a.username]},
            {"members": ["no-such-user"]},
            {"members": "bob"},
            {"members": [b.username], "title": ""},
            {},
        ):
            r = await a.post("/api/chats", json=body)
            assert r.status_code in (400, 422) and error_code(r) == "bad_request", body


async def test_inbox_order_preview_unread(alice: Api, bob: Api, api_factory: Callable[[], Api]) -> None:
    carol = await api_factory().signup()
    c1 = await alice.chat_with(bob.username)
    c2 = await alice.chat_with(carol.username)
    for i in range(3):
        r = await bob.post(f"/api/chats/{c1['chat_id']}/messages", json={"content": f"hi {i}"})
        assert r.status_code == 201
    r = await carol.post(f"/api/chats/{c2['chat_id']}/messages", json={"content": "latest"})
    assert r.status_code == 201
    inbox = (await alice.get("/api/chats")).json()["chats"]
    assert [c["chat_id"] for c in inbox] == [c2["chat_id"], c1["chat_id"]]
    assert inbox[0]["last_message_content"] == "latest" and inbox[0]["unread_count"] == 1
    assert inbox[1]["last_seq"] == 3 and inbox[1]["unread_count"] == 3
    assert inbox[1]["last_message_timestamp"].endswith("Z")
    r = await alice.post(f"/api/chats/{c1['chat_id']}/read", json={"seq": 2})
    assert r.status_code == 204
    inbox = {c["chat_id"]: c for c in (await alice.get("/api/chats")).json()["chats"]}
    assert inbox[c1["chat_id"]]["unread_count"] == 1
    # markers never move back, and never past the last message
    await alice.post(f"/api/chats/{c1['chat_id']}/read", json={"seq": 1})
    await alice.post(f"/api/chats/{c1['chat_id']}/read", json={"seq": 99})
    inbox = {c["chat_id"]: c for c in (await alice.get("/api/chats")).json()["chats"]}
    assert inbox[c1["chat_id"]]["unread_count"] == 0
    r = await bob.post(f"/api/chats/{c1['chat_id']}/messages", json={"content": "one more"})
    inbox = {c["chat_id"]: c for c in (await alice.get("/api/chats")).json()["chats"]}
    assert inbox[c1["chat_id"]]["unread_count"] == 1
    # the sender's own messages are read by the sender
    bob_inbox = (await bob.get("/api/chats")).json()["chats"]
    assert bob_inbox[0]["unread_count"] == 0


async def test_history_paging(alice: Api, bob: Api) -> None:
    chat = await alice.chat_with(bob.username)
    cid = chat["chat_id"]
    for i in range(1, 8):
        r = await alice.post(f"/api/chats/{cid}/messages", json={"content": f"m{i}"})
        assert r.json()["message"]["seq"] == i
    page = await bob.history(cid, limit=3)
    assert [m["seq"] for m in page["messages"]] == [5, 6, 7] and page["has_more"] is True
    page = await bob.history(cid, limit=3, before=5)
    assert [m["seq"] for m in page["messages"]] == [2, 3, 4] and page["has_more"] is True
    page = await bob.history(cid, limit=3, before=2)
    assert [m["seq"] for m in page["messages"]] == [1] and page["has_more"] is False
    page = await bob.history(cid, after=4, limit=2)
    assert [m["seq"] for m in page["messages"]] == [5, 6] and page["has_more"] is True
    page = await bob.history(cid, after=6)
    assert [m["seq"] for m in page["messages"]] == [7] and page["has_more"] is False
    m = page["messages"][0]
    assert m["sender"] == alice.username and m["sender_id"] == alice.user["user_id"]
    assert m["message_type"] == "text" and m["content"] == "m7" and m["created_at"].endswith("Z")
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"before": -1}, {"before": 2, "after": 1}):
        r = await bob.get(f"/api/chats/{cid}/messages", params=params)
        assert r.status_code in (400, 422) and error_code(r) == "bad_request", params


async def test_forbidden_chat_looks_missing(alice: Api, bob: Api, api_factory: Callable[[], Api]) -> None:
    """Every route answers a chat the caller is not in exactly as one that does not exist."""
    eve = await api_factory().signup()
    chat = await alice.chat_with(bob.username)
    for cid in (chat["chat_id"], "0" * 32):
        calls = [
            await eve.get(f"/api/chats/{cid}/messages"),
            await eve.post(f"/api/chats/{cid}/messages", json={"content": "hi"}),
            await eve.post(f"/api/chats/{cid}/read", json={"seq": 1}),
        ]
        for r in calls:
            assert r.status_code == 404 and r.json() == {"error": {"code": "not_found", "detail": "no such chat"}}
    assert (await alice.history(chat["chat_id"]))["messages"] == []


async def test_rest_send_validation_and_idempotency(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_message_chars=10)
    async with Api(server.url) as a, Api(server.url) as b:
        await a.signup()
        await b.signup()
        cid = (await a.chat_with(b.username))["chat_id"]
        r = await a.post(f"/api/chats/{cid}/messages", json={"content": "x" * 11})
        assert r.status_code == 413 and error_code(r) == "too_large"
        for body in ({"content": ""}, {"content": "   "}, {"content": 5}, {}, {"content": "ok", "client_msg_id": ""}):
            r = await a.post(f"/api/chats/{cid}/messages", json=body)
            assert r.status_code in (400, 422) and error_code(r) == "bad_request", body
        first = await a.post(f"/api/chats/{cid}/messages", json={"content": "hello", "client_msg_id": "k1"})
        again = await a.post(f"/api/chats/{cid}/messages", json={"content": "hello", "client_msg_id": "k1"})
        assert first.status_code == 201 and again.status_code == 201
        assert first.json() == again.json()
        # Another sender's same client_msg_id is a different message.
        other = await b.post(f"/api/chats/{cid}/messages", json={"content": "yo", "client_msg_id": "k1"})
        assert other.json()["message"]["seq"] == 2
        assert [m["seq"] for m in (await a.history(cid))["messages"]] == [1, 2]


async def test_daily_limit(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(free_daily_messages=3)
    async with Api(server.url) as a, Api(server.url) as b:
        await a.signup()
        await b.signup()
        cid = (await a.chat_with(b.username))["chat_id"]
        for i in range(3):
            r = await a.post(f"/api/chats/{cid}/messages", json={"content": "m", "client_msg_id": f"c{i}"})
            assert r.status_code == 201
        r = await a.post(f"/api/chats/{cid}/messages", json={"content": "m"})
        assert r.status_code == 429 and error_code(r) == "quota_exceeded"
        # a retry of a stored message is never refused for a limit
        r = await a.post(f"/api/chats/{cid}/messages", json={"content": "m", "client_msg_id": "c1"})
        assert r.status_code == 201 and r.json()["message"]["seq"] == 2
        me = (await a.get("/api/me")).json()
        assert me["usage"]["messages_today"] == 3 and me["limits"]["daily_messages"] == 3


async def test_burst_limit(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(burst_rate=1, burst_size=2)
    async with Api(server.url) as a, Api(server.url) as b:
        await a.signup()
        await b.signup()
        cid = (await a.chat_with(b.username))["chat_id"]
        codes = [
            (await a.post(f"/api/chats/{cid}/messages", json={"content": "m", "client_msg_id": f"b{i}"})).status_code
            for i in range(3)
        ]
        assert codes == [201, 201, 429]
        r = await a.post(f"/api/chats/{cid}/messages", json={"content": "m"})
        assert r.status_code == 429 and error_code(r) == "rate_limited" and int(r.headers["retry-after"]) >= 1
        r = await a.post(f"/api/chats/{cid}/messages", json={"content": "m", "client_msg_id": "b0"})
        assert r.status_code == 201 and r.json()["message"]["seq"] == 1


async def test_inbox_preview_is_the_first_200_characters(alice: Api, bob: Api) -> None:
    """A long message is stored whole; the inbox preview keeps its first 200 characters."""
    cid = (await alice.chat_with(bob.username))["chat_id"]
    content = "".join(chr(ord("a") + i % 26) for i in range(1000))
    await alice.post(f"/api/chats/{cid}/messages", json={"content": content})
    assert (await bob.get("/api/chats")).json()["chats"][0]["last_message_content"] == content[:200]
    assert (await bob.history(cid))["messages"][0]["content"] == content
