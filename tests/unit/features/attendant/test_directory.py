"""Tests for dial-by-name matching: keypad spelling, the word searched, who is listed."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.features.attendant.directory import (
    Entry,
    directory_entries,
    find,
    keypad_digits,
    search_word,
)
from pbx.records import ExtensionRecord

PEOPLE = [
    ExtensionRecord("1001", name="Alice Smith"),
    ExtensionRecord("1002", name="Bob Smiley"),
    ExtensionRecord("1003", name="Carol Jones"),
    ExtensionRecord("1004", name="Reception"),
    ExtensionRecord("1005", name="Dan Smith", enabled=False),
    ExtensionRecord("1006", name=""),
    ExtensionRecord("1007", name="Eve Li"),
    ExtensionRecord("1008", name="Frank Müller Jr."),
    ExtensionRecord("1009", name="1234"),
]


class KeypadTests(SynchronousTestCase):
    """Letters to keys, and which word of a name is spelled."""

    def test_keypad(self) -> None:
        """Every letter maps to its key (2=ABC ... 9=WXYZ); case, accents and other characters are ignored."""
        self.assertEqual(keypad_digits("abcdefghijklmnopqrstuvwxyz"), "22233344455566677778889999")
        self.assertEqual(keypad_digits("O'Brien-Éva 2"), "627436382")

    def test_search_word(self) -> None:
        """The last name counts; a one-word name is itself; a generational suffix is skipped."""
        self.assertEqual(search_word("Alice Smith"), "Smith")
        self.assertEqual(search_word("Reception"), "Reception")
        self.assertEqual(search_word("  Frank  Müller Jr. "), "Müller")
        self.assertEqual(search_word("Henry Ford II"), "Ford")
        self.assertEqual(search_word(""), "")


class DirectoryTests(SynchronousTestCase):
    """The directory built from extensions, and matching typed keys."""

    def setUp(self) -> None:
        self.entries = directory_entries(PEOPLE)

    def test_entries(self) -> None:
        """Only enabled extensions whose name has letters are listed, sorted by name."""
        self.assertEqual(
            [(e.number, e.keys) for e in self.entries],
            [("1001", "764"), ("1002", "764"), ("1003", "566"), ("1007", "54"),
             ("1008", "685"), ("1004", "732")],
        )

    def test_one_match(self) -> None:
        """J-O-N finds Carol Jones only."""
        self.assertEqual(find(self.entries, "566"), [Entry("1003", "Carol Jones", "566")])

    def test_several_matches(self) -> None:
        """Smith and Smiley share S-M-I: both are found, in name order; disabled Dan is not."""
        self.assertEqual([e.number for e in find(self.entries, "764")], ["1001", "1002"])

    def test_first_name_of_one_word_name(self) -> None:
        """A one-word name is found by its own first letters."""
        self.assertEqual([e.number for e in find(self.entries, "732")], ["1004"])

    def test_short_names_and_no_match(self) -> None:
        """Two keys find a two-letter name only; unknown keys find nobody."""
        self.assertEqual([e.number for e in find(self.entries, "54")], ["1007"])
        self.assertEqual(find(self.entries, "546"), [])
        self.assertEqual(find(self.entries, "999"), [])
        self.assertEqual(find(self.entries, ""), [])
