"""
Tests for the ``groups:``, ``follow_me:`` and ``dnd_schedule:`` sections of
the configuration file: what they parse to, and the one-line error naming the
key for each mistake.
"""

from __future__ import annotations

import textwrap

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.dialplan import ToApplication, ToGroup
from pbx.calls.groups import GroupDirectory
from pbx.config import Config, parse_config
from pbx.errors import ConfigError

ENV = {"HOME": "/home/pbx"}

GOOD = """
groups:
  sales:
    number: "600"
    members: ["1001", "1002", "1003"]
    strategy: hunt
    member_timeout: 10
    timeout: 45
    final: {app: voicemail, args: {mailbox: "1001"}}
  support:
    number: 601
    members: ["1004"]
    final: {extension: "1000"}
follow_me:
  "1001": {after: 12, numbers: ["1002", "+4930123456"], mode: only, confirm: false}
dnd_schedule:
  "1002":
    timezone: Europe/Berlin
    hours: [{days: mon-fri, from: "08:00", to: "17:00"}]
    holidays: ["12-25"]
dialplan:
  - {match: "*600", group: sales}
"""


def parse(text: str) -> Config:
    """Parse a configuration file's text."""
    return parse_config(textwrap.dedent(text), "pbx.yml", ENV)


def problem(text: str) -> tuple[str, str]:
    """Parse ``text`` expecting a ConfigError; return its (key, problem)."""
    try:
        parse(text)
    except ConfigError as e:
        return e.key, e.problem
    raise AssertionError("no ConfigError")


class ParseTests(SynchronousTestCase):
    """A good configuration parses to frozen values."""

    def test_groups(self) -> None:
        """Both groups parse with their settings and defaults; the dialplan route names the group."""
        config = parse(GOOD)
        sales, support = config.groups["sales"], config.groups["support"]
        self.assertEqual(
            (
                sales.number,
                sales.members,
                sales.strategy,
                sales.member_timeout,
                sales.timeout,
            ),
            ("600", ("1001", "1002", "1003"), "hunt", 10, 45),
        )
        self.assertEqual(
            sales.final_application, ToApplication("voicemail", {"mailbox": "1001"})
        )
        self.assertEqual(
            (
                support.number,
                support.strategy,
                support.timeout,
                support.final_extension,
            ),
            ("601", "ringall", 60, "1000"),
        )
        self.assertEqual(
            config.dialplan.resolve("*600", authenticated=True), ToGroup("sales")
        )

    def test_follow_me(self) -> None:
        """Follow-me numbers may be outside numbers; the mode and times are kept."""
        plan = parse(GOOD).follow_me["1001"]
        self.assertEqual(
            (plan.after, plan.numbers, plan.mode, plan.confirm, plan.timeout),
            (12, ("1002", "+4930123456"), "only", False, 0),
        )

    def test_dnd_schedule(self) -> None:
        """A DND schedule is open in working hours, closed outside them and on holidays."""
        schedule = parse(GOOD).dnd_schedule["1002"]
        # 2026-12-07 is a Monday; 10:00 and 20:00 in Berlin (UTC+1).
        monday_10, monday_20 = 1796634000.0, 1796670000.0
        self.assertEqual(schedule.state_at(monday_10), "open")
        self.assertEqual(schedule.state_at(monday_20), "closed")
        self.assertEqual(schedule.state_at(1798189200.0), "holiday")  # 2026-12-25 10:00

    def test_directory(self) -> None:
        """The directory finds a group by number and leaves out members who logged out."""
        directory = GroupDirectory(parse(GOOD).groups)
        sales = directory.by_number("600")
        assert sales is not None
        directory.set_logged_in("sales", "1002", False)
        self.assertEqual(directory.logged_in(sales), ["1001", "1003"])
        directory.restore(
            [
                ("sales", "1002", {"logged_in": True}),
                ("sales", "1009", {"logged_in": False}),
                ("nosuch", "1001", {"logged_in": False}),
            ]
        )
        self.assertEqual(directory.logged_in(sales), ["1001", "1002", "1003"])
        self.assertIsNone(directory.by_number("1001"))


class ErrorTests(SynchronousTestCase):
    """Each mistake is one error naming its key."""

    def test_group_errors(self) -> None:
        """Bad group settings name the key."""
        cases = {
            "groups: [1]": ("groups", "must be a mapping of group name to settings"),
            "groups: {sales: {members: ['1001']}}": ("groups.sales.number", "required"),
            "groups: {sales: {number: '6', members: ['1001']}}": (
                "groups.sales.number",
                "must be a number of 2-10 digits (quote it)",
            ),
            "groups: {sales: {number: '600', members: []}}": (
                "groups.sales.members",
                "must be a list of extension numbers",
            ),
            "groups: {sales: {number: '600', members: ['1001', '1001']}}": (
                "groups.sales.members",
                "names a member twice",
            ),
            "groups: {sales: {number: '600', members: ['1001'], strategy: random}}": (
                "groups.sales.strategy",
                "must be one of ringall, hunt",
            ),
            "groups: {sales: {number: '600', members: ['1001'], timeout: 0}}": (
                "groups.sales.timeout",
                "must be a whole number of seconds from 1 to 3600",
            ),
            "groups: {sales: {number: '600', members: ['1001'], final: {queue: x}}}": (
                "groups.sales.final",
                "must be {extension: N} or {app: NAME, args: {...}}",
            ),
            "groups: {sales: {number: '600', members: ['1001'], colour: red}}": (
                "groups.sales.colour",
                "unknown key (known: final, member_timeout, members, number, strategy, timeout)",
            ),
            "groups: {a: {number: '600', members: ['1001']}, b: {number: '600', members: ['1002']}}": (
                "groups.b.number",
                "600 is already the number of group a",
            ),
            "dialplan: [{match: '*6', group: nosuch}]": (
                "dialplan[0].group",
                "no group 'nosuch' in groups:",
            ),
        }
        for text, expected in cases.items():
            self.assertEqual(problem(text), expected, text)

    def test_follow_me_errors(self) -> None:
        """Bad follow-me settings name the key."""
        cases = {
            "follow_me: {'1001': {numbers: []}}": (
                "follow_me.1001.numbers",
                "must be a list of numbers",
            ),
            "follow_me: {'1001': {numbers: ['12ab']}}": (
                "follow_me.1001.numbers[0]",
                "must be a number to dial (digits, optionally after + or *)",
            ),
            "follow_me: {'1001': {numbers: ['1001']}}": (
                "follow_me.1001.numbers",
                "names the extension itself",
            ),
            "follow_me: {'1001': {numbers: ['1002'], mode: both}}": (
                "follow_me.1001.mode",
                "must be one of also, only",
            ),
            "follow_me: {'1001': {numbers: ['1002'], after: -1}}": (
                "follow_me.1001.after",
                "must be a whole number of seconds from 0 to 600",
            ),
            "follow_me: {'1001': {numbers: ['1002'], confirm: 'yes'}}": (
                "follow_me.1001.confirm",
                "must be true or false",
            ),
            "follow_me: {'x': {numbers: ['1002']}}": (
                "follow_me.x",
                "an extension number is 2-10 digits",
            ),
        }
        for text, expected in cases.items():
            self.assertEqual(problem(text), expected, text)

    def test_dnd_schedule_errors(self) -> None:
        """Bad schedules name the key, as the attendant's do; menu keys are not accepted."""
        cases = {
            "dnd_schedule: {'1001': {hours: [{days: someday, from: '08:00', to: '17:00'}]}}": (
                "dnd_schedule.1001.hours[0].days",
                "'someday' is not days such as mon-fri or sat,sun",
            ),
            "dnd_schedule: {'1001': {open: main}}": (
                "dnd_schedule.1001.open",
                "unknown key (known: holidays, hours, timezone)",
            ),
            "dnd_schedule: {'1001': {timezone: Mars/Base}}": (
                "dnd_schedule.1001.timezone",
                "unknown time zone 'Mars/Base' (an IANA name such as Europe/Berlin)",
            ),
            "dnd_schedule: [1]": (
                "dnd_schedule",
                "must be a mapping of extension number to a schedule",
            ),
        }
        for text, expected in cases.items():
            self.assertEqual(problem(text), expected, text)
