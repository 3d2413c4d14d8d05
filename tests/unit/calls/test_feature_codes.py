"""Tests for :mod:`pbx.calls.feature_codes`: the blind transfer code and number, keyed."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.feature_codes import DIGIT_TIMEOUT, DigitCollector, code_problem


class DigitCollectorTests(SynchronousTestCase):
    """Keys in, a number out."""

    def collector(self, code: str = "##") -> tuple[DigitCollector, Clock, list[str]]:
        """A collector for ``code`` on a fresh clock, and the numbers it gave."""
        clock, numbers = Clock(), []
        return DigitCollector(code, clock, numbers.append), clock, numbers

    def keys(self, collector: DigitCollector, keys: str) -> None:
        """Press ``keys`` in order."""
        for key in keys:
            collector.key(key)

    def test_code_number_hash(self) -> None:
        """The code, then digits, then # gives the number at once; no timer is left."""
        collector, clock, numbers = self.collector()
        self.keys(collector, "12##1003#")
        self.assertEqual(numbers, ["1003"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_pause_ends_number(self) -> None:
        """A pause of DIGIT_TIMEOUT after the last key ends the number."""
        collector, clock, numbers = self.collector("*2")
        self.keys(collector, "*21003")
        clock.advance(DIGIT_TIMEOUT - 0.1)
        self.assertEqual(numbers, [])
        clock.advance(0.2)
        self.assertEqual(numbers, ["1003"])

    def test_no_code_no_number(self) -> None:
        """Keys without the code, or the code with no number, give nothing; stop leaves no timer."""
        collector, clock, numbers = self.collector()
        self.keys(collector, "1#2#3")
        self.keys(collector, "###")
        clock.advance(DIGIT_TIMEOUT + 1)
        self.assertEqual(numbers, [])
        self.keys(collector, "##12")
        collector.stop()
        clock.advance(DIGIT_TIMEOUT + 1)
        self.assertEqual((numbers, clock.getDelayedCalls()), ([], []))

    def test_code_problem(self) -> None:
        """Codes are up to 4 keys of 0-9, * and #; "" turns the feature off."""
        self.assertIsNone(code_problem("##"))
        self.assertIsNone(code_problem(""))
        self.assertIsNotNone(code_problem("#####"))
        self.assertIsNotNone(code_problem("#a"))
