"""Tests for :mod:`pbx.permissions.classes`: the class ladder and the prefix table."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.permissions.classes import (
    CLASS_NAMES,
    NumberTable,
    ServiceClass,
    nanp_table,
    prefix_problem,
)

C = ServiceClass


class ClassLadderTests(SynchronousTestCase):
    """A class allows itself and every class below it; premium is the top."""

    def test_order(self) -> None:
        """The ladder is internal < local < national < international < premium."""
        self.assertEqual(
            CLASS_NAMES, ("internal", "local", "national", "international", "premium")
        )
        self.assertEqual(sorted(C, reverse=True)[0], C.PREMIUM)

    def test_allows_itself_and_below(self) -> None:
        """Each class allows exactly the classes at or below it."""
        for have in C:
            self.assertEqual(
                [c for c in C if have.allows(c)], [c for c in C if c <= have]
            )

    def test_international_does_not_reach_premium(self) -> None:
        """An international extension cannot call premium numbers; premium calls anything."""
        self.assertFalse(C.INTERNATIONAL.allows(C.PREMIUM))
        self.assertTrue(all(C.PREMIUM.allows(c) for c in C))
        self.assertFalse(C.INTERNAL.allows(C.LOCAL))

    def test_named(self) -> None:
        """Names are the configuration's lower-case words; anything else is a KeyError."""
        self.assertIs(C.named("national"), C.NATIONAL)
        self.assertEqual(C.NATIONAL.label, "national")
        for bad in ("NATIONAL", "National", "world", ""):
            self.assertRaises(KeyError, C.named, bad)


class NumberTableTests(SynchronousTestCase):
    """Longest-prefix classification with the NANP default."""

    def setUp(self) -> None:
        self.table = NumberTable.of(nanp_table(["408", "669"]))

    def test_nanp_default(self) -> None:
        """+1 is national, the area codes local, +1900/+1976 premium, other +CC international."""
        cases = {
            "+14085551234": C.LOCAL,
            "+16695550000": C.LOCAL,
            "+12125551234": C.NATIONAL,
            "+19005551234": C.PREMIUM,
            "+19765551234": C.PREMIUM,
            "+442071234567": C.INTERNATIONAL,
            "+861012345678": C.INTERNATIONAL,
            "+18765551234": C.INTERNATIONAL,  # Jamaica is inside +1, billed abroad
        }
        self.assertEqual({n: self.table.classify(n) for n in cases}, cases)

    def test_extensions_are_internal(self) -> None:
        """A short number without + that no prefix matches is an extension: internal."""
        self.assertEqual(self.table.classify("1001"), C.INTERNAL)
        self.assertEqual(self.table.classify("42"), C.INTERNAL)

    def test_unknown_long_numbers_fail_closed(self) -> None:
        """A long number no prefix classifies is premium: only the top class reaches it."""
        self.assertEqual(self.table.classify("9005551234"), C.PREMIUM)
        self.assertEqual(self.table.classify("011442071234567"), C.PREMIUM)
        self.assertEqual(self.table.classify("+"), C.INTERNATIONAL)

    def test_longest_prefix_wins(self) -> None:
        """The longest matching prefix decides, whatever the order given."""
        table = NumberTable.of(
            {"+4": C.NATIONAL, "+44": C.INTERNATIONAL, "+447": C.PREMIUM, "+": C.LOCAL}
        )
        self.assertEqual(table.classify("+4471234"), C.PREMIUM)
        self.assertEqual(table.classify("+4420"), C.INTERNATIONAL)
        self.assertEqual(table.classify("+49"), C.NATIONAL)
        self.assertEqual(table.classify("+33"), C.LOCAL)
        self.assertEqual(table.match("+4420"), ("+44", C.INTERNATIONAL))

    def test_digit_classes(self) -> None:
        """X, Z and N match a digit; of equal length, a literal prefix beats a pattern."""
        table = NumberTable.of(
            {"+1NXX": C.NATIONAL, "+1900": C.PREMIUM, "2XXX": C.INTERNAL}
        )
        self.assertEqual(table.classify("+19005550000"), C.PREMIUM)
        self.assertEqual(table.classify("+12125550000"), C.NATIONAL)
        self.assertEqual(table.classify("+11125550000"), C.PREMIUM)  # N is 2-9
        self.assertEqual(table.classify("2345"), C.INTERNAL)
        self.assertEqual(table.entries[0][0], "+1900")

    def test_separators_ignored(self) -> None:
        """Visual separators are dropped before matching (RFC 3966 §5.1.1)."""
        self.assertEqual(self.table.classify("+1 (900) 555-1234"), C.PREMIUM)
        self.assertEqual(self.table.classify("+1.408.555.1234"), C.LOCAL)

    def test_bad_prefixes(self) -> None:
        """A prefix is + and digits or digits (with X, Z, N); anything else is refused."""
        for good in ("+", "+1", "+1NXX", "2", "011"):
            self.assertIsNone(prefix_problem(good))
        for bad in ("", "1+", "+1a", "+" + "1" * 16, "++1"):
            self.assertIsNotNone(prefix_problem(bad))
        self.assertRaises(ValueError, NumberTable.of, {"1+": C.LOCAL})

    def test_as_dict(self) -> None:
        """The table's JSON form maps each prefix to its class name."""
        shown = self.table.as_dict()
        self.assertEqual(shown["+1900"], "premium")
        self.assertEqual(shown["+1408"], "local")
        self.assertEqual(shown["+"], "international")
