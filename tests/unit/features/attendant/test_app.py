"""Tests for the ``attendant`` dialplan application: call flows with a scripted caller and a fake PBX."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

import yaml

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.features.attendant.app import MAX_FAILURES, Attendant
from pbx.features.attendant.options import MenuSet, parse_options
from pbx.features.voicemail.interfaces import IGreetings
from pbx.interfaces import IDialplanApplication
from pbx.records import ExtensionRecord
from pbx.testing import FakePBX

from support.attendant_fakes import HANGUP, WAIT, Names, RecordingApp, ScriptedChannel

FEATURE = """
timezone: Europe/Berlin
operator: "1000"
menus:
  main:
    greeting: aa/welcome
    options:
      1: {extension: "1001"}
      2: {menu: sales}
      3: {voicemail: "1002"}
      4: {queue: support}
      5: {application: echo, args: {loud: true}}
      9: {directory: true}
      0: {operator: true}
      "*": {hangup: true}
    direct_dial: true
  sales:
    greeting: aa/operator
    operator: "1003"
    options: {0: {operator: true}, 9: {menu: main}}
    retries: 2
    timeout: 4
    on_fail: {menu: main}
  closed: {greeting: aa/closed}
  pattern:
    greeting: aa/welcome
    direct_dial: _2XXX
    options: {1: {extension: "1001"}}
schedules:
  office: {hours: [{days: mon-fri, from: "08:00", to: "17:00"}], open: main, closed: closed}
"""

PEOPLE = [
    ExtensionRecord("1000", name="Olga Person"),
    ExtensionRecord("1001", name="Alice Smith"),
    ExtensionRecord("1002", name="Bob Jones"),
    ExtensionRecord("1003", name="Carol Smiley"),
    ExtensionRecord("1004", name="Erin Baker"),
    ExtensionRecord("1099", name="Zed Zulu", enabled=False),
    ExtensionRecord("2001", name="Dave Jonas"),
]

#: Wednesday 4 February 2026, 11:00 in Berlin.
WEDNESDAY_11 = datetime(2026, 2, 4, 10, 0, tzinfo=UTC).timestamp()
DIGITS_1004 = ["general/extension", "digits/1", "digits/0", "digits/0", "digits/4"]


@implementer(IGreetings)
class Refusing:
    """Greetings whose greeting_path raises, breaking the IGreetings contract."""

    def greeting_path(self, mailbox: str, kind: str) -> str | None:
        """Raise."""
        raise ValueError(f"no mailbox {mailbox}")


class AttendantTestCase(SynchronousTestCase):
    """A fake PBX with :data:`PEOPLE`, the menus of :data:`FEATURE`, and a clock on a Wednesday morning."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(WEDNESDAY_11)
        self.pbx = FakePBX(clock=self.clock)
        for record in PEOPLE:
            self.pbx.store.extensions[record.number] = record
        self.menu_set = parse_options(yaml.safe_load(FEATURE))
        self.reads = 0
        self.app = Attendant(self.pbx, self.menus)

    def menus(self) -> Any:
        """The menu set, counting reads."""
        self.reads += 1
        return succeed(self.menu_set)

    def add_app(self, name: str, **kwargs: Any) -> RecordingApp:
        """Register a recording application."""
        app = RecordingApp(name, **kwargs)
        self.pbx.register_application(app)
        return app

    def call(self, *script: Any, menu: str = "main", args: dict[str, Any] | None = None) -> ScriptedChannel:
        """Run one call to the end on the clock; no timer may be left behind."""
        channel = ScriptedChannel(self.clock, deque(script))
        d = self.app.run(channel, {"menu": menu} if args is None else args)
        for _ in range(10_000):
            if d.called:
                break
            self.clock.advance(0.5)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(channel.unknown, [], "prompt ids missing from the catalogue")
        self.assertTrue(channel.answered)
        return channel


class MenuTests(AttendantTestCase):
    """Options, retries and menus."""

    def test_provides_interface(self) -> None:
        """The application provides IDialplanApplication under the name attendant."""
        self.assertTrue(verifyObject(IDialplanApplication, self.app))
        self.assertEqual(self.app.name, "attendant")

    def test_option_transfers_to_extension(self) -> None:
        """Key 1 (then a pause, as extensions start with 1) transfers to 1001 after aa/transfer; the call then ends."""
        channel = self.call("1", WAIT)
        self.assertEqual(self.pbx.dialled, ["1001"])
        self.assertEqual(channel.played, [["aa/welcome"], ["aa/transfer"]])
        self.assertEqual(channel.hangups, ["normal"])
        self.assertEqual(channel.collects, [(1, 3.0, "#")])

    def test_option_without_overlap_is_immediate(self) -> None:
        """A key no extension starts with acts at once, without waiting for more digits."""
        channel = self.call("0")
        self.assertEqual(self.pbx.dialled, ["1000"])
        self.assertEqual(channel.collects, [])

    def test_invalid_retries_then_on_fail(self) -> None:
        """Three invalid keys each say aa/invalid and repeat the greeting; then on_fail says goodbye and hangs up."""
        channel = self.call("6", "6", "6", "6")
        self.assertEqual(channel.heard(), ["aa/welcome", "aa/invalid"] * 3 + ["general/goodbye"])
        self.assertEqual(channel.hangups, ["normal"])
        self.assertEqual(self.pbx.dialled, [])

    def test_timeouts_then_on_fail_menu(self) -> None:
        """A silent caller hears aa/timeout after each wait; sales gives up after two and goes to main, main after three."""
        start = self.clock.seconds()
        channel = self.call(menu="sales")
        self.assertEqual(
            channel.heard(),
            ["aa/operator", "aa/timeout"] * 2 + ["aa/welcome", "aa/timeout"] * 3 + ["general/goodbye"],
        )
        self.assertEqual(self.clock.seconds() - start, 4 * 2 + 5 * 3)

    def test_submenu_and_back(self) -> None:
        """Key 2 opens sales, 9 there returns to main, star hangs up."""
        channel = self.call("2", WAIT, "9", "*")
        self.assertEqual(channel.heard(), ["aa/welcome", "aa/operator", "aa/welcome", "general/goodbye"])

    def test_menu_operator(self) -> None:
        """{operator: true} reaches the feature's operator, or the menu's own."""
        self.call("0")
        self.call("0", menu="sales")
        self.assertEqual(self.pbx.dialled, ["1000", "1003"])

    def test_queue_is_not_available(self) -> None:
        """A queue action says general/not-available and the menu plays again."""
        channel = self.call("4", "*")
        self.assertEqual(channel.heard(), ["aa/welcome", "general/not-available", "aa/welcome", "general/goodbye"])

    def test_application(self) -> None:
        """An application action hands the call over with its args; the call then ends."""
        echo = self.add_app("echo")
        channel = self.call("5")
        self.assertEqual(echo.runs, [{"loud": True}])
        self.assertEqual(channel.hangups, ["normal"])

    def test_missing_application(self) -> None:
        """An application nobody registered says general/not-available and the menu plays again."""
        channel = self.call("5", "*")
        self.assertEqual(channel.heard(), ["aa/welcome", "general/not-available", "aa/welcome", "general/goodbye"])

    def test_caller_hangs_up(self) -> None:
        """A hang-up while the greeting plays ends the application quietly."""
        channel = self.call(HANGUP)
        self.assertEqual((channel.played, channel.hangups, self.pbx.dialled), ([], [], []))

    def test_unknown_menu(self) -> None:
        """A route naming no menu says general/not-available and hangs up."""
        channel = self.call(menu="nope")
        self.assertEqual(channel.heard(), ["general/not-available"])
        self.assertEqual(channel.hangups, ["normal"])

    def test_menus_read_at_every_call(self) -> None:
        """The menu set is read at the start of every call, so changes apply to the next call."""
        self.call("*")
        self.menu_set = parse_options({"menus": {"main": {"greeting": "aa/closed", "options": {"*": {"hangup": True}}}}})
        channel = self.call("*")
        self.assertEqual(channel.heard(), ["aa/closed", "general/goodbye"])
        self.assertEqual(self.reads, 2)

    def test_failure_cap(self) -> None:
        """Menus whose on_fail lead to each other stop after MAX_FAILURES with goodbye."""
        self.menu_set = parse_options({"menus": {
            "a": {"greeting": "aa/welcome", "retries": 1, "on_fail": {"menu": "b"}},
            "b": {"greeting": "aa/closed", "retries": 1, "on_fail": {"menu": "a"}},
        }})
        channel = self.call(menu="a")
        self.assertEqual(channel.heard().count("aa/timeout"), MAX_FAILURES)
        self.assertEqual(channel.heard()[-1], "general/goodbye")

    def test_schedule_route(self) -> None:
        """A schedule route plays the open menu inside the hours and the closed one outside."""
        channel = self.call("*", args={"schedule": "office"})
        self.assertEqual(channel.heard()[0], "aa/welcome")
        self.clock.advance(9 * 3600)  # 20:00 in Berlin
        channel = self.call(args={"schedule": "office"})
        self.assertEqual(channel.heard()[:2], ["aa/closed", "aa/timeout"])

    def test_bad_route_args(self) -> None:
        """Route arguments the attendant does not understand say general/not-available."""
        channel = self.call(args={"menu": "main", "schedule": "office"})
        self.assertEqual(channel.heard(), ["general/not-available"])
        self.assertEqual(self.call(args={"schedule": "nope"}).heard(), ["general/not-available"])


class DirectDialTests(AttendantTestCase):
    """Dialling an extension number from a menu."""

    def test_four_digits(self) -> None:
        """1, 0, 0, 2 dials 1002 as soon as the number is complete."""
        channel = self.call("1", "0", "0", "2")
        self.assertEqual(self.pbx.dialled, ["1002"])
        self.assertEqual(channel.played, [["aa/welcome"], ["aa/transfer"]])
        self.assertEqual(len(channel.collects), 3)

    def test_not_an_extension(self) -> None:
        """Digits that begin no extension are invalid at once; a disabled extension cannot be dialled."""
        channel = self.call("1", "0", "9", "*")
        self.assertEqual(channel.heard(), ["aa/welcome", "aa/invalid", "aa/welcome", "general/goodbye"])
        self.assertEqual(self.pbx.dialled, [])

    def test_pound_ends_the_number(self) -> None:
        """# after a complete number that is also the start of none other ends collection like a pause."""
        self.pbx.store.extensions["10011"] = ExtensionRecord("10011", name="Long Number")
        self.call("1", "0", "0", "1", "#")
        self.assertEqual(self.pbx.dialled, ["1001"])

    def test_pattern_restricts(self) -> None:
        """With direct_dial _2XXX, 2001 can be dialled, while 1 is the option at once."""
        self.call("2", "0", "0", "1", menu="pattern")
        self.call("1", menu="pattern")
        self.assertEqual(self.pbx.dialled, ["2001", "1001"])

    def test_off_by_default(self) -> None:
        """A menu without direct_dial takes 1 as an option only: 9 then 0 in sales go to main and the operator."""
        self.call("9", "0", menu="sales")
        self.assertEqual(self.pbx.dialled, ["1000"])


class TransferTests(AttendantTestCase):
    """What happens when a transfer is not answered."""

    def test_busy_goes_to_voicemail(self) -> None:
        """A busy outcome hands the caller to the voicemail application with the reason."""
        voicemail = self.add_app("voicemail")
        self.pbx.outcomes["1001"] = "busy"
        channel = self.call("1", WAIT)
        self.assertEqual(voicemail.runs, [{"mailbox": "1001", "reason": "busy"}])
        self.assertEqual(channel.hangups, ["normal"])

    def test_without_voicemail_back_to_menu(self) -> None:
        """Without voicemail, busy says general/busy and no answer general/not-available, then the menu plays again."""
        self.pbx.outcomes.update({"1001": "busy", "1002": "no_answer", "1003": "not_found"})
        heard = self.call("1", WAIT, "*").heard()
        self.assertEqual(heard, ["aa/welcome", "aa/transfer", "general/busy", "aa/welcome", "general/goodbye"])
        self.assertIn("general/not-available", self.call("1", "0", "0", "2", "*").heard())
        self.assertIn("general/invalid-number", self.call("1", "0", "0", "3", "*").heard())

    def test_diverted_ends(self) -> None:
        """A call dial() already diverted (to voicemail) is over for the attendant."""
        voicemail = self.add_app("voicemail")
        self.pbx.outcomes["1002"] = "diverted"
        self.call("1", "0", "0", "2")
        self.assertEqual(voicemail.runs, [])

    def test_voicemail_action(self) -> None:
        """{voicemail: "1002"} runs the voicemail application for that mailbox."""
        voicemail = self.add_app("voicemail")
        channel = self.call("3")
        self.assertEqual(voicemail.runs, [{"mailbox": "1002", "reason": "unavailable"}])
        self.assertEqual(self.pbx.dialled, [])
        self.assertEqual(channel.hangups, ["normal"])

    def test_voicemail_action_without_voicemail(self) -> None:
        """Without the voicemail feature the voicemail action says general/not-available."""
        channel = self.call("3", "*")
        self.assertEqual(channel.heard(), ["aa/welcome", "general/not-available", "aa/welcome", "general/goodbye"])


class DirectoryFlowTests(AttendantTestCase):
    """Dial by name from a menu."""

    def test_single_match(self) -> None:
        """B-A-K finds Erin Baker: her extension is read out, 1 connects."""
        channel = self.call("9", "2", "2", "5", "1")
        self.assertEqual(channel.played, [
            ["aa/welcome"], ["aa/dial-by-name"], [*DIGITS_1004, "aa/connect-or-retry"], ["aa/transfer"],
        ])
        self.assertEqual(self.pbx.dialled, ["1004"])

    def test_recorded_name(self) -> None:
        """With a recorded name from the IGreetings provided, the name is played instead of the number."""
        self.pbx.provide(IGreetings, Names({"1004": "/spool/1004/greetings/name.wav"}))
        channel = self.call("9", "2", "2", "5", "1")
        self.assertEqual(channel.played[2], ["/spool/1004/greetings/name.wav", "aa/connect-or-retry"])

    def test_no_greetings_says_digits(self) -> None:
        """A voicemail application alone, with no IGreetings provided, leaves the digits."""
        self.add_app("voicemail")
        channel = self.call("9", "2", "2", "5", "1")
        self.assertEqual(channel.played[2], [*DIGITS_1004, "aa/connect-or-retry"])

    def test_recorded_name_error_says_digits(self) -> None:
        """A greeting_path that fails falls back to the digits, and the failure is logged."""
        self.pbx.provide(IGreetings, Refusing())
        channel = self.call("9", "2", "2", "5", "1")
        self.assertEqual(channel.played[2], [*DIGITS_1004, "aa/connect-or-retry"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_several_matches(self) -> None:
        """S-M-I finds Smith and Smiley, each read with its key; 2 picks Carol Smiley."""
        channel = self.call("9", "7", "6", "4", "2")
        self.assertEqual(channel.played[2], [
            "aa/for", "general/extension", "digits/1", "digits/0", "digits/0", "digits/1", "aa/press", "digits/1",
            "aa/for", "general/extension", "digits/1", "digits/0", "digits/0", "digits/3", "aa/press", "digits/2",
            "aa/retry-star",
        ])
        self.assertEqual(self.pbx.dialled, ["1003"])

    def test_pages_of_eight(self) -> None:
        """Twelve matches are read eight at a time; 9 hears the rest, 3 picks the third of those."""
        for i in range(10):
            self.pbx.store.extensions[f"30{i:02d}"] = ExtensionRecord(f"30{i:02d}", name=f"P{i} Smith")
        channel = self.call("9", "7", "6", "4", "9", "3")
        self.assertEqual(channel.played[2].count("aa/for"), 8)
        self.assertEqual(channel.played[2][-2:], ["aa/more-names", "aa/retry-star"])
        self.assertEqual(channel.played[3].count("aa/for"), 4)
        self.assertEqual(self.pbx.dialled, ["3008"])

    def test_no_match_then_star(self) -> None:
        """Letters nobody has say aa/no-match and ask again; star goes back to the menu."""
        channel = self.call("9", "9", "9", "9", "*", "*")
        self.assertEqual(channel.heard(), [
            "aa/welcome", "aa/dial-by-name", "aa/no-match", "aa/dial-by-name", "aa/welcome", "general/goodbye",
        ])

    def test_star_tries_again(self) -> None:
        """Star at the confirmation spells again without counting a failure."""
        channel = self.call("9", "2", "2", "5", "*", "5", "6", "6", "2")
        self.assertEqual(channel.heard().count("aa/dial-by-name"), 2)
        self.assertNotIn("aa/invalid", channel.heard())
        self.assertEqual(self.pbx.dialled, ["2001"])  # J-O-N: Bob Jones (1), Dave Jonas (2)

    def test_gives_up_after_three(self) -> None:
        """Three spellings without an answer end dial-by-name and return to the menu."""
        channel = self.call("9", WAIT, WAIT, WAIT, "*")
        self.assertEqual(channel.heard(), [
            "aa/welcome", *["aa/dial-by-name", "aa/timeout"] * 3, "aa/welcome", "general/goodbye",
        ])

    def test_short_name(self) -> None:
        """Two letters and a pause find a two-letter last name."""
        self.pbx.store.extensions["1010"] = ExtensionRecord("1010", name="Eve Li")
        channel = self.call("9", "5", "4", WAIT, "1")
        self.assertEqual(self.pbx.dialled, ["1010"])
        self.assertIn("aa/connect-or-retry", channel.heard())


class EmptySetTests(SynchronousTestCase):
    """An attendant without menus."""

    def test_no_menus(self) -> None:
        """With no menu main, a route without args says general/not-available."""
        clock = Clock()
        pbx = FakePBX(clock=clock)
        app = Attendant(pbx, lambda: succeed(MenuSet()))
        channel = ScriptedChannel(clock, deque())
        self.successResultOf(app.run(channel, None))
        self.assertEqual(channel.heard(), ["general/not-available"])
