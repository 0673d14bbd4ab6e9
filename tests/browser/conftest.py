"""Browser fixtures: Debian's Chromium driven by pytest-playwright (sync API), against real servers.

Playwright's sync API runs its own event loop in a greenlet and refuses to start inside a running
one; these tests and fixtures are plain sync functions, so pytest-asyncio never runs a loop around
them. The browser is never downloaded: /usr/bin/chromium is launched directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserType,
    ConsoleMessage,
    Dialog,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from stratochat.core.ports import Clock
from stratochat.settings import Settings
from tests.browser.ui import DESKTOP, Tab
from tests.services.chromium import CHROMIUM, FLAGS
from tests.services.server import ThreadServer

# Two cores shared with other suites: give the UI room, never a fixed sleep.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": FLAGS}


# pytest-playwright keeps Playwright for the whole session. While sync Playwright lives it marks an event
# loop as running in the main thread, and every async test after it would fail ("Cannot run the event
# loop while another loop is running"). So here Playwright and the browser live for this package only.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    browser_type: BrowserType = getattr(playwright, browser_name)
    return browser_type


@pytest.fixture(scope="package")
def launch_browser(browser_type_launch_args: dict[str, Any], browser_type: BrowserType) -> Callable[..., Browser]:
    def launch(**options: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **options})

    return launch


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ThreadServer]]:
    """Real servers on free loopback ports (Settings defaults to port 8000, which parallel runs share)."""
    servers: list[ThreadServer] = []

    def make(clock: Clock | None = None, **overrides: Any) -> ThreadServer:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("burst_rate", 0)
        overrides.setdefault("port", 0)
        settings = Settings(_env_file=None, **overrides)
        server = ThreadServer(settings, clock=clock).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def open_tab(browser: Browser) -> Iterator[Callable[..., Tab]]:
    """Opens a fresh browser context (its own cookies) on a server; checks at the end that no page
    threw an uncaught error and nothing broke the Content-Security-Policy."""
    tabs: list[Tab] = []

    def make(server: ThreadServer, viewport: ViewportSize | None = None, **options: Any) -> Tab:
        options.setdefault("locale", "en-US")  # number and date formats the assertions spell out
        context = browser.new_context(base_url=server.url, viewport=viewport or DESKTOP, **options)
        context.set_default_timeout(15_000)
        page = context.new_page()
        tab = Tab(context, page)

        def on_console(msg: ConsoleMessage) -> None:
            if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
                tab.csp_violations.append(msg.text)

        def on_dialog(dialog: Dialog) -> None:
            tab.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        page.on("console", on_console)
        page.on("dialog", on_dialog)
        tabs.append(tab)
        return tab

    yield make
    try:
        for tab in tabs:
            assert tab.errors == [], f"uncaught errors in the page: {tab.errors}"
            assert tab.csp_violations == [], f"CSP violations: {tab.csp_violations}"
    finally:
        for tab in tabs:
            tab.context.close()
