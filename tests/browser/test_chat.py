"""The browser client in real Chromium: sign up, chat in real time, unread badges, history."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from stratochat.core.clock import SystemClock
from tests.browser.ui import (
    Tab,
    chat_link,
    log_seqs,
    log_texts,
    new_username,
    send,
    sign_up,
    sign_up_api,
    start_direct_chat,
)
from tests.services.server import ThreadServer

pytestmark = pytest.mark.browser


def test_two_users_chat_in_real_time(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """Two people sign up, one starts a chat, messages, typing, unread badges and read markers flow live."""
    alice, bob = open_tab(server), open_tab(server)
    sign_up(alice, new_username("alice"))
    sign_up(bob, new_username("bob"))
    alice.screenshot("inbox-empty")

    start_direct_chat(alice.page, bob.username)
    # Bob's inbox learns about the new chat from the `chat` frame, without a reload.
    expect(chat_link(bob.page, alice.username)).to_be_visible()
    expect(alice.page.locator("#chat-subtitle")).to_have_text("Online")

    send(alice.page, "Hello Bob!")
    expect(alice.page.locator("#log-items .row.mine[data-seq='1'] .text")).to_have_text("Hello Bob!")
    badge = chat_link(bob.page, alice.username).get_by_role("img", name="1 unread")
    expect(badge).to_be_visible()
    expect(chat_link(bob.page, re.compile(r"1 unread"))).to_be_visible()
    expect(bob.page).to_have_title("(1) Stratochat")
    bob.screenshot("inbox-unread")

    chat_link(bob.page, alice.username).click()
    expect(bob.page.get_by_role("heading", name=alice.username, level=2)).to_be_visible()
    expect(bob.page.get_by_role("log", name="Messages")).to_contain_text("Hello Bob!")
    expect(badge).to_have_count(0)
    expect(bob.page).to_have_title("Stratochat")
    # Bob's read marker reaches Alice: her message shows as seen.
    expect(alice.page.locator("#log-items .row.mine[data-seq='1'] .tick-seen")).to_have_count(1)

    box = bob.page.get_by_role("textbox", name="Message")
    box.press_sequentially("line one")
    expect(alice.page.locator("#typing")).to_have_text(f"{bob.username} is typing…")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    box.press("Enter")
    expect(box).to_have_value("")
    expect(alice.page.locator("#log-items .row.theirs .text")).to_have_text(["line one\nline two"])
    expect(alice.page.locator("#typing")).to_have_text("")
    assert log_texts(alice.page) == ["Hello Bob!", "line one\nline two"]
    alice.screenshot("chat-desktop")

    # The read marker moved on the server too: after a reload the badge stays away and history is kept.
    bob.page.reload()
    expect(chat_link(bob.page, alice.username)).to_be_visible()
    expect(chat_link(bob.page, alice.username).get_by_role("img")).to_have_count(0)
    expect(bob.page.get_by_role("log", name="Messages")).to_contain_text("line two")
    assert log_texts(bob.page) == ["Hello Bob!", "line one\nline two"]
    assert alice.dialogs == bob.dialogs == []


def test_inbox_orders_chats_and_shows_previews(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """The inbox lists chats newest first with preview, time and a presence dot; groups show sender names."""
    me, bob, carol = open_tab(server), open_tab(server), open_tab(server)
    sign_up_api(bob, new_username("bob"), goto=False)
    sign_up_api(carol, new_username("carol"), goto=False)
    sign_up(me, new_username("me"))

    start_direct_chat(me.page, bob.username)
    direct_id = me.page.evaluate("location.hash.slice(4)")
    send(me.page, "to bob")
    expect(me.page.locator("#log-items .row[data-seq='1']")).to_be_visible()

    me.page.get_by_role("button", name="New group").click()
    dialog = me.page.get_by_role("dialog", name="New group")
    dialog.get_by_role("textbox", name="Title").fill("Weekend trip")
    dialog.get_by_role("textbox", name="Members").fill(f"{bob.username}, {carol.username}")
    dialog.get_by_role("button", name="Create group").click()
    expect(me.page.get_by_role("heading", name="Weekend trip", level=2)).to_be_visible()
    expect(me.page.locator("#chat-subtitle")).to_have_text("3 members · 1 online")
    send(me.page, "who brings the tent?")

    group_id = me.page.evaluate("location.hash.slice(4)")
    bob.context.request.post(f"/api/chats/{group_id}/messages", data={"content": "I do"})
    carol.context.request.post(f"/api/chats/{group_id}/messages", data={"content": "I bring snacks"})
    expect(me.page.locator("#log-items .row.theirs .sender")).to_have_text([bob.username, carol.username])

    links = me.page.get_by_role("navigation", name="Inbox").get_by_role("link")
    expect(links).to_have_count(2)
    expect(links.nth(0)).to_contain_text("Weekend trip")
    expect(links.nth(0)).to_contain_text("I bring snacks")
    expect(links.nth(1)).to_contain_text(bob.username)
    expect(links.nth(1)).to_contain_text("You: to bob")
    # A direct chat carries the other member's presence (a dot, and words for screen readers).
    expect(links.nth(1).locator(".dot-off")).to_have_count(1)
    expect(links.nth(1)).to_have_accessible_name(re.compile(rf"^{bob.username} \(offline\)"))

    # Bob comes online: the dot turns green live.
    bob.page.goto("/")
    expect(links.nth(1).locator(".dot-on")).to_have_count(1)
    expect(links.nth(1)).to_have_accessible_name(re.compile(rf"^{bob.username} \(online\)"))
    # A new message reorders the inbox.
    send_via_api(bob, direct_id, "ping")
    expect(links.nth(0)).to_contain_text(bob.username)
    expect(links.nth(0).get_by_role("img", name="1 unread")).to_be_visible()
    me.screenshot("group-chat")


def send_via_api(tab: Tab, chat_id: str, text: str) -> None:
    r = tab.context.request.post(f"/api/chats/{chat_id}/messages", data={"content": text})
    assert r.status == 201, r.text()


class ShiftedClock(SystemClock):
    """The real clock, moved by an offset the test sets (messages "from yesterday")."""

    offset_ms = 0

    def now_ms(self) -> int:
        return super().now_ms() + self.offset_ms


def test_history_scrolls_up_by_pages_grouped_by_day(
    make_server: Callable[..., ThreadServer], open_tab: Callable[..., Tab]
) -> None:
    """Older history loads page by page (before=) when scrolling up, once each, with day separators."""
    clock = ShiftedClock()
    clock.offset_ms = -86_400_000
    server = make_server(clock=clock, session_ttl=3 * 86_400)
    alice, bob = open_tab(server), open_tab(server)
    sign_up_api(alice, new_username("alice"), goto=False)
    sign_up_api(bob, new_username("bob"), goto=False)
    r = alice.context.request.post("/api/chats", data={"members": [bob.username]})
    chat_id = r.json()["chat"]["chat_id"]
    for i in range(1, 31):
        send_via_api(alice if i % 3 else bob, chat_id, f"old {i}")
    clock.offset_ms = 0
    for i in range(31, 131):
        send_via_api(alice if i % 3 else bob, chat_id, f"new {i}")

    bob.page.goto(f"/#/c/{chat_id}")
    log = bob.page.get_by_role("log", name="Messages")
    expect(log).to_contain_text("new 130")
    first_page = log_seqs(bob.page)
    assert first_page == list(range(81, 131))

    # Scroll to the top until the start of the conversation shows.
    start = bob.page.get_by_text("This is the start of your conversation")
    for _ in range(20):
        if start.is_visible():
            break
        shown = len(log_seqs(bob.page))
        log.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
        # Either the page this scroll asked for, or one already on its way, lands above.
        bob.page.wait_for_function(
            "n => document.querySelectorAll('#log-items .row[data-seq]').length > n "
            "|| document.querySelector('.log-start') !== null",
            arg=shown,
        )
    expect(start).to_be_visible()
    assert log_seqs(bob.page) == list(range(1, 131))
    assert log_texts(bob.page)[:2] == ["old 1", "old 2"]
    expect(bob.page.locator("#log-items .day")).to_have_text(["Yesterday", "Today"])
    bob.page.get_by_text("old 1", exact=True).scroll_into_view_if_needed()
    bob.screenshot("history-top")
