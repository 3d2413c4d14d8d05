"""Tests for :mod:`pbx.calls.dialplan`: patterns, route order and config checks."""

from __future__ import annotations

import re
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.dialplan import (
    Dialplan,
    HangUp,
    Route,
    ToApplication,
    ToExtension,
    compile_pattern,
    parse_dialplan,
)
from pbx.errors import ConfigError


def matches(pattern: str, number: str) -> bool:
    """Whether ``pattern`` takes ``number`` the way the dialplan tries it."""
    return compile_pattern(pattern).match(number) is not None


class CompilePatternTests(SynchronousTestCase):
    """Exact, ``_``-style and ``re:`` patterns."""

    def test_exact(self) -> None:
        """An exact pattern matches that number only, neither a prefix nor a longer number."""
        self.assertTrue(matches("1001", "1001"))
        self.assertFalse(matches("1001", "100"))
        self.assertFalse(matches("1001", "10011"))
        self.assertFalse(matches("1001", "1002"))

    def test_exact_is_literal(self) -> None:
        """Characters of an exact pattern are not regular expression syntax."""
        self.assertTrue(matches("*97", "*97"))
        self.assertTrue(matches("1.2", "1.2"))
        self.assertFalse(matches("1.2", "152"))

    def test_x(self) -> None:
        """``_1XXX`` is any four-digit number starting with 1."""
        self.assertTrue(matches("_1XXX", "1000"))
        self.assertTrue(matches("_1XXX", "1999"))
        self.assertFalse(matches("_1XXX", "2000"))
        self.assertFalse(matches("_1XXX", "100"))
        self.assertFalse(matches("_1XXX", "10000"))
        self.assertFalse(matches("_1XXX", "1a00"))

    def test_z(self) -> None:
        """``Z`` is a digit 1-9."""
        self.assertTrue(matches("_Z", "1"))
        self.assertTrue(matches("_Z", "9"))
        self.assertFalse(matches("_Z", "0"))

    def test_n(self) -> None:
        """``N`` is a digit 2-9."""
        self.assertTrue(matches("_N", "2"))
        self.assertTrue(matches("_N", "9"))
        self.assertFalse(matches("_N", "1"))
        self.assertFalse(matches("_N", "0"))

    def test_set(self) -> None:
        """``[1-5]`` and ``[137]`` are digit sets."""
        self.assertTrue(matches("_[1-5]X", "30"))
        self.assertFalse(matches("_[1-5]X", "60"))
        self.assertTrue(matches("_[137]", "7"))
        self.assertFalse(matches("_[137]", "2"))

    def test_dot(self) -> None:
        """``.`` is one or more characters."""
        self.assertTrue(matches("_9.", "91"))
        self.assertTrue(matches("_9.", "9123456"))
        self.assertFalse(matches("_9.", "9"))

    def test_bang(self) -> None:
        """``!`` is zero or more characters."""
        self.assertTrue(matches("_9!", "9"))
        self.assertTrue(matches("_9!", "9123"))
        self.assertFalse(matches("_9!", "8123"))

    def test_literal_in_underscore_pattern(self) -> None:
        """Other characters of a ``_`` pattern stand for themselves."""
        self.assertTrue(matches("_*7X", "*71"))
        self.assertFalse(matches("_*7X", "771"))

    def test_regex(self) -> None:
        """``re:`` takes a regular expression as it is."""
        self.assertTrue(matches(r"re:^9\d{3}$", "9123"))
        self.assertFalse(matches(r"re:^9\d{3}$", "91234"))
        self.assertEqual(compile_pattern(r"re:^9(\d+)$").match("9123").group(1), "123")  # type: ignore[union-attr]

    def test_unclosed_set(self) -> None:
        """An unclosed ``[`` is refused."""
        with self.assertRaises(ValueError):
            compile_pattern("_1[23")

    def test_set_of_letters(self) -> None:
        """A set may hold digits and ranges only."""
        with self.assertRaises(ValueError):
            compile_pattern("_[a-z]")

    def test_bad_regex(self) -> None:
        """A broken regular expression raises re.error."""
        with self.assertRaises(re.error):
            compile_pattern("re:(")


def plan(*routes: tuple[str, Any, bool]) -> Dialplan:
    """A dialplan from (pattern, action, public) triples."""
    return Dialplan(
        tuple(Route(p, compile_pattern(p), a, public) for p, a, public in routes)
    )


class ResolveTests(SynchronousTestCase):
    """Dialplan.resolve: which route decides."""

    def test_empty(self) -> None:
        """With no routes every number is left to its extension (None)."""
        self.assertIsNone(Dialplan().resolve("1001", authenticated=True))

    def test_first_match_wins(self) -> None:
        """Routes are tried in order; the first that matches decides."""
        dialplan = plan(
            ("1001", ToExtension("2000"), False),
            ("_1XXX", HangUp(403, "No"), False),
        )
        self.assertEqual(
            dialplan.resolve("1001", authenticated=True), ToExtension("2000")
        )
        self.assertEqual(
            dialplan.resolve("1002", authenticated=True), HangUp(403, "No")
        )
        self.assertIsNone(dialplan.resolve("2002", authenticated=True))

    def test_number_substitution(self) -> None:
        """``$number`` in an extension target is the dialled number."""
        dialplan = plan(("_1XXX", ToExtension("$number"), False))
        self.assertEqual(
            dialplan.resolve("1234", authenticated=True), ToExtension("1234")
        )

    def test_group_substitution(self) -> None:
        """``$1`` is the first group of a regular expression pattern."""
        dialplan = plan((r"re:^9(\d+)$", ToExtension("$1"), False))
        self.assertEqual(
            dialplan.resolve("91005", authenticated=True), ToExtension("1005")
        )

    def test_application_args_substitution(self) -> None:
        """Text args of an application route take ``$1`` and ``$number`` too; other args and other routes stay as they are."""
        args = {"mailbox": "$1", "from": "$number", "reason": "busy", "limit": 3}
        dialplan = plan((r"re:^\*2(\d{4})$", ToApplication("voicemail", args), False),
                        ("*97", ToApplication("voicemail-main", {"ask": "$1"}), False))
        self.assertEqual(
            dialplan.resolve("*21003", authenticated=True),
            ToApplication("voicemail", {"mailbox": "1003", "from": "*21003", "reason": "busy", "limit": 3}),
        )
        self.assertEqual(dialplan.resolve("*97", authenticated=True), ToApplication("voicemail-main", {"ask": "$1"}))

    def test_public_route_for_unauthenticated(self) -> None:
        """Unauthenticated callers skip private routes and may use public ones."""
        dialplan = plan(
            ("_1XXX", HangUp(403), False),
            ("1001", ToExtension("1001"), True),
        )
        self.assertEqual(dialplan.resolve("1001", authenticated=True), HangUp(403))
        self.assertEqual(
            dialplan.resolve("1001", authenticated=False), ToExtension("1001")
        )
        self.assertIsNone(dialplan.resolve("1002", authenticated=False))

    def test_hangup_route(self) -> None:
        """A hangup route returns its status and reason."""
        dialplan = plan(("_900X", HangUp(603, "Premium numbers barred"), False))
        self.assertEqual(
            dialplan.resolve("9001", authenticated=True),
            HangUp(603, "Premium numbers barred"),
        )

    def test_application_route(self) -> None:
        """An application route returns the application with its args."""
        dialplan = plan(("*97", ToApplication("voicemail", {"box": "1001"}), False))
        action = dialplan.resolve("*97", authenticated=True)
        self.assertEqual(action, ToApplication("voicemail", {"box": "1001"}))


class ParseDialplanTests(SynchronousTestCase):
    """parse_dialplan: the ``dialplan:`` config section."""

    def error(self, raw: Any) -> ConfigError:
        """The ConfigError ``raw`` raises."""
        with self.assertRaises(ConfigError) as caught:
            parse_dialplan(raw)
        return caught.exception

    def test_none(self) -> None:
        """A missing section is an empty dialplan."""
        self.assertEqual(parse_dialplan(None), Dialplan())

    def test_routes(self) -> None:
        """Every kind of route is read, in order, with its public flag."""
        dialplan = parse_dialplan(
            [
                {"match": 1001, "extension": "2000"},
                {"match": "_1XXX", "extension": "$number", "public": True},
                {"match": "*97", "app": "voicemail", "args": {"box": 1}},
                {"match": "_900X", "hangup": 603, "reason": "Barred"},
            ]
        )
        self.assertEqual(
            [r.pattern for r in dialplan.routes], ["1001", "_1XXX", "*97", "_900X"]
        )
        self.assertEqual(
            [r.public for r in dialplan.routes], [False, True, False, False]
        )
        self.assertEqual(
            [r.action for r in dialplan.routes],
            [
                ToExtension("2000"),
                ToExtension("$number"),
                ToApplication("voicemail", {"box": 1}),
                HangUp(603, "Barred"),
            ],
        )
        self.assertEqual(
            dialplan.resolve("1001", authenticated=True), ToExtension("2000")
        )
        self.assertEqual(
            dialplan.resolve("1500", authenticated=False), ToExtension("1500")
        )

    def test_not_a_list(self) -> None:
        """A section that is not a list names ``dialplan``."""
        self.assertEqual(self.error({"match": "1"}).key, "dialplan")

    def test_entry_not_a_mapping(self) -> None:
        """An entry that is not a mapping names its index."""
        self.assertEqual(self.error(["1001"]).key, "dialplan[0]")

    def test_unknown_key(self) -> None:
        """An unknown key is named."""
        error = self.error(
            [
                {"match": "1", "extension": "10"},
                {"match": "1", "extension": "10", "extn": 1},
            ]
        )
        self.assertEqual(error.key, "dialplan[1].extn")
        self.assertEqual(error.problem, "unknown key")

    def test_missing_match(self) -> None:
        """An entry without match: names ``match``."""
        self.assertEqual(self.error([{"extension": "1001"}]).key, "dialplan[0].match")

    def test_boolean_match(self) -> None:
        """A boolean match (YAML ``yes``) is refused."""
        self.assertEqual(
            self.error([{"match": True, "extension": "1001"}]).key, "dialplan[0].match"
        )

    def test_bad_pattern(self) -> None:
        """A pattern that does not compile names ``match`` and the pattern."""
        for pattern in ("_1[2", "_[ab]", "re:("):
            error = self.error([{"match": pattern, "extension": "1001"}])
            self.assertEqual(error.key, "dialplan[0].match")
            self.assertIn(repr(pattern), error.problem)

    def test_no_action(self) -> None:
        """An entry without an action names the entry."""
        error = self.error([{"match": "1001"}])
        self.assertEqual(error.key, "dialplan[0]")
        self.assertIn("exactly one", error.problem)

    def test_two_actions(self) -> None:
        """An entry with two actions names the entry."""
        self.assertEqual(
            self.error([{"match": "1001", "extension": "1002", "hangup": 486}]).key,
            "dialplan[0]",
        )

    def test_bad_extension(self) -> None:
        """An extension target that is neither a number, $number nor $1-$9 names ``extension``."""
        for target in ("abc", "1", "$0", "$numbers", "$12"):
            self.assertEqual(
                self.error([{"match": "1001", "extension": target}]).key,
                "dialplan[0].extension",
            )

    def test_group_without_group(self) -> None:
        """``$1`` needs a ``re:`` pattern with a first group (else every call would reach "$1")."""
        error = self.error([{"match": "_9XXXX", "extension": "$1"}])
        self.assertEqual(error.key, "dialplan[0].extension")
        self.assertIn("group", error.problem)
        self.assertEqual(
            self.error([{"match": r"re:^9(\d+)$", "extension": "$2"}]).key,
            "dialplan[0].extension",
        )
        dialplan = parse_dialplan([{"match": r"re:^9(\d)(\d+)$", "extension": "$2"}])
        self.assertEqual(
            dialplan.resolve("91005", authenticated=True), ToExtension("005")
        )

    def test_bad_app(self) -> None:
        """An application name that is not text, or args that are not a mapping, name ``app``."""
        self.assertEqual(self.error([{"match": "1", "app": 5}]).key, "dialplan[0].app")
        self.assertEqual(
            self.error([{"match": "1", "app": "echo", "args": [1]}]).key,
            "dialplan[0].app",
        )

    def test_bad_hangup(self) -> None:
        """A hangup status outside 400-699, or not an integer, names ``hangup``."""
        for status in (200, 700, "486", True):
            self.assertEqual(
                self.error([{"match": "1", "hangup": status}]).key, "dialplan[0].hangup"
            )

    def test_bad_public(self) -> None:
        """A public flag that is not a boolean names ``public``."""
        self.assertEqual(
            self.error([{"match": "1", "extension": "10", "public": "yes"}]).key,
            "dialplan[0].public",
        )
