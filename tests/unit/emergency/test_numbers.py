"""Tests for :mod:`pbx.emergency.numbers`: Kari's Law number recognition."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.emergency.numbers import is_emergency


class IsEmergencyTests(SynchronousTestCase):
    """Which dialled numbers are emergency calls, and as which number."""

    def test_direct(self) -> None:
        """911 and 933 dialled directly are themselves."""
        self.assertEqual(is_emergency("911"), "911")
        self.assertEqual(is_emergency("933"), "933")

    def test_outside_line_prefix(self) -> None:
        """911 after the outside-line prefix is 911 (Kari's Law: no prefix needed, and a prefix works)."""
        self.assertEqual(is_emergency("9911"), "911")
        self.assertEqual(is_emergency("9933"), "933")

    def test_visual_separators(self) -> None:
        """Separators a phone may send (RFC 3966) are ignored."""
        self.assertEqual(is_emergency("9-911"), "911")
        self.assertEqual(is_emergency("(911)"), "911")

    def test_not_emergency(self) -> None:
        """Near misses, extensions and longer numbers are not emergency calls."""
        for dialled in ("91", "912", "9112", "99911", "1911", "", "19911", "+911"):
            self.assertIsNone(is_emergency(dialled), dialled)

    def test_configured(self) -> None:
        """Other numbers and prefixes come from the configuration."""
        self.assertEqual(is_emergency("0112", ["112", "911"], ["0"]), "112")
        self.assertEqual(is_emergency("911", ["112", "911"], []), "911")
        self.assertIsNone(is_emergency("9911", ["911"], []))
