"""Tests for the attendant's menus, schedules and feature options: validation and schedule selection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml

from twisted.trial.unittest import SynchronousTestCase

from pbx.errors import ConfigError
from pbx.features.attendant.menus import (
    Directory,
    GoToMenu,
    Hangup,
    Operator,
    Queue,
    RunApplication,
    Transfer,
    Voicemail,
    dump_menu,
    parse_menu,
)
from pbx.features.attendant.options import (
    MenuSet,
    menu_users,
    parse_options,
    reference_problems,
    route_target,
    target_problem,
)
from pbx.features.attendant.schedule import dump_schedule, parse_days, parse_schedule

FEATURE = """
timezone: Europe/Berlin
operator: "1000"
menus:
  main:
    greeting: [aa/welcome, aa/operator]
    options:
      1: {extension: "1001"}
      2: {menu: sales}
      3: {voicemail: "1002"}
      9: {directory: true}
      0: {operator: true}
      "*": {hangup: true}
      "#": {application: echo, args: {x: 1}}
      7: {queue: support}
    direct_dial: _1XXX
    timeout: 4
    retries: 2
    on_fail: {menu: sales}
  sales:
    greeting: /srv/sounds/sales.wav
    options: {9: {menu: main}}
    direct_dial: true
  after_hours: {greeting: aa/closed}
schedules:
  office:
    hours:
      - {days: mon-fri, from: "08:00", to: "17:30"}
      - {days: sat, from: "09:00", to: "12:00"}
    holidays: [2026-12-25, "01-01"]
    open: main
    closed: after_hours
  shop:
    timezone: America/New_York
    hours: [{days: "sun,tue-wed", from: "10:00", to: "24:00"}]
    holidays: ["2026-07-04"]
    open: sales
    closed: after_hours
    holiday: main
"""


def feature(text: str = FEATURE, **changes: Any) -> dict[str, Any]:
    """The feature section of :data:`FEATURE` with top-level ``changes``."""
    raw: dict[str, Any] = yaml.safe_load(text)
    raw.update(changes)
    return raw


def error(raw: Any) -> ConfigError:
    """The ConfigError :func:`parse_options` raises for ``raw``."""
    try:
        parse_options(raw)
    except ConfigError as e:
        return e
    raise AssertionError("no ConfigError")


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    """POSIX time of a UTC wall-clock moment."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


class MenuParsingTests(SynchronousTestCase):
    """Menus and actions from YAML."""

    def test_full_example(self) -> None:
        """Every action type, direct-dial pattern and timing option parses as written."""
        menu_set = parse_options(feature())
        main = menu_set.menus["main"]
        self.assertEqual(main.greeting, ("aa/welcome", "aa/operator"))
        self.assertEqual(
            dict(main.options),
            {
                "1": Transfer("1001"), "2": GoToMenu("sales"), "3": Voicemail("1002"),
                "9": Directory(), "0": Operator(), "*": Hangup(),
                "#": RunApplication("echo", {"x": 1}), "7": Queue("support"),
            },
        )
        self.assertEqual((main.timeout, main.retries, main.on_fail), (4.0, 2, GoToMenu("sales")))
        self.assertTrue(main.allows("1234"))
        self.assertFalse(main.allows("2234"))
        self.assertEqual(menu_set.menus["sales"].greeting, ("/srv/sounds/sales.wav",))
        self.assertTrue(menu_set.menus["sales"].allows("42"))
        self.assertFalse(menu_set.menus["after_hours"].allows("1001"))
        self.assertEqual(menu_set.menus["after_hours"].on_fail, Hangup())
        self.assertEqual((menu_set.timezone, menu_set.operator), ("Europe/Berlin", "1000"))

    def test_dump_reads_back_equal(self) -> None:
        """dump_menu and dump_schedule give JSON-ready forms that parse back to equal objects."""
        menu_set = parse_options(feature())
        for name, menu in menu_set.menus.items():
            self.assertEqual(parse_menu(dump_menu(menu), "", name), menu)
        for name, schedule in menu_set.schedules.items():
            self.assertEqual(parse_schedule(dump_schedule(schedule), "", name), schedule)
        self.assertEqual(dump_schedule(menu_set.schedules["shop"])["hours"][0]["days"], "tue-wed,sun")

    def test_empty_section(self) -> None:
        """No options at all is a valid, empty attendant in UTC."""
        self.assertEqual(parse_options({}), MenuSet())

    def test_errors_name_the_key(self) -> None:
        """Each mistake is reported with its key path relative to the feature section."""
        cases = [
            ({"main": {"greeting": "aa/welcome", "options": {7: {"extension": 1001}}}},
             "menus.main.options.7.extension", "quote it"),
            ({"main": {"greeting": "aa/welcome", "options": {7: {"extension": "10a"}}}},
             "menus.main.options.7.extension", "not an extension number"),
            ({"main": {"greeting": "aa/welcome", "options": {7: {"extension": "1", "menu": "x"}}}},
             "menus.main.options.7", "exactly one"),
            ({"main": {"greeting": "aa/welcome", "options": {7: {"directory": False}}}},
             "menus.main.options.7.directory", "must be true"),
            ({"main": {"greeting": "aa/welcome", "options": {7: {"application": "echo", "args": []}}}},
             "menus.main.options.7.args", "mapping"),
            ({"main": {"greeting": "aa/welcome", "options": {7: {"hangup": True, "extra": 1}}}},
             "menus.main.options.7.extra", "unknown key"),
            ({"main": {"greeting": "aa/welcome", "options": {10: {"hangup": True}}}},
             "menus.main.options.10", "0-9"),
            ({"main": {"greeting": "aa/welcome", "options": {"A": {"hangup": True}}}},
             "menus.main.options.A", "0-9"),
            ({"main": {"greeting": "Welcome!"}}, "menus.main.greeting", "prompt id"),
            ({"main": {"greeting": ["aa/welcome", 3]}}, "menus.main.greeting[1]", "prompt id"),
            ({"main": {"greeting": []}}, "menus.main.greeting", "non-empty"),
            ({"main": {"options": {}}}, "menus.main.greeting", "required"),
            ({"main": {"greeting": "aa/welcome", "timeout": 0}}, "menus.main.timeout", "outside"),
            ({"main": {"greeting": "aa/welcome", "retries": "3"}}, "menus.main.retries", "whole number"),
            ({"main": {"greeting": "aa/welcome", "direct_dial": "_1[XX"}}, "menus.main.direct_dial", "not a pattern"),
            ({"main": {"greeting": "aa/welcome", "on_fail": {"menu": "nowhere"}}}, "menus.main.on_fail.menu", "no menu"),
            ({"main": {"greeting": "aa/welcome", "options": {2: {"menu": "nowhere"}}}},
             "menus.main.options.2.menu", "no menu 'nowhere'"),
            ({"main": {"greeting": "aa/welcome", "options": {0: {"operator": True}}}},
             "menus.main.options.0.operator", "no operator"),
            ({"main": {"greeting": "aa/welcome", "colour": "red"}}, "menus.main.colour", "unknown key"),
            ({"bad name": {"greeting": "aa/welcome"}}, "menus.bad name", "not a name"),
            ({"main": "aa/welcome"}, "menus.main", "must be a mapping"),
        ]
        for menus, key, problem in cases:
            e = error({"menus": menus})
            self.assertEqual(e.key, key, (menus, str(e)))
            self.assertIn(problem, e.problem, (menus, str(e)))

    def test_menu_operator_satisfies_operator_action(self) -> None:
        """A menu's own operator makes {operator: true} valid without a feature-wide one."""
        menu_set = parse_options({"menus": {"m": {"greeting": "aa/welcome", "operator": "1005",
                                                  "options": {0: {"operator": True}}}}})
        self.assertEqual(menu_set.operator_of(menu_set.menus["m"]), "1005")

    def test_top_level_errors(self) -> None:
        """Unknown keys, time zones and operators at the top of the section are named."""
        self.assertEqual(error({"menu": {}}).key, "menu")
        self.assertEqual(error(feature(timezone="Mars/Olympus")).key, "timezone")
        self.assertEqual(error(feature(operator="op")).key, "operator")
        self.assertEqual(error({"menus": []}).key, "menus")


class ScheduleParsingTests(SynchronousTestCase):
    """Schedules from YAML."""

    def schedule_error(self, schedule: dict[str, Any]) -> ConfigError:
        """The error for one schedule ``office`` in an otherwise valid section."""
        raw = feature()
        raw["schedules"] = {"office": {"open": "main", "closed": "after_hours", **schedule}}
        return error(raw)

    def test_days(self) -> None:
        """Single days, ranges, wrapping ranges and lists all parse."""
        self.assertEqual(parse_days("mon-fri", "d"), frozenset(range(5)))
        self.assertEqual(parse_days("fri-mon", "d"), frozenset({4, 5, 6, 0}))
        self.assertEqual(parse_days(["sat", "Sun"], "d"), frozenset({5, 6}))
        self.assertEqual(parse_days("mon, wed-thu", "d"), frozenset({0, 2, 3}))

    def test_errors_name_the_key(self) -> None:
        """Bad days, times, dates, zones and menu names are reported at their key."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"hours": [{"days": "weekdays", "from": "08:00", "to": "17:00"}]}, "schedules.office.hours[0].days"),
            ({"hours": [{"days": "mon", "from": 480, "to": "17:00"}]}, "schedules.office.hours[0].from"),
            ({"hours": [{"days": "mon", "from": "8am", "to": "17:00"}]}, "schedules.office.hours[0].from"),
            ({"hours": [{"days": "mon", "from": "18:00", "to": "17:00"}]}, "schedules.office.hours[0].to"),
            ({"hours": [{"days": "mon", "from": "08:00", "to": "24:30"}]}, "schedules.office.hours[0].to"),
            ({"hours": [{"days": "mon", "from": "08:00"}]}, "schedules.office.hours[0].to"),
            ({"hours": {"days": "mon"}}, "schedules.office.hours"),
            ({"holidays": ["2026-02-30"]}, "schedules.office.holidays[0]"),
            ({"holidays": ["Christmas"]}, "schedules.office.holidays[0]"),
            ({"timezone": "Nowhere/Town"}, "schedules.office.timezone"),
            ({"open": "nowhere"}, "schedules.office.open"),
            ({"holiday": "nowhere"}, "schedules.office.holiday"),
        ]
        for schedule, key in cases:
            self.assertEqual(self.schedule_error(schedule).key, key, schedule)
        raw = feature()
        raw["schedules"] = {"office": {"open": "main"}}
        self.assertEqual(str(error(raw)), "schedules.office.closed: required (a menu name)")

    def test_annual_leap_day(self) -> None:
        """A yearly holiday may be 02-29; 02-30 is refused."""
        self.assertEqual(parse_schedule({"open": "a", "closed": "b", "holidays": ["02-29"]}, "", "s").holidays,
                         frozenset({"02-29"}))
        with self.assertRaises(ConfigError):
            parse_schedule({"open": "a", "closed": "b", "holidays": ["02-30"]}, "", "s")


class ScheduleSelectionTests(SynchronousTestCase):
    """Which menu a schedule picks at a moment, in its time zone."""

    def setUp(self) -> None:
        self.menu_set = parse_options(feature())
        self.office = self.menu_set.schedules["office"]
        self.shop = self.menu_set.schedules["shop"]

    def menu(self, when: float) -> str:
        """The office menu at ``when`` with the feature's time zone (Berlin)."""
        return self.office.menu_at(when, self.menu_set.timezone)

    def test_weekdays_and_weekend(self) -> None:
        """Inside weekday hours the open menu plays; evenings, Saturday afternoon and Sunday get the closed one."""
        # Wednesday 4 February 2026, Berlin is UTC+1.
        self.assertEqual(self.menu(at(2026, 2, 4, 6, 59)), "after_hours")  # 07:59
        self.assertEqual(self.menu(at(2026, 2, 4, 7, 0)), "main")  # 08:00
        self.assertEqual(self.menu(at(2026, 2, 4, 16, 29)), "main")  # 17:29
        self.assertEqual(self.menu(at(2026, 2, 4, 16, 30)), "after_hours")  # 17:30, end excluded
        self.assertEqual(self.menu(at(2026, 2, 7, 10, 0)), "main")  # Saturday 11:00
        self.assertEqual(self.menu(at(2026, 2, 7, 11, 0)), "after_hours")  # Saturday 12:00
        self.assertEqual(self.menu(at(2026, 2, 8, 10, 0)), "after_hours")  # Sunday

    def test_local_date_decides_the_day(self) -> None:
        """Monday 00:30 in Berlin is still Sunday in UTC: the local weekday counts."""
        self.assertEqual(self.office.state_at(at(2026, 2, 8, 23, 30), "Europe/Berlin"), "closed")
        self.assertEqual(self.office.state_at(at(2026, 2, 9, 7, 30), "Europe/Berlin"), "open")
        self.assertEqual(self.office.state_at(at(2026, 2, 9, 7, 30), "UTC"), "closed")  # 07:30 UTC

    def test_holidays(self) -> None:
        """A dated holiday and a yearly MM-DD holiday close a weekday; without a holiday menu the closed one plays."""
        self.assertEqual(self.office.state_at(at(2026, 12, 25, 10), "Europe/Berlin"), "holiday")
        self.assertEqual(self.menu(at(2026, 12, 25, 10)), "after_hours")
        self.assertEqual(self.menu(at(2027, 12, 24, 10)), "main")  # a Friday, not listed for 2027
        self.assertEqual(self.office.state_at(at(2027, 1, 1, 10), "Europe/Berlin"), "holiday")  # 01-01 every year
        self.assertEqual(self.menu(at(2027, 1, 4, 10)), "main")

    def test_holiday_menu_and_own_timezone(self) -> None:
        """A schedule with its own zone and a holiday menu uses both (New York, 4 July)."""
        # 4 July 2026 is a Saturday; shop hours are Sunday, Tuesday, Wednesday.
        self.assertEqual(self.shop.menu_at(at(2026, 7, 4, 16), "Europe/Berlin"), "main")
        # Tuesday 7 July 03:30 UTC is Monday 23:30 in New York: closed.
        self.assertEqual(self.shop.menu_at(at(2026, 7, 7, 3, 30), "Europe/Berlin"), "after_hours")
        # Tuesday 7 July 14:00 UTC is 10:00 in New York: open until midnight.
        self.assertEqual(self.shop.menu_at(at(2026, 7, 7, 14), "Europe/Berlin"), "sales")
        self.assertEqual(self.shop.menu_at(at(2026, 7, 8, 3, 59), "Europe/Berlin"), "sales")  # Tue 23:59

    def test_daylight_saving_time(self) -> None:
        """Opening hours follow local time across the spring and autumn clock changes."""
        # Friday 27 March 2026 (CET, UTC+1): 07:30 UTC is 08:30 local, open; 06:30 UTC is 07:30, closed.
        self.assertEqual(self.menu(at(2026, 3, 27, 7, 30)), "main")
        self.assertEqual(self.menu(at(2026, 3, 27, 6, 30)), "after_hours")
        # Monday 30 March 2026 (CEST, UTC+2): 06:30 UTC is 08:30 local, open; 15:45 UTC is 17:45, closed.
        self.assertEqual(self.menu(at(2026, 3, 30, 6, 30)), "main")
        self.assertEqual(self.menu(at(2026, 3, 30, 15, 45)), "after_hours")
        self.assertEqual(self.menu(at(2026, 3, 27, 15, 45)), "main")  # 16:45 CET, before the change
        # Monday 26 October 2026 (CET again): 06:30 UTC is 07:30 local, closed.
        self.assertEqual(self.menu(at(2026, 10, 26, 6, 30)), "after_hours")
        self.assertEqual(self.menu(at(2026, 10, 23, 6, 30)), "main")  # Friday before, CEST


class ReferenceTests(SynchronousTestCase):
    """Checks between menus, schedules and routes."""

    def test_menu_users(self) -> None:
        """A menu's users are other menus' actions and schedules naming it."""
        menu_set = parse_options(feature())
        self.assertEqual(menu_users(menu_set, "sales"),
                         ["menus.main.options.2.menu", "menus.main.on_fail.menu", "schedules.shop.open"])
        self.assertEqual(menu_users(menu_set, "main"),
                         ["menus.sales.options.9.menu", "schedules.office.open", "schedules.shop.holiday"])

    def test_reference_problems_lists_all(self) -> None:
        """reference_problems reports every dangling name, not just the first."""
        menu_set = parse_options(feature())
        broken = MenuSet(menus={"main": menu_set.menus["main"]}, schedules=menu_set.schedules)
        keys = [p.key for p in reference_problems(broken)]
        self.assertEqual(keys, [
            "menus.main.options.2.menu", "menus.main.options.0.operator", "menus.main.on_fail.menu",
            "schedules.office.closed", "schedules.shop.open", "schedules.shop.closed",
        ])

    def test_route_targets(self) -> None:
        """Route args name a menu or a schedule; none means the menu main; both or others are refused."""
        self.assertEqual(route_target(None, "a"), ("menu", "main"))
        self.assertEqual(route_target({"menu": "sales"}, "a"), ("menu", "sales"))
        self.assertEqual(route_target({"schedule": "office"}, "a"), ("schedule", "office"))
        for args, key in (({"menu": "a", "schedule": "b"}, "a"), ({"menus": "a"}, "a.menus"), ({"menu": 5}, "a.menu")):
            with self.assertRaises(ConfigError) as caught:
                route_target(args, "a")
            self.assertEqual(caught.exception.key, key)
        menu_set = parse_options(feature())
        self.assertIsNone(target_problem(menu_set, ("schedule", "office"), "r"))
        problem = target_problem(menu_set, ("menu", "nope"), "r")
        self.assertEqual(str(problem), "r.menu: no attendant menu 'nope'")
