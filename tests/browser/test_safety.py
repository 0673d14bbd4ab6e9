"""User content is text, never markup; the page's security headers; provider sign-in buttons."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Route, expect

from tests.browser.ui import Tab, chat_link, log_texts, new_username, send, sign_up_api
from tests.services.server import ThreadServer

pytestmark = pytest.mark.browser

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script><b>bold?</b>"


def test_markup_in_messages_and_titles_shows_as_text(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """HTML in messages, previews and group titles is shown literally and runs nothing (no dialog)."""
    alice, bob = open_tab(server), open_tab(server)
    sign_up_api(alice, new_username("alice"), goto=False)
    sign_up_api(bob, new_username("bob"))
    r = alice.context.request.post(
        "/api/chats", data={"members": [bob.username], "title": "<img src=y onerror=alert(3)>"}
    )
    chat_id = r.json()["chat"]["chat_id"]
    alice.page.goto(f"/#/c/{chat_id}")
    send(alice.page, IMG)
    send(alice.page, SCRIPT)
    send(alice.page, "see https://example.com/a?b=1, not javascript:alert(4)")
    expect(alice.page.locator("#log-items .row[data-seq='3']")).to_have_count(1)

    # Bob gets them live in the inbox preview, then opens the chat.
    link = chat_link(bob.page, "<img src=y onerror=alert(3)>")
    expect(link).to_contain_text("see https://example.com/a?b=1")
    link.click()
    expect(bob.page.locator("#chat-title")).to_have_text("<img src=y onerror=alert(3)>")
    log = bob.page.get_by_role("log", name="Messages")
    expect(log).to_contain_text(IMG)
    assert log_texts(bob.page) == [IMG, SCRIPT, "see https://example.com/a?b=1, not javascript:alert(4)"]
    assert bob.page.locator("#app-screen img, #app-screen script, #app-screen b, #app-screen [onerror]").count() == 0
    # Only the http(s) URL became a link, and it opens safely in a new tab.
    links = log.get_by_role("link")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://example.com/a?b=1")
    expect(links).to_have_attribute("rel", re.compile("noopener"))
    # After a reload (history from the API) it is still text.
    bob.page.reload()
    expect(log).to_contain_text(SCRIPT)
    assert bob.page.locator("#app-screen img, #app-screen script, #app-screen b").count() == 0
    assert alice.dialogs == bob.dialogs == []
    assert bob.page.evaluate("typeof window.__xss") == "undefined"


def test_page_is_served_with_security_headers(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """The page and its modules come with a CSP without inline scripts or styles, nosniff and no framing."""
    tab = open_tab(server)
    response = tab.page.goto("/")
    assert response is not None and response.status == 200
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    for path in ("/static/app.js", "/static/js/connection.js", "/static/app.css", "/favicon.ico"):
        r = tab.context.request.get(path)
        assert r.status == 200, path
        assert r.headers["x-content-type-options"] == "nosniff"
    assert tab.context.request.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_identity_provider_button_comes_from_the_config(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """Each provider in /api/config gets a "Sign in with <name>" link to its login_url; none by default."""
    tab = open_tab(server)
    tab.page.goto("/")
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(tab.page.get_by_role("link", name=re.compile("^Sign in with"))).to_have_count(0)

    def config(route: Route) -> None:
        body = route.fetch().json()
        body["providers"] = [{"id": "corp", "name": "Corp SSO", "login_url": "/login"}]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    tab.page.route("**/api/config", config)
    tab.page.reload()
    button = tab.page.get_by_role("link", name="Sign in with Corp SSO")
    expect(button).to_be_visible()
    assert button.get_attribute("href") == f"{server.url}/login"
    tab.screenshot("sign-in-with-provider")
