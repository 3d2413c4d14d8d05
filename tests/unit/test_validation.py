"""Tests for :mod:`pbx.validation`: the checks shared by the API and the config file."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.validation import (
    admin_username_problem,
    display_name_problem,
    email_problem,
    extension_number_problem,
    json_problem,
    pin_format_problem,
    printable,
    text_problem,
)


class TextTests(SynchronousTestCase):
    """Text that could split a header or forge a log line is refused."""

    def test_ordinary_names_pass(self) -> None:
        """Names in any script, with accents and punctuation, pass."""
        for name in ("Alice", "Zoë O'Brien", "山田 太郎", "Sales (2nd floor)", ""):
            self.assertIsNone(display_name_problem(name), name)

    def test_refused_characters(self) -> None:
        """Line breaks, other controls, separators, surrogates and direction overrides are refused."""
        cases = {
            "a\r\nb": "holds a line break",
            "a\nb": "holds a line break",
            "a\tb": "holds the control character U+0009",
            "a\x00b": "holds the control character U+0000",
            "a\u2028b": "holds the control character U+2028",
            "a\ud800": "holds a lone surrogate (not valid Unicode text)",
            "\u202eevil": "holds the direction control U+202E",
        }
        for value, problem in cases.items():
            self.assertEqual(text_problem(value, 100), problem, repr(value))

    def test_length_and_type(self) -> None:
        """Too long or not a string is refused."""
        self.assertEqual(display_name_problem("x" * 101), "is longer than 100 characters")
        self.assertEqual(display_name_problem(7), "must be a string")

    def test_printable(self) -> None:
        """printable() blanks what text_problem refuses and leaves good text as it is."""
        self.assertEqual(printable("Eve\r\nX: 1\u202e"), "Eve  X: 1 ")
        self.assertEqual(printable("Zoë"), "Zoë")


class FieldTests(SynchronousTestCase):
    """Numbers, user names, PINs and e-mail addresses."""

    def test_email(self) -> None:
        """An address is local@domain within 254 characters; empty means none."""
        self.assertIsNone(email_problem(""))
        self.assertIsNone(email_problem("alice@example.com"))
        self.assertEqual(email_problem("a" * 250 + "@b.cc"), "is longer than 254 characters")
        for bad in ("alice", "a b@example.com", "a@b@c", "<a@b.c>", "a@-b.c"):
            self.assertEqual(email_problem(bad), "is not an e-mail address", bad)

    def test_numbers_usernames_pins(self) -> None:
        """Each has its one pattern; full-width digits are not digits here."""
        self.assertIsNone(extension_number_problem("1001"))
        self.assertEqual(extension_number_problem("１００１"), "must be 2-10 digits")
        self.assertEqual(extension_number_problem(1001), "must be 2-10 digits")
        self.assertIsNone(admin_username_problem("ops.admin@site"))
        self.assertEqual(admin_username_problem("a\nb"), "must be 1-64 letters, digits or _.@-")
        self.assertIsNone(pin_format_problem("4826"))
        self.assertEqual(pin_format_problem("12"), "must be 4-12 digits")


class JSONTests(SynchronousTestCase):
    """Decoded JSON bodies."""

    def test_depth(self) -> None:
        """Nesting is limited; keys and values both count."""
        value: object = 1
        for _ in range(16):
            value = [value]
        self.assertIsNone(json_problem(value))
        self.assertEqual(json_problem([value]), "is nested deeper than 16 levels")

    def test_surrogates(self) -> None:
        """A lone surrogate in a key or a value is refused."""
        self.assertEqual(json_problem({"\udc00": 1}), "holds a lone surrogate (not valid Unicode text)")
        self.assertEqual(json_problem({"a": ["ok", "\ud800"]}), "holds a lone surrogate (not valid Unicode text)")
        self.assertIsNone(json_problem({"a": ["ok", "😀"]}))
