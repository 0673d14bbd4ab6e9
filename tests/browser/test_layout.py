"""Layout and access: a 375 px phone (one pane at a time), keyboard-only use, labels, dark mode."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.browser.ui import (
    PASSWORD,
    PHONE,
    ROOT,
    Tab,
    chat_link,
    log_texts,
    new_username,
    send,
    sign_up,
    sign_up_api,
    start_direct_chat,
)
from tests.services.server import ThreadServer

pytestmark = pytest.mark.browser


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide"


def test_phone_width_shows_one_pane_at_a_time(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """At 375 px the inbox and the chat take the whole width in turn, with a back button, and nothing overflows."""
    friend = open_tab(server)
    sign_up_api(friend, new_username("friend"), goto=False)
    tab = open_tab(server, viewport=PHONE, has_touch=True, is_mobile=True)
    tab.page.goto("/")
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    no_horizontal_scroll(tab.page)
    tab.screenshot("mobile-sign-in")
    sign_up(tab, new_username("phone"))
    no_horizontal_scroll(tab.page)

    tab.page.get_by_role("button", name="New chat").click()
    tab.page.get_by_role("dialog", name="New chat").get_by_role("textbox", name="Username").fill(friend.username)
    tab.page.get_by_role("button", name="Start chat").click()
    sidebar = tab.page.get_by_role("complementary", name="Chats")
    expect(tab.page.get_by_role("heading", name=friend.username, level=2)).to_be_visible()
    expect(sidebar).to_be_hidden()
    box = tab.page.get_by_role("textbox", name="Message")
    box.fill("hi from a phone " + "and a long line " * 12)
    tab.page.get_by_role("button", name="Send").click()
    expect(tab.page.locator("#log-items .row[data-seq='1']")).to_have_count(1)
    chat_id = tab.page.evaluate("location.hash.slice(4)")
    r = friend.context.request.post(f"/api/chats/{chat_id}/messages", data={"content": "hello phone 👋"})
    assert r.status == 201
    expect(tab.page.get_by_role("log", name="Messages")).to_contain_text("hello phone 👋")
    no_horizontal_scroll(tab.page)
    bubble = tab.page.locator("#log-items .row[data-seq='1'] .bubble").bounding_box()
    assert bubble is not None and bubble["x"] >= 0 and bubble["x"] + bubble["width"] <= PHONE["width"]
    tab.screenshot("mobile-chat")

    tab.page.get_by_role("button", name="Back to chats").click()
    expect(sidebar).to_be_visible()
    expect(tab.page.locator("#chat-view")).to_be_hidden()
    expect(chat_link(tab.page, friend.username)).to_contain_text("hello phone")
    no_horizontal_scroll(tab.page)
    tab.screenshot("mobile-inbox")


def test_keyboard_only_sign_in_and_chat(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """Everything works from the keyboard: sign in, open the new chat dialog, start a chat, send."""
    friend = open_tab(server)
    sign_up_api(friend, new_username("kbfriend"), goto=False)
    tab = open_tab(server)
    name = new_username("kb")
    assert tab.context.request.post("/api/auth/register", data={"username": name, "password": PASSWORD}).status == 201
    page = tab.page
    page.goto("/")
    # Labels are visible text tied to their fields.
    for label in ("Username", "Password"):
        expect(page.locator("#signin-section").get_by_text(label, exact=True)).to_be_visible()
    expect(page.get_by_role("textbox", name="Username")).to_be_focused()
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    expect(page.get_by_role("textbox", name="Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#me-name")).to_have_text(name)

    new_chat = page.get_by_role("button", name="New chat")
    for _ in range(10):
        if new_chat.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(new_chat).to_be_focused()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="New chat")
    expect(dialog.get_by_role("textbox", name="Username")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.keyboard.press("Enter")
    page.keyboard.type(friend.username)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=friend.username, level=2)).to_be_visible()
    message = page.get_by_role("textbox", name="Message")
    expect(message).to_be_focused()
    expect(page.locator("#composer").get_by_text("Message", exact=True)).to_be_visible()
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Enter")
    expect(page.locator("#log-items .row[data-seq='1']")).to_contain_text("typed, not clicked")
    assert log_texts(page) == ["typed, not clicked"]
    log = page.get_by_role("log", name="Messages")
    expect(log).to_have_attribute("aria-live", "polite")


def test_dark_color_scheme_is_respected(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """With prefers-color-scheme: dark the page switches to its dark palette."""
    light = open_tab(server, color_scheme="light")
    dark = open_tab(server, color_scheme="dark")
    sign_up_api(dark, new_username("night"))
    light.page.goto("/")
    expect(light.page.get_by_role("heading", name="Sign in")).to_be_visible()

    def background(tab: Tab) -> str:
        value: str = tab.page.evaluate("getComputedStyle(document.body).backgroundColor")
        return value

    assert background(light) == "rgb(244, 245, 249)"
    assert background(dark) == "rgb(13, 15, 20)"
    dark.screenshot("dark-inbox")


def test_tier_badge_and_quota_meters_follow_api_me(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """The account footer shows the tier and today's usage against the limits of /api/me."""
    friend, tab = open_tab(server), open_tab(server)
    sign_up_api(friend, new_username("pal"), goto=False)
    name = new_username("vip")
    sign_up(tab, name)
    page = tab.page
    messages = page.get_by_role("meter", name="Messages today")
    storage = page.get_by_role("meter", name="Storage")
    expect(page.locator("#me-tier")).to_have_text("Free")
    expect(messages).to_have_attribute("aria-valuetext", "0 / 1,000")
    expect(storage).to_have_attribute("aria-valuetext", "0 B / 50 MB")
    start_direct_chat(page, friend.username)
    send(page, "counts once")
    expect(page.locator("#log-items .row[data-seq='1']")).to_have_count(1)
    expect(messages).to_have_attribute("aria-valuetext", "1 / 1,000")
    expect(messages).to_have_attribute("aria-valuenow", "1")

    env = {**os.environ, "STRATOCHAT_DATA_DIR": str(server.settings.data_dir)}
    cli = [sys.executable, "-m", "stratochat", "users", "set-premium", name]
    subprocess.run(cli, env=env, cwd=ROOT, check=True, timeout=60, capture_output=True)
    page.reload()
    expect(page.locator("#me-tier")).to_have_text("Premium")
    expect(messages).to_have_attribute("aria-valuetext", "1 · unlimited")
    expect(storage).to_have_attribute("aria-valuetext", "0 B / 5 GB")
    tab.screenshot("premium-footer")
