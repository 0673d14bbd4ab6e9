"""Sign-in through the identity provider in a real Chromium (Playwright, Debian's /usr/bin/chromium)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Route, sync_playwright

from tests.services.chromium import CHROMIUM, FLAGS
from tests.services.oidc import OidcStack


@pytest.mark.browser
def test_browser_signs_in_and_out_through_the_provider(make_oidc_stack: Callable[..., OidcStack]) -> None:
    """A person goes to /login, signs in at the provider, lands on / signed in, and /logout signs them out."""
    stack = make_oidc_stack()
    home = stack.server.url + "/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = browser.new_context()

            def offline(route: Route) -> None:
                route.abort()  # the provider's pages import web fonts; there is no internet here

            context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), offline)
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.goto(stack.server.url + "/login")
            page.fill('input[name="login"]', "ivy")
            page.fill('input[name="password"]', "any password")
            page.get_by_role("button", name="Sign-in").click()
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(home)
            me = page.evaluate("async () => { const r = await fetch('/api/me'); return [r.status, await r.json()]; }")
            assert me[0] == 200 and me[1]["user"]["user_id"] == "ivy" and me[1]["user"]["username"] == "ivy"
            assert "session_id" not in page.evaluate("document.cookie")  # HttpOnly

            page.goto(stack.server.url + "/logout")
            page.get_by_role("button", name="Yes, sign me out").click()
            page.wait_for_url(home)
            assert page.evaluate("async () => (await fetch('/api/me')).status") == 401
        finally:
            browser.close()
