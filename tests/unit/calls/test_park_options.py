"""Tests for :mod:`pbx.calls.park_options` and the ``park:`` section of the configuration."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.park_options import ParkConfig, parse_park, parse_slots
from pbx.config import parse_config
from pbx.errors import ConfigError


class ParkOptionsTests(SynchronousTestCase):
    """The section is validated, and every problem names its key."""

    def problem(self, raw: object) -> ConfigError:
        """The error ``raw`` raises."""
        return self.assertRaises(ConfigError, parse_park, raw)

    def test_absent(self) -> None:
        """No section: no park."""
        self.assertIsNone(parse_park(None))

    def test_full(self) -> None:
        """The example section reads as written."""
        config = parse_park(
            {
                "code": "70",
                "slots": "71-79",
                "timeout": 60,
                "announce": True,
                "operator": "1000",
            }
        )
        self.assertEqual(
            config,
            ParkConfig("70", tuple(str(n) for n in range(71, 80)), 60, True, "1000"),
        )

    def test_defaults(self) -> None:
        """An empty section: code 70, slots 71-79, 60 s, announced, no operator."""
        self.assertEqual(parse_park({}), ParkConfig())

    def test_slots_forms(self) -> None:
        """A range keeps leading zeros; a list is taken as given; one number is one slot."""
        self.assertEqual(parse_slots("08-10"), ("08", "09", "10"))
        self.assertEqual(parse_slots(["701", 702]), ("701", "702"))
        self.assertEqual(parse_slots(71), ("71",))

    def test_bad_values(self) -> None:
        """Each bad value is refused naming its key."""
        cases = [
            ({"color": 1}, "park.color"),
            ({"code": "7a"}, "park.code"),
            ({"code": ""}, "park.code"),
            ({"slots": "79-71"}, "park.slots"),
            ({"slots": "7-100"}, "park.slots"),
            ({"slots": "1-500"}, "park.slots"),
            ({"slots": "x"}, "park.slots"),
            ({"slots": ["71", "71"]}, "park.slots"),
            ({"slots": "70-72"}, "park.code"),
            ({"timeout": 1}, "park.timeout"),
            ({"timeout": "soon"}, "park.timeout"),
            ({"announce": "maybe"}, "park.announce"),
            ({"operator": "front desk"}, "park.operator"),
            ("yes", "park"),
        ]
        for raw, key in cases:
            self.assertEqual(self.problem(raw).key, key, raw)

    def test_in_config(self) -> None:
        """The whole configuration carries the section; without it, none."""
        config = parse_config(
            'sip: {domain: pbx.test}\npark: {slots: "81-82", operator: "1000"}\n',
            "t.yml",
            {},
        )
        self.assertEqual(config.park.slots, ("81", "82"))
        self.assertIsNone(parse_config("sip: {domain: pbx.test}", "t.yml", {}).park)
        error = self.assertRaises(
            ConfigError,
            parse_config,
            "sip: {domain: pbx.test}\npark: {timeout: 2}\n",
            "t.yml",
            {},
        )
        self.assertEqual(error.key, "park.timeout")
