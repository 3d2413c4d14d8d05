"""
A person at the HTTP port, in a real browser: Debian's Chromium, headless,
driven by Playwright, against the real daemon on loopback.
"""

from __future__ import annotations

import subprocess

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.browser import chromium_page
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    http,
    loopback_config,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

EXTENSION = "1001"


class BrowserTests(SynchronousTestCase):
    """The home page logs in, shows the status and logs out; the docs page renders the API."""

    def setUp(self) -> None:
        self.api_port = free_port()
        self.sip_port = free_port()
        self.admin = admin_password()
        self.sip_password = strong_password(EXTENSION)
        self.daemon = Daemon(
            self.mktemp(),
            loopback_config(
                api_port=self.api_port,
                sip_port=self.sip_port,
                admin_password=self.admin,
                extensions={EXTENSION: self.sip_password},
                digest_algorithms=["MD5"],  # sipsak answers MD5 only
            ),
        )
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.problems: list[str] = []

    def register_with_sipsak(self) -> None:
        """One real registration (sipsak, UDP), so the status has something to count."""
        sipsak = require_binary("sipsak", "sipsak")
        result = subprocess.run(
            [sipsak, "-H", "127.0.0.1", "-U", "-C", f"sip:{EXTENSION}@127.0.0.1:{free_port()}", "-u", EXTENSION,
             "-x", "300", "-a", self.sip_password, "-s", f"sip:{EXTENSION}@127.0.0.1:{self.sip_port}", "-i"],
            capture_output=True, text=True, errors="replace", timeout=60, stdin=subprocess.DEVNULL,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        wait_until(API(self.api_port, self.admin).registrations, 10, "the binding in /api/v1/registrations")

    def watch(self, page: object) -> None:
        """Record console errors (a CSP refusal among them) and uncaught exceptions."""
        page.on("console", lambda m: m.type == "error" and self.problems.append(  # type: ignore[attr-defined]
            f"{m.text} at {m.location['url']}"))
        page.on("pageerror", lambda e: self.problems.append(str(e)))  # type: ignore[attr-defined]

    def test_log_in_see_status_log_out(self) -> None:
        """An administrator logs in at /, sees version and counts, and logs out; /admin leads there."""
        from playwright.sync_api import expect

        self.register_with_sipsak()
        with chromium_page() as page:
            self.watch(page)
            page.goto(f"{self.base}/admin")
            self.assertEqual(page.url, f"{self.base}/")
            expect(page.locator("h1")).to_contain_text("pbx version")
            expect(page.locator("#login")).to_be_visible()
            page.fill("#username", "admin")
            page.fill("#password", "not-the-password-1")
            page.click("#login-form button")
            expect(page.locator("#message")).to_have_text("Not logged in: wrong username or password")
            page.fill("#password", self.admin)
            page.click("#login-form button")
            expect(page.locator("#status")).to_be_visible()
            expect(page.locator("#status-registrations")).to_have_text("1")
            expect(page.locator("#status-calls")).to_have_text("0")
            expect(page.locator("#status-extensions")).to_have_text("1")
            expect(page.locator("#status-listeners")).to_contain_text(f"http:127.0.0.1:{self.api_port}")
            self.assertEqual(page.evaluate("localStorage.length"), 0)
            token = page.evaluate("sessionStorage.getItem('pbx.token')")
            self.assertTrue(token)
            page.reload()  # the session outlives a reload of the tab
            expect(page.locator("#status-registrations")).to_have_text("1")
            page.click("#logout")
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#message")).to_have_text("Logged out.")
            self.assertIsNone(page.evaluate("sessionStorage.getItem('pbx.token')"))
        # The token was revoked at the server, not just forgotten by the page.
        status, _ = http("GET", f"{self.base}/api/v1/status", token=token)
        self.assertEqual(status, 401)
        # The one error is the wrong password's 401, which the browser reports too.
        self.assertEqual(self.problems, [
            f"Failed to load resource: the server responded with a status of 401 (Unauthorized)"
            f" at {self.base}/api/v1/auth/login"])

    def test_docs_render_the_api(self) -> None:
        """/api/v1/docs shows each path with its method, auth, parameters and schemas."""
        from playwright.sync_api import expect

        with chromium_page() as page:
            self.watch(page)
            page.goto(f"{self.base}/api/v1/docs")
            login = page.locator("#op-post--api-v1-auth-login")
            expect(login).to_contain_text("Log in as an administrator")
            expect(login).to_contain_text("No login needed.")
            expect(login).to_contain_text("Request body (required)")
            expect(login.locator("a[href='#schema-Login']")).to_be_visible()
            one = page.locator("#op-get--api-v1-extensions-number-")
            expect(one).to_contain_text("/api/v1/extensions/{number}")
            expect(one).to_contain_text("Needs a bearer token.")
            expect(one).to_contain_text("pattern ^[0-9]{2,10}$")
            for path in ("/api/v1/status", "/api/v1/registrations", "/api/v1/cdr", "/api/v1/docs"):
                expect(page.locator("#paths")).to_contain_text(path)
            expect(page.locator("#schema-Extension")).to_contain_text("forward_busy")
            page.click("#contents a[href='#op-get--api-v1-cdr']")
            self.assertTrue(page.url.endswith("/api/v1/docs#op-get--api-v1-cdr"))
            expect(page.locator("#op-get--api-v1-cdr")).to_contain_text("limit in query: integer (from 1; up to 1000)")
            expect(page.locator("#message")).to_have_text("")
        self.assertEqual(self.problems, [])
