"""
Tests for ring groups, follow-me and do-not-disturb by schedule in the call
controller, in memory: scripted phones of 1001 (the caller), 1002, 1003
and 1004, a fake voicemail application and a diverter for 1002-1004
(:class:`support.divert.DivertTestCase`).
"""

from __future__ import annotations

from typing import Any

import attrs

from zope.interface import implementer

from pbx.calls.dialplan import (
    Dialplan,
    Route,
    ToApplication,
    ToExtension,
    ToGroup,
    compile_pattern,
)
from pbx.calls.dnd_schedule import parse_dnd_schedules
from pbx.calls.follow_me import parse_follow_me
from pbx.calls.groups import GroupDirectory, parse_groups
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import HungUp
from pbx.provisioning import extension_record
from pbx.sip.message import Request, Response

from support.divert import DivertTestCase
from support.phones import CALLEE_SDP, REALM, Leg, Phone, audio

#: A schedule closed at every hour of every day: the extension is always in DND.
CLOSED = {
    "hours": [{"days": "mon", "from": "00:00", "to": "00:01"}],
    "holidays": ["01-01"],
}
#: Open all week, all day.
OPEN = {"hours": [{"days": "mon-sun", "from": "00:00", "to": "24:00"}]}


class GroupTestCase(DivertTestCase):
    """The PBX of DivertTestCase with phones for 1003 and 1004 and a way to configure groups."""

    def setUp(self) -> None:
        """Register 1003 and 1004 too."""
        super().setUp()
        self.third = self.phone("1003", "192.0.2.13")
        self.fourth = self.phone("1004", "192.0.2.14")

    def configure(
        self,
        groups: Any = None,
        follow_me: Any = None,
        dnd_schedule: Any = None,
        routes: tuple[Route, ...] = (),
    ) -> None:
        """Give the controller these config sections (parsed as the config file's are)."""
        config = self.controller.config
        parsed = parse_groups(groups)
        self.controller.config = attrs.evolve(
            config,
            groups=parsed,
            follow_me=parse_follow_me(follow_me),
            dnd_schedule=parse_dnd_schedules(dnd_schedule),
            dialplan=Dialplan(config.dialplan.routes + routes),
        )
        self.controller.groups = GroupDirectory(parsed)

    def group(self, **settings: Any) -> None:
        """One group ``sales`` at 600 with members 1002, 1003, 1004 unless ``settings`` say otherwise."""
        self.configure(
            {
                "sales": {
                    "number": "600",
                    "members": ["1002", "1003", "1004"],
                    **settings,
                }
            }
        )

    def finals(self, phone: Phone, status: int) -> Response:
        """What ``phone`` received is provisional responses then one ``status``: that response."""
        messages = phone.received()
        self.assertEqual(
            [m.status for m in messages if isinstance(m, Response) and m.status >= 200],
            [status],
        )
        self.assertTrue(
            all(
                isinstance(m, Response) and m.status in (100, 180, 183)
                for m in messages[:-1]
            )
        )
        final = messages[-1]
        assert isinstance(final, Response)
        return final

    def cancel_answered(self, phone: Phone, forked: Request) -> None:
        """pbx CANCELs ``forked`` at ``phone``, which answers 200 and 487 and gets the ACK."""
        cancel = phone.expect_one("CANCEL")
        phone.respond(cancel, 200)
        phone.respond(forked, 487)
        phone.expect("ACK")

    def connected(
        self, invite: Request, leg: Leg, phone: Phone, forked: Request
    ) -> Leg:
        """``phone`` answers ``forked``; the caller gets the 200 and ACKs it.  Returns the phone's leg."""
        phone.respond(forked, 200, body=CALLEE_SDP)
        phone.expect("ACK")
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        return phone.answer_leg(forked)

    def hang_up_with(self, leg: Leg, phone: Phone) -> None:
        """The caller hangs up; ``phone`` gets the BYE and answers it."""
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = phone.expect_one("BYE")
        phone.respond(bye, 200)


class RingAllTests(GroupTestCase):
    """A ringall group rings every member's phones at once."""

    def test_second_answers_others_cancelled(self) -> None:
        """Three phones ring; 1003 answers; 1002 and 1004 get CANCEL; the b-leg record names 1003."""
        self.group(strategy="ringall")
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        forked = {
            p.user: p.expect_one("INVITE")
            for p in (self.callee, self.third, self.fourth)
        }
        for phone in (self.callee, self.third, self.fourth):
            phone.respond(forked[phone.user], 180)
        self.third.respond(forked["1003"], 200, body=CALLEE_SDP)
        self.third.expect("ACK")
        self.cancel_answered(self.callee, forked["1002"])
        self.cancel_answered(self.fourth, forked["1004"])
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        self.hang_up_with(leg, self.third)
        records = self.records()
        self.assertEqual(
            (records["a"].callee, records["b"].callee, records["b"].disposition),
            ("600", "1003", "ANSWERED"),
        )

    def test_dnd_and_logged_out_members_not_rung(self) -> None:
        """A member in DND and one logged out of the group get nothing; the rest ring."""
        self.group(strategy="ringall")
        self.extension("1002", dnd=True)
        assert self.controller.groups is not None
        self.controller.groups.set_logged_in("sales", "1004", False)
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        forked = self.third.expect_one("INVITE")
        self.quiet(self.callee, self.fourth)
        self.connected(invite, leg, self.third, forked)
        self.hang_up_with(leg, self.third)

    def test_caller_not_rung(self) -> None:
        """A member calling its own group does not ring itself; the others ring."""
        self.group(strategy="ringall", members=["1001", "1003"])
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        forked = self.third.expect_one("INVITE")
        self.connected(invite, leg, self.third, forked)
        self.hang_up_with(leg, self.third)

    def test_members_forwards_do_not_apply(self) -> None:
        """A member forwarding always elsewhere still rings itself inside the group."""
        self.group(strategy="ringall", members=["1002"])
        self.extension("1002", forward_always="1004")
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.quiet(self.fourth)
        self.connected(invite, leg, self.callee, forked)
        self.hang_up_with(leg, self.callee)

    def test_timeout_to_final_extension(self) -> None:
        """Nobody answers within the group's timeout: the phones are cancelled and the final extension rings."""
        self.group(
            strategy="ringall",
            members=["1002", "1003"],
            timeout=20,
            final={"extension": "1004"},
        )
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        first, second = (
            self.callee.expect_one("INVITE"),
            self.third.expect_one("INVITE"),
        )
        self.callee.respond(first, 180)
        self.third.respond(second, 180)
        self.advance(19.75)
        self.quiet(self.callee, self.third, self.fourth)
        self.advance(0.25)
        self.cancel_answered(self.callee, first)
        self.cancel_answered(self.third, second)
        final = self.fourth.expect_one("INVITE")
        self.connected(invite, leg, self.fourth, final)
        self.hang_up_with(leg, self.fourth)
        self.assertEqual(self.records()["b"].callee, "1004")

    def test_timeout_to_final_application(self) -> None:
        """Nobody answers: the caller is answered by the final application, with its args."""
        self.group(
            strategy="ringall",
            members=["1002"],
            timeout=10,
            final={"app": "voicemail", "args": {"mailbox": "1003"}},
        )
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.callee.respond(forked, 180)
        self.advance(10)
        self.cancel_answered(self.callee, forked)
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        self.assertEqual(
            self.voicemail.calls, [("1001", "User 1001", "600", {"mailbox": "1003"})]
        )
        self.bye(leg)
        self.assertEqual(
            [(r.leg, r.callee, r.disposition, r.application) for r in self.store.calls],
            [
                ("a", "600", "NO ANSWER", "voicemail"),
                ("a", "600", "VOICEMAIL", "voicemail"),
            ],
        )

    def test_nobody_available_no_final(self) -> None:
        """No member can ring and there is no final destination: the caller gets 480 at once."""
        self.group(strategy="ringall", members=["1002"])
        self.extension("1002", dnd=True)
        self.refused("600", 480)

    def test_dialplan_group_route(self) -> None:
        """A dialplan route with a group action reaches the group."""
        self.configure(
            {"sales": {"number": "600", "members": ["1003"]}},
            routes=(Route("*60", compile_pattern("*60"), ToGroup("sales")),),
        )
        invite, leg = self.caller.invite("*60")
        self.caller.expect(100)
        forked = self.third.expect_one("INVITE")
        self.connected(invite, leg, self.third, forked)
        self.hang_up_with(leg, self.third)


class HuntTests(GroupTestCase):
    """A hunt group rings its members one after another."""

    def test_next_member_after_member_timeout(self) -> None:
        """1002 rings 15 s and is cancelled; then 1003 rings and answers."""
        self.group(strategy="hunt", member_timeout=15)
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        first = self.callee.expect_one("INVITE")
        self.callee.respond(first, 180)
        self.advance(14.75)
        self.quiet(self.third, self.fourth)
        self.advance(0.25)
        self.cancel_answered(self.callee, first)
        second = self.third.expect_one("INVITE")
        self.quiet(self.fourth)
        self.connected(invite, leg, self.third, second)
        self.hang_up_with(leg, self.third)
        self.assertEqual(self.records()["b"].callee, "1003")

    def test_busy_member_passed_at_once(self) -> None:
        """A member whose phone answers 486 is passed over without waiting."""
        self.group(strategy="hunt")
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        first = self.callee.expect_one("INVITE")
        self.callee.respond(first, 486)
        self.callee.expect("ACK")
        second = self.third.expect_one("INVITE")
        self.connected(invite, leg, self.third, second)
        self.hang_up_with(leg, self.third)

    def test_skips_dnd_scheduled_and_disabled(self) -> None:
        """A member outside its DND schedule's hours and a disabled member are skipped."""
        self.configure(
            {
                "sales": {
                    "number": "600",
                    "members": ["1002", "1003", "1004"],
                    "strategy": "hunt",
                }
            },
            dnd_schedule={"1002": CLOSED},
        )
        self.extension("1003", enabled=False)
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        forked = self.fourth.expect_one("INVITE")
        self.quiet(self.callee, self.third)
        self.connected(invite, leg, self.fourth, forked)
        self.hang_up_with(leg, self.fourth)

    def test_member_on_a_call_skipped(self) -> None:
        """A member already on an answered call is not rung: the next member is."""
        self.group(strategy="hunt", members=["1002", "1003"])
        invite, leg, [forked] = self.ring()
        self.answer(self.callee, forked)
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        second_invite, second_leg = self.fourth.invite("600")
        self.fourth.expect(100)
        ringing = self.third.expect_one("INVITE")
        self.quiet(self.callee)
        self.third.respond(ringing, 486)
        self.third.expect("ACK")
        response = self.finals(self.fourth, 486)
        self.fourth.ack_failure(second_invite, response)
        self.hang_up(leg)

    def test_rounds_until_group_timeout_then_final(self) -> None:
        """With time left after a round, the hunt starts over; at the group's timeout the final app answers."""
        self.group(
            strategy="hunt",
            members=["1002", "1003"],
            member_timeout=10,
            timeout=25,
            final={"app": "voicemail", "args": {"mailbox": "1002"}},
        )
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        order = []
        for phone, seconds in ((self.callee, 10), (self.third, 10), (self.callee, 5)):
            forked = phone.expect_one("INVITE")
            phone.respond(forked, 180)
            order.append(phone.user)
            self.advance(seconds)
            self.cancel_answered(phone, forked)
        self.assertEqual(order, ["1002", "1003", "1002"])
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        self.assertEqual(
            self.voicemail.calls, [("1001", "User 1001", "600", {"mailbox": "1002"})]
        )
        self.bye(leg)

    def test_caller_cancels_while_hunting(self) -> None:
        """The caller's CANCEL stops the member ringing; nobody else rings."""
        self.group(strategy="hunt")
        invite, leg = self.caller.invite("600")
        self.caller.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.abandon(invite, (self.callee, forked))
        self.advance(60)
        self.quiet(self.third, self.fourth)


class FollowMeTests(GroupTestCase):
    """Follow-me rings an extension's other numbers after a while."""

    def test_also_after_n_seconds(self) -> None:
        """1002 rings alone for 10 s, then 1003 rings too and answers; 1002 is cancelled."""
        self.configure(
            follow_me={"1002": {"after": 10, "numbers": ["1003"], "mode": "also"}}
        )
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(9.75)
        self.quiet(self.third)
        self.advance(0.25)
        other = self.third.expect_one("INVITE")
        self.quiet(self.callee)
        self.third.respond(other, 180)
        self.connected(invite, leg, self.third, other)
        self.cancel_answered(self.callee, forked)
        self.hang_up_with(leg, self.third)
        records = self.records()
        self.assertEqual((records["a"].callee, records["b"].callee), ("1002", "1003"))

    def test_only_instead(self) -> None:
        """In mode only, 1002 is cancelled after 10 s and the other number rings alone."""
        self.configure(
            follow_me={"1002": {"after": 10, "numbers": ["1003"], "mode": "only"}}
        )
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(10)
        self.cancel_answered(self.callee, forked)
        other = self.third.expect_one("INVITE")
        self.connected(invite, leg, self.third, other)
        self.hang_up_with(leg, self.third)

    def test_number_through_the_dialplan(self) -> None:
        """A follow-me number is routed as if dialled: 81004 reaches extension 1004 by a route."""
        route = Route(
            "re:^8(\\d{4})$", compile_pattern("re:^8(\\d{4})$"), ToExtension("$1")
        )
        self.configure(
            follow_me={"1002": {"after": 5, "numbers": ["81004"]}}, routes=(route,)
        )
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(5)
        other = self.fourth.expect_one("INVITE")
        self.connected(invite, leg, self.fourth, other)
        self.cancel_answered(self.callee, forked)
        self.hang_up_with(leg, self.fourth)

    def test_nobody_answers_goes_to_voicemail(self) -> None:
        """Unanswered after the follow-me numbers' time, the call goes to the extension's voicemail."""
        self.configure(
            follow_me={"1002": {"after": 10, "numbers": ["1003"], "timeout": 20}}
        )
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(10)
        other = self.third.expect_one("INVITE")
        self.third.respond(other, 180)
        self.advance(20)
        self.cancel_answered(self.callee, forked)
        self.cancel_answered(self.third, other)
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        self.voicemail_got("1002", "no_answer")
        self.bye(leg)

    def test_unregistered_extension_rings_others_at_once(self) -> None:
        """An extension with no phone registered rings its follow-me numbers at once."""
        self.store.extensions["1005"] = extension_record(
            "1005", REALM, name="User 1005", password="Fifth-pass-1005"
        )
        self.configure(follow_me={"1005": {"after": 10, "numbers": ["1003"]}})
        invite, leg = self.caller.invite("1005")
        self.caller.expect(100)
        other = self.third.expect_one("INVITE")
        self.connected(invite, leg, self.third, other)
        self.hang_up_with(leg, self.third)

    def test_caller_gives_up_before_follow_me(self) -> None:
        """A caller who cancels before ``after`` leaves the follow-me numbers silent."""
        self.configure(follow_me={"1002": {"after": 10, "numbers": ["1003"]}})
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.abandon(invite, (self.callee, forked))
        self.advance(30)
        self.quiet(self.third)


class ConfirmTests(GroupTestCase):
    """Follow-me with confirm: the other number must press 1 before it gets the call."""

    def setUp(self) -> None:
        """1002 has follow-me to 1003 after 5 s, with confirm."""
        super().setUp()
        self.configure(
            follow_me={"1002": {"after": 5, "numbers": ["1003"], "confirm": True}}
        )

    def answered_leg(self) -> tuple[Request, Leg, Request, Request, Any]:
        """1001 calls 1002 (ringing); after 5 s pbx calls 1003, which answers.  Returns the pieces and pbx's port."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.advance(5)
        placed = self.third.expect_one("INVITE")
        self.assertEqual(placed.from_.uri.user, "1001")
        self.third.respond(placed, 200, body=CALLEE_SDP)
        self.third.expect("ACK")
        return invite, leg, forked, placed, self.clock.udpPorts[audio(placed.body)[1]]

    def test_press_1_connects(self) -> None:
        """
        1003 hears the prompt and presses 1: the caller is answered and
        bridged to 1003, 1002 stops ringing; hanging up ends 1003's leg.
        """
        invite, leg, forked, placed, port = self.answered_leg()
        self.media(0.5)
        written, port.written = port.written, []
        self.assertGreater(
            len([addr for _, addr in written if addr == ("192.0.2.12", 5000)]),
            10,
            "no prompt played",
        )
        self.quiet(self.caller)
        self.press(port, "1")
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        self.cancel_answered(self.callee, forked)
        self.bye(leg)
        bye = self.third.expect_one("BYE")
        self.third.respond(bye, 200)
        self.media(0.1)
        kinds = [(r.callee, r.disposition, r.application) for r in self.store.calls]
        self.assertIn(("1002", "ANSWERED", "follow-me"), kinds)

    def test_other_key_hangs_up_leg(self) -> None:
        """1003 presses 2: its leg is hung up and 1002 keeps ringing until voicemail takes the call."""
        invite_time = self.clock.seconds()
        invite, leg, forked, placed, port = self.answered_leg()
        self.media(0.5)
        self.press(port, "2")
        bye = self.third.expect_one("BYE")
        self.third.respond(bye, 200)
        self.quiet(self.caller, self.callee)
        while not self.callee.inbox:  # 1002 rings out: 5 + 30 s from the start
            self.advance(0.25)
        self.assertLessEqual(abs(self.clock.seconds() - invite_time - 35), 0.25)
        self.cancel_answered(self.callee, forked)
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        self.voicemail_got("1002", "no_answer")
        self.bye(leg)

    def test_desk_phone_answers_first(self) -> None:
        """1002 answers while 1003 hears the prompt: 1003's leg is hung up."""
        invite, leg, forked, placed, port = self.answered_leg()
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        bye = self.third.expect_one("BYE")
        self.third.respond(bye, 200)
        self.hang_up(leg)


class DNDScheduleTests(GroupTestCase):
    """Outside its working hours an extension is in do-not-disturb."""

    def test_closed_now_diverts_as_dnd(self) -> None:
        """An extension whose schedule is closed now does not ring; its diverter gets reason dnd."""
        self.configure(dnd_schedule={"1002": CLOSED})
        invite, leg = self.caller.invite("1002")
        self.caller.confirm(invite, leg, self.caller.expect(100, 200)[1])
        self.quiet(self.callee)
        self.voicemail_got("1002", "dnd")
        self.bye(leg)

    def test_closed_now_without_diverter_is_486(self) -> None:
        """Without a diverter the caller hears 486 Do Not Disturb."""
        self.controller.diverters.clear()
        self.configure(dnd_schedule={"1002": CLOSED})
        self.assertEqual(self.refused("1002", 486).reason, "Do Not Disturb")

    def test_open_now_rings(self) -> None:
        """Within working hours the extension rings as usual."""
        self.configure(dnd_schedule={"1002": OPEN})
        invite, leg, [forked] = self.ring()
        self.connected(invite, leg, self.callee, forked)
        self.hang_up_with(leg, self.callee)


class ConfirmOnlyTests(GroupTestCase):
    """Follow-me with confirm in mode only."""

    def test_only_mode(self) -> None:
        """1002 rings 2 s and is cancelled; then pbx calls 1003, which presses 1 and gets the caller."""
        self.configure(
            follow_me={
                "1002": {
                    "after": 2,
                    "numbers": ["1003"],
                    "mode": "only",
                    "confirm": True,
                }
            }
        )
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.advance(2)
        self.cancel_answered(self.callee, forked)
        placed = self.third.expect_one("INVITE")
        self.third.respond(placed, 200, body=CALLEE_SDP)
        self.third.expect("ACK")
        port = self.clock.udpPorts[audio(placed.body)[1]]
        self.media(0.5)
        self.press(port, "1")
        self.caller.confirm(invite, leg, self.finals(self.caller, 200))
        self.bye(leg)
        bye = self.third.expect_one("BYE")
        self.third.respond(bye, 200)


@implementer(IDialplanApplication)
class GroupDialler:
    """Dials 600 for its caller (as the attendant dials an extension), notes the outcome, then hangs up."""

    name = "groupdial"

    def __init__(self, controller: Any) -> None:
        self.controller = controller
        self.outcomes: list[str] = []

    async def run(self, channel: Any, args: Any) -> None:
        """Dial, note what came of it, hang up."""
        try:
            outcome = await self.controller.dial(channel, "600")
        except HungUp:
            self.outcomes.append("hung up")
            raise
        self.outcomes.append(outcome)
        await channel.hangup("dial over")


class DialGroupTests(GroupTestCase):
    """An application dialling a group's number rings the group (IPBX.dial)."""

    def setUp(self) -> None:
        """*70 runs the group dialler."""
        super().setUp()
        self.dialler = GroupDialler(self.controller)
        self.controller.applications["groupdial"] = self.dialler
        self.route = Route(
            "*70", compile_pattern("*70"), ToApplication("groupdial", {})
        )

    def test_hunt_from_an_application(self) -> None:
        """The dialled hunt group rings 1002 for 10 s, then 1003, which answers and is bridged to the caller."""
        self.configure(
            {
                "sales": {
                    "number": "600",
                    "members": ["1002", "1003"],
                    "strategy": "hunt",
                    "member_timeout": 10,
                }
            },
            routes=(self.route,),
        )
        invite, leg, ok = self.dial("*70")
        self.caller.confirm(invite, leg, ok)
        first = self.callee.expect_one("INVITE")
        self.callee.respond(first, 180)
        self.advance(10)
        self.cancel_answered(self.callee, first)
        second = self.third.expect_one("INVITE")
        self.third.respond(second, 200, body=CALLEE_SDP)
        self.third.expect("ACK")
        member_leg = self.third.answer_leg(second)
        self.third.in_dialog(member_leg, "BYE")
        self.third.expect(200)
        self.assertEqual(self.dialler.outcomes, ["answered"])
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)

    def test_unanswered_goes_to_final_application(self) -> None:
        """Nobody answers the ringall group: its final application runs on the caller's channel."""
        self.configure(
            {
                "sales": {
                    "number": "600",
                    "members": ["1002"],
                    "timeout": 10,
                    "final": {"app": "voicemail", "args": {"mailbox": "1002"}},
                }
            },
            routes=(self.route,),
        )
        invite, leg, ok = self.dial("*70")
        self.caller.confirm(invite, leg, ok)
        first = self.callee.expect_one("INVITE")
        self.callee.respond(first, 180)
        self.advance(10)
        self.cancel_answered(self.callee, first)
        self.assertEqual(
            self.voicemail.calls, [("1001", "User 1001", "*70", {"mailbox": "1002"})]
        )
        self.bye(leg)
        self.assertEqual(self.dialler.outcomes, ["diverted"])
