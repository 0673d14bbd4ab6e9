"""Connection handling in real Chromium: offline banner, reconnect and recovery across a server
restart, retries with the same client_msg_id, and the session-ended close code."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import WebSocketRoute, expect

from tests.browser.ui import Tab, log_seqs, log_texts, new_username, send, sign_up_api
from tests.services.server import ThreadServer

pytestmark = pytest.mark.browser


def open_direct_chat(alice: Tab, bob: Tab) -> str:
    r = alice.context.request.post("/api/chats", data={"members": [bob.username]})
    assert r.status == 201, r.text()
    chat_id: str = r.json()["chat"]["chat_id"]
    for tab in (alice, bob):
        tab.page.goto(f"/#/c/{chat_id}")
        expect(tab.page.locator("html[data-connection=online]")).to_have_count(1)
    return chat_id


def test_server_restart_while_offline_recovers_missed_messages(
    make_server: Callable[..., ThreadServer], open_tab: Callable[..., Tab]
) -> None:
    """Bob is offline while the server restarts and Alice writes; back online, Bob gets each missed
    message exactly once and in order, and what he wrote offline is sent."""
    server = make_server()
    alice, bob = open_tab(server), open_tab(server)
    sign_up_api(alice, new_username("alice"), goto=False)
    sign_up_api(bob, new_username("bob"), goto=False)
    open_direct_chat(alice, bob)
    send(alice.page, "before the restart")
    expect(bob.page.get_by_role("log", name="Messages")).to_contain_text("before the restart")

    bob.context.set_offline(True)
    bob_banner = bob.page.locator("#offline-banner")
    expect(bob_banner).to_have_text(re.compile("offline", re.I))
    expect(bob_banner).to_have_role("status")
    server.stop()
    alice_banner = alice.page.locator("#offline-banner")
    expect(alice_banner).to_have_text(re.compile("offline", re.I))
    expect(alice_banner).to_be_visible()
    alice.screenshot("offline-banner")

    make_server(port=server.settings.port)
    # Alice reconnects on her own (backoff with jitter) to the new server with the same data.
    expect(alice.page.locator("html[data-connection=online]")).to_have_count(1, timeout=40_000)
    expect(alice_banner).to_have_text("")
    for i in range(1, 6):
        send(alice.page, f"missed {i}")
        expect(alice.page.locator(f"#log-items .row.mine[data-seq='{i + 1}']")).to_have_count(1)

    # Still offline: once his page has seen the socket close, Bob writes a message, which waits.
    expect(bob.page.locator("html[data-connection=online]")).to_have_count(0, timeout=30_000)
    send(bob.page, "written offline")
    expect(bob.page.locator("#log-items .row.pending .tick")).to_have_attribute("title", "Waiting for connection")
    assert log_texts(bob.page) == ["before the restart"]

    bob.context.set_offline(False)
    expect(bob.page.locator("html[data-connection=online]")).to_have_count(1, timeout=30_000)
    expect(bob_banner).to_have_text("")
    expect(bob.page.locator("#log-items .row[data-seq='7']")).to_contain_text("written offline")
    assert log_texts(bob.page) == ["before the restart", *[f"missed {i}" for i in range(1, 6)], "written offline"]
    assert log_seqs(bob.page) == list(range(1, 8))
    expect(bob.page.locator("#log-items .row.pending")).to_have_count(0)
    expect(alice.page.locator("#log-items .row.theirs[data-seq='7']")).to_contain_text("written offline")
    assert log_seqs(alice.page) == list(range(1, 8))
    bob.screenshot("recovered")


def test_failed_send_retries_with_the_same_client_msg_id(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """A send the client believes failed shows Retry; the retry reuses client_msg_id, so the server
    stores it once and the other side sees it once."""
    alice, bob = open_tab(server), open_tab(server)
    sign_up_api(alice, new_username("alice"), goto=False)
    sign_up_api(bob, new_username("bob"), goto=False)
    sends: list[dict[str, Any]] = []

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "send":
                sends.append(frame)
            upstream.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "ack" and len(sends) == 1:
                # The first send is stored, but its ack is lost and an error arrives instead.
                cmid = frame["client_msg_id"]
                ws.send(json.dumps({"type": "error", "code": "internal", "detail": "simulated", "client_msg_id": cmid}))
                return
            ws.send(message)

        ws.on_message(from_page)
        upstream.on_message(from_server)

    alice.page.route_web_socket(re.compile(r"/ws$"), route)
    chat_id = open_direct_chat(alice, bob)

    send(alice.page, "exactly once")
    failed = alice.page.locator("#log-items .row.failed")
    expect(failed).to_contain_text("Not sent: simulated")
    alice.screenshot("failed-send")
    failed.get_by_role("button", name="Retry").click()
    expect(alice.page.locator("#log-items .row.mine[data-seq='1']")).to_contain_text("exactly once")
    expect(alice.page.locator("#log-items .row.failed, #log-items .row.pending")).to_have_count(0)

    assert len(sends) == 2 and sends[0]["client_msg_id"] == sends[1]["client_msg_id"]
    expect(bob.page.locator("#log-items .row[data-seq='1']")).to_contain_text("exactly once")
    history = bob.context.request.get(f"/api/chats/{chat_id}/messages").json()["messages"]
    assert [m["content"] for m in history] == ["exactly once"]
    assert log_seqs(bob.page) == [1]


def test_session_ended_elsewhere_shows_sign_in_without_reconnecting(
    server: ThreadServer, open_tab: Callable[..., Tab]
) -> None:
    """When the session is logged out elsewhere (close code 4401) the page shows the sign-in screen
    and opens no new socket."""
    tab = open_tab(server)
    sockets: list[str] = []
    tab.page.on("websocket", lambda ws: sockets.append(ws.url))
    sign_up_api(tab, new_username("dora"))
    expect(tab.page.locator("html[data-connection=online]")).to_have_count(1)
    assert len(sockets) == 1 and re.fullmatch(r"ws://127\.0\.0\.1:\d+/ws", sockets[0])

    # The same session, ended from another request of this browser (its cookie).
    assert tab.context.request.post("/api/auth/logout").status == 204
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(tab.page.locator("#auth-notice")).to_have_text(re.compile("session has ended"))
    expect(tab.page.locator("#app-screen")).to_be_hidden()
    expect(tab.page.locator("#offline-banner")).to_have_text("")
    tab.page.wait_for_timeout(1500)  # a reconnect would happen within the first backoff step (<= 0.5 s)
    assert len(sockets) == 1

    # Signing in again works in the same page, and Sign out ends it again.
    tab.page.get_by_role("textbox", name="Username").fill(tab.username)
    tab.page.get_by_role("textbox", name="Password").fill("correct horse battery")
    tab.page.get_by_role("button", name="Sign in", exact=True).click()
    expect(tab.page.locator("#me-name")).to_have_text(tab.username)
    tab.page.get_by_role("button", name="Sign out").click()
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    tab.page.reload()
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_burst_limit_is_waited_out_and_resent(
    make_server: Callable[..., ThreadServer], open_tab: Callable[..., Tab]
) -> None:
    """A send refused as rate_limited is resent once after retry_after, so a quick burst still arrives whole."""
    server = make_server(burst_rate=1, burst_size=2)
    alice, bob = open_tab(server), open_tab(server)
    sign_up_api(alice, new_username("alice"), goto=False)
    sign_up_api(bob, new_username("bob"), goto=False)
    open_direct_chat(alice, bob)
    for text in ("one", "two", "three"):
        send(alice.page, text)
    expect(alice.page.locator("#log-items .row.mine[data-seq='3']")).to_contain_text("three")
    expect(alice.page.locator("#log-items .row.failed, #log-items .row.pending")).to_have_count(0)
    expect(bob.page.locator("#log-items .row[data-seq='3']")).to_contain_text("three")
    assert log_texts(bob.page) == ["one", "two", "three"]
