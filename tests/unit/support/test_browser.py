"""Tests for the browser harness's detector of a missing Chromium."""

from __future__ import annotations

import os
import unittest

from twisted.trial.unittest import SynchronousTestCase

from support import browser


class MissingChromiumTests(SynchronousTestCase):
    """Without Chromium the browser tests skip, or fail when CI is set."""

    def setUp(self) -> None:
        self.patch(browser, "CHROMIUM", "/nonexistent/chromium")
        saved = os.environ.pop("CI", None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, "CI", saved)

    def test_skips_outside_ci(self) -> None:
        """Outside CI a missing Chromium is a skip that names the Debian package."""
        with self.assertRaises(unittest.SkipTest) as caught:
            with browser.chromium_page():
                pass
        self.assertIn("Debian package chromium", str(caught.exception))

    def test_fails_in_ci(self) -> None:
        """With CI set a missing Chromium fails the test with a clear message."""
        os.environ["CI"] = "1"
        self.addCleanup(os.environ.pop, "CI", None)
        with self.assertRaises(AssertionError) as caught:
            with browser.chromium_page():
                pass
        self.assertIn("/nonexistent/chromium", str(caught.exception))
        self.assertIn("CI is set", str(caught.exception))
