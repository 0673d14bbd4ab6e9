"""Helpers for the browser tests: a user's tab, and the steps a person takes in the UI."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import BrowserContext, Locator, Page, ViewportSize, expect

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
PASSWORD = "correct horse battery"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 740}


@dataclass
class Tab:
    """One user's browser context and page, with what the page reported."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    username: str = ""

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def new_username(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def sign_up(tab: Tab, username: str) -> None:
    """Creates an account through the UI and lands in the inbox."""
    page = tab.page
    page.goto("/")
    page.get_by_role("button", name="Create an account").click()
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("complementary", name="Chats")).to_be_visible()
    expect(page.locator("#me-name")).to_have_text(username)
    tab.username = username


def sign_up_api(tab: Tab, username: str, goto: bool = True) -> None:
    """Creates an account over the API in the tab's context (the login sets its cookie)."""
    req = tab.context.request
    assert req.post("/api/auth/register", data={"username": username, "password": PASSWORD}).status == 201
    assert req.post("/api/auth/login", data={"username": username, "password": PASSWORD}).status == 200
    tab.username = username
    if goto:
        tab.page.goto("/")
        expect(tab.page.locator("#me-name")).to_have_text(username)


def chat_link(page: Page, name: str | re.Pattern[str]) -> Locator:
    """The inbox entry of a chat (a link named after the chat and its state)."""
    pattern = name if isinstance(name, re.Pattern) else re.compile(rf"^{re.escape(name)}(\s|$)")
    return page.get_by_role("navigation", name="Inbox").get_by_role("link", name=pattern)


def start_direct_chat(page: Page, username: str) -> None:
    page.get_by_role("button", name="New chat").click()
    dialog = page.get_by_role("dialog", name="New chat")
    dialog.get_by_role("textbox", name="Username").fill(username)
    dialog.get_by_role("button", name="Start chat").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("heading", name=username, level=2)).to_be_visible()


def send(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def log_texts(page: Page) -> list[str]:
    """The confirmed messages shown in the open chat, top to bottom."""
    texts: list[str] = page.locator("#log-items .row[data-seq] .text").all_inner_texts()
    return texts


def log_seqs(page: Page) -> list[int]:
    return [int(s) for s in page.locator("#log-items .row[data-seq]").evaluate_all("rs => rs.map(r => r.dataset.seq)")]
