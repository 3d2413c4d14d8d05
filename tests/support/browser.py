"""
Debian's Chromium, headless, driven by Playwright, for the browser tests.

Playwright cannot download its own browsers here, so it launches the
system's ``/usr/bin/chromium``. A missing Chromium or Playwright skips the
test with the reason, or fails it when ``CI`` is set (there it means a
broken image, as for the SIP peers in :func:`support.daemon.require_binary`).
"""

from __future__ import annotations

import os
import unittest
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
#: Headless, and nothing that reaches beyond loopback or the test's profile.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The longest any one step (a page load, an element appearing) may take, in ms.
STEP_LIMIT_MS = 15_000


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        raise AssertionError(f"{reason}; CI is set, so a missing browser is an error")
    raise unittest.SkipTest(reason)


@contextmanager
def chromium_page() -> Iterator[Page]:
    """
    A fresh page in a new headless Chromium; the browser closes on exit.

    :raises unittest.SkipTest: without Chromium or Playwright (outside CI).
    :raises AssertionError: without them when ``CI`` is set.
    """
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"Chromium is not installed at {CHROMIUM} (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed (the test extra has it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(STEP_LIMIT_MS)
            yield page
        finally:
            browser.close()
