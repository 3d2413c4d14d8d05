"""Tests for :mod:`pbx.calls.feature_codes`: in-call codes and their numbers, keyed."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.feature_codes import (
    DIGIT_TIMEOUT,
    CodeWatch,
    DigitCollector,
    clash,
    code_problem,
)


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


class SeveralCodesTests(SynchronousTestCase):
    """One collector per party watches every in-call code at once."""

    def test_each_code_starts_its_own_number(self) -> None:
        """``*2`` and ``*3`` each hand their number to their own action; ``##`` still works beside them."""
        clock, got = Clock(), []
        collector = DigitCollector(
            {code: (lambda number, code=code: got.append((code, number))) for code in ("##", "*2", "*3")},
            clock,
        )
        for keys in ("*21003#", "1*31004#", "##1005#"):
            for key in keys:
                collector.key(key)
        self.assertEqual(got, [("*2", "1003"), ("*3", "1004"), ("##", "1005")])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_code_watch_fires_at_last_key(self) -> None:
        """A code without a number acts the moment its last key comes, and says which it was."""
        fired: list[str] = []
        watch = CodeWatch({"*": lambda: fired.append("*"), "": lambda: fired.append("off")})
        self.assertIsNone(watch.key("1"))
        self.assertEqual(watch.key("*"), "*")
        self.assertEqual(fired, ["*"])

    def test_clash(self) -> None:
        """A code that ends another, or equals it, is named with the code it hides; "" clashes with nothing."""
        self.assertIsNone(clash({"t.blind": "##", "t.attended": "*2", "t.three_way": "*3", "t.off": ""}))
        self.assertEqual(clash({"t.blind": "#", "t.attended": "*2#"}), ("t.blind", "'#' would hide t.attended '*2#'"))
        self.assertEqual(clash({"t.a": "*2", "t.b": "*2"})[0], "t.a")  # type: ignore[index]
