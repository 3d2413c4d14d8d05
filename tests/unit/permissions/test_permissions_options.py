"""Tests for :mod:`pbx.permissions.options`: the ``permissions:`` section."""

from __future__ import annotations

from typing import Any

import yaml

from twisted.trial.unittest import SynchronousTestCase

from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.permissions.classes import ServiceClass
from pbx.permissions.options import Limits, PermissionsConfig, parse_permissions

C = ServiceClass
SECTION = """
area_codes: ["408"]
classes: {"+44": national, "+1800": local, "2XXX": internal}
default: local
groups:
  sales: {class: international, members: ["1001", "1002"]}
  ops: {class: national, members: [1002, "1003"]}
extensions:
  "1001": premium
  "1004": {class: internal, limits: {concurrent_outside: 1}}
limits: {concurrent_outside: 4, international_per_hour: 10, hold: true}
international_hours:
  timezone: America/Los_Angeles
  hours: [{days: mon-fri, from: "07:00", to: "19:00"}]
  holidays: ["12-25"]
announcement: site/no-toll
"""


def problem(raw: Any) -> ConfigError:
    """The ConfigError ``raw`` raises."""
    try:
        parse_permissions(raw)
    except ConfigError as e:
        return e
    raise AssertionError(f"{raw!r} was accepted")


class PermissionsOptionsTests(SynchronousTestCase):
    """The section is validated into frozen values; errors name the key."""

    def test_defaults(self) -> None:
        """No section: the NANP table, national for everyone, no limits, no hours."""
        config = parse_permissions(None)
        self.assertEqual(config, PermissionsConfig())
        self.assertEqual(config.class_of("1001"), (C.NATIONAL, "default"))
        self.assertEqual(config.limits_of("1001"), Limits())
        self.assertIsNone(config.international_hours)
        self.assertEqual(config.table.classify("+19005550000"), C.PREMIUM)

    def test_full_section(self) -> None:
        """Every key is read: table entries over NANP, classes by extension, group and default, limits."""
        config = parse_permissions(yaml.safe_load(SECTION))
        table = config.table
        self.assertEqual(table.classify("+442071234567"), C.NATIONAL)
        self.assertEqual(table.classify("+18005550000"), C.LOCAL)
        self.assertEqual(table.classify("+14085550000"), C.LOCAL)
        self.assertEqual(table.classify("2345"), C.INTERNAL)
        self.assertEqual(table.classify("+33123456789"), C.INTERNATIONAL)
        self.assertEqual(config.class_of("1001"), (C.PREMIUM, "extension"))
        self.assertEqual(config.class_of("1002"), (C.INTERNATIONAL, "group sales"))
        self.assertEqual(config.class_of("1003"), (C.NATIONAL, "group ops"))
        self.assertEqual(config.class_of("1004"), (C.INTERNAL, "extension"))
        self.assertEqual(config.class_of("1009"), (C.LOCAL, "default"))
        self.assertEqual(config.limits, Limits(4, 10, True))
        self.assertEqual(config.limits_of("1004"), Limits(1, 10, True))
        self.assertEqual(config.limits_of("1001"), Limits(4, 10, True))
        hours = config.international_hours
        assert hours is not None
        self.assertEqual(hours.timezone, "America/Los_Angeles")
        # 2026-12-07 is a Monday: 16:00 UTC is 08:00 in Los Angeles, 03:00 UTC is 19:00 the day before.
        self.assertEqual(hours.state_at(1796659200.0), "open")
        self.assertEqual(hours.state_at(1796612400.0), "closed")
        self.assertEqual(config.announcement, "site/no-toll")

    def test_numbering_none(self) -> None:
        """numbering: none starts from an empty table: only the classes given classify."""
        config = parse_permissions({"numbering": "none", "classes": {"+": "national"}})
        self.assertEqual(config.table.as_dict(), {"+": "national"})

    def test_top_level_key(self) -> None:
        """The whole configuration reads the section into Config.permissions."""
        config = parse_config(
            "sip: {domain: pbx.test}\npermissions: {default: international}\n",
            "t.yml",
            {},
        )
        self.assertEqual(config.permissions.default, C.INTERNATIONAL)
        plain = parse_config("sip: {domain: pbx.test}\n", "t.yml", {})
        self.assertEqual(plain.permissions, PermissionsConfig())

    def test_errors_name_the_key(self) -> None:
        """Each bad value is refused with its dotted key."""
        cases: list[tuple[Any, str]] = [
            ([], "permissions"),
            ({"colour": 1}, "permissions.colour"),
            ({"numbering": "eu"}, "permissions.numbering"),
            ({"area_codes": ["108"]}, "permissions.area_codes[0]"),
            ({"area_codes": "408"}, "permissions.area_codes"),
            ({"numbering": "none", "area_codes": ["408"]}, "permissions.area_codes"),
            ({"classes": {"+44": "world"}}, "permissions.classes.+44"),
            ({"classes": {"4a": "local"}}, "permissions.classes.4a"),
            ({"classes": {44: "local"}}, "permissions.classes.44"),
            ({"default": "everything"}, "permissions.default"),
            ({"extensions": {"1": "local"}}, "permissions.extensions.1"),
            ({"extensions": {"1001": "world"}}, "permissions.extensions.1001"),
            (
                {"extensions": {"1001": {"klass": "local"}}},
                "permissions.extensions.1001.klass",
            ),
            (
                {"extensions": {"1001": {"limits": {"concurrent_outside": 0}}}},
                "permissions.extensions.1001.limits.concurrent_outside",
            ),
            (
                {"groups": {"a b": {"class": "local", "members": []}}},
                "permissions.groups.a b",
            ),
            ({"groups": {"g": {"members": []}}}, "permissions.groups.g.class"),
            (
                {"groups": {"g": {"class": "local", "members": "1001"}}},
                "permissions.groups.g.members",
            ),
            (
                {"groups": {"g": {"class": "local", "members": ["x"]}}},
                "permissions.groups.g.members[0]",
            ),
            (
                {"limits": {"concurrent_outside": -1}},
                "permissions.limits.concurrent_outside",
            ),
            (
                {"limits": {"international_per_hour": True}},
                "permissions.limits.international_per_hour",
            ),
            ({"limits": {"hold": "yes"}}, "permissions.limits.hold"),
            ({"limits": {"daily": 3}}, "permissions.limits.daily"),
            (
                {"international_hours": {"open": "x", "hours": []}},
                "permissions.international_hours.open",
            ),
            (
                {"international_hours": {"hours": []}},
                "permissions.international_hours.hours",
            ),
            (
                {
                    "international_hours": {
                        "hours": [{"days": "mon", "from": "9", "to": "17:00"}]
                    }
                },
                "permissions.international_hours.hours[0].from",
            ),
            (
                {
                    "international_hours": {
                        "timezone": "Mars/Base",
                        "hours": [{"days": "mon", "from": "09:00", "to": "17:00"}],
                    }
                },
                "permissions.international_hours.timezone",
            ),
            ({"announcement": "../etc/passwd"}, "permissions.announcement"),
        ]
        for raw, key in cases:
            self.assertEqual(problem(raw).key, key, raw)

    def test_unquoted_prefix_hint(self) -> None:
        """YAML's reading of an unquoted +44 as a number is named: quote it."""
        error = problem(yaml.safe_load("classes: {+44: national}"))
        self.assertIn("quoted", error.problem)
