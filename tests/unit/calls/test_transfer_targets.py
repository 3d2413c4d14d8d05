"""
Tests for :mod:`pbx.calls.transfer_app` and :mod:`pbx.calls.transfer_group`:
blind transfer to a dialplan application and to a ring group, through the
real controller, in memory.

1001 calls 1002 (1001 offers PCMU, PCMA; 1002 answers PCMA) and 1002 (or
1001) transfers the other party.  The PBX is the one of
:class:`support.app_calls.AppCallTestCase` (media services, the echo
feature's applications, ``beep-return``); 1003 and 1004 are group members.
RTP between pbx's application endpoint and the relay is carried by hand
(:meth:`TransferTargetTests.pump`), as the fake reactor delivers nothing.
"""

from __future__ import annotations

from typing import Any

import attrs

from zope.interface import implementer

from pbx.calls.call import Call
from pbx.calls.dialplan import Dialplan, Route, ToApplication, ToGroup, compile_pattern
from pbx.calls.events import CallEvent
from pbx.calls.groups import GroupDirectory, RingGroup
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import Channel
from pbx.media.rtp import parse_rtp
from pbx.sip.message import Request, Response

from support.app_calls import AppCallTestCase, frames
from support.phones import CALLEE_SDP, CALLER_SDP, REALM, Leg, Phone, audio, describe

MEMBER_SDP = CALLEE_SDP.replace(b"192.0.2.12", b"192.0.2.13")


@implementer(IDialplanApplication)
class Listener:
    """Notes who it answers and its args, takes one key, then waits for the hang-up."""

    name = "listener"
    disposition = "VOICEMAIL"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        self.digits: list[str] = []

    async def run(self, channel: Channel, args: Any) -> None:
        """Answer, note, collect one key, wait."""
        await channel.answer()
        self.seen.append((channel.caller, channel.callee, dict(args)))
        self.digits.append(await channel.collect_digits(1, timeout=60))
        await channel.wait_for_hangup()


def sipfrag(notify: Request) -> str:
    """The status line a NOTIFY's message/sipfrag body carries."""
    return notify.body.decode().strip()


class TransferTargetTests(AppCallTestCase):
    """Calls between 1001 and 1002 whose blind transfer goes to an application or a group."""

    def setUp(self) -> None:
        """Route *45 (beep-return), *49 (listener), *2XXXX (listener for mailbox $1) and 600 (group sales)."""
        super().setUp()
        self.listener = Listener()
        self.controller.applications["listener"] = self.listener
        routes = (*self.controller.config.dialplan.routes,
                  Route("*49", compile_pattern("*49"), ToApplication("listener", {})),
                  Route(r"re:^\*2(\d{4})$", compile_pattern(r"re:^\*2(\d{4})$"),
                        ToApplication("listener", {"mailbox": "$1", "reason": "busy"})),
                  Route("6000", compile_pattern("6000"), ToGroup("sales")))
        self.controller.config = attrs.evolve(self.controller.config, dialplan=Dialplan(routes))
        self.members = [self.phone("1003", "192.0.2.13"), self.phone("1004", "192.0.2.14")]
        self.events: list[CallEvent] = []
        self.controller.events.subscribe(self.events.append)

    def group(self, **settings: Any) -> None:
        """Configure group ``sales`` (number 600, members 1003 and 1004) with ``settings``."""
        group = RingGroup("sales", "600", ("1003", "1004"), **settings)
        directory = GroupDirectory({"sales": group})
        self.controller.groups = self.controller.transfers.groups.directory = directory  # type: ignore[union-attr]

    def call(self) -> Call:
        """The one call in progress."""
        [call] = self.controller.calls.values()
        assert isinstance(call, Call)
        return call

    def transfer(self, phone: Phone, leg: Leg, number: str) -> list[Request | Response]:
        """``phone`` REFERs in ``leg`` to ``number``: 202 and NOTIFY 100 (answered); returns what followed."""
        phone.in_dialog(leg, "REFER", extra=[("Refer-To", f"<sip:{number}@{REALM}>")])
        messages = phone.received()
        self.assertEqual([describe(m) for m in messages[:2]], [202, "NOTIFY"])
        for notify in messages[1:]:
            assert isinstance(notify, Request)
            phone.respond(notify, 200)
        return messages[2:]

    def released(self, phone: Phone, messages: list[Request | Response] | None = None) -> None:
        """``phone`` got the final NOTIFY 200 (answered) and then BYE (answered)."""
        if messages is None:
            messages = phone.received()
        [notify] = [m for m in messages if isinstance(m, Request) and m.method == "NOTIFY"]
        self.assertEqual(sipfrag(notify), "SIP/2.0 200 OK")
        phone.respond(notify, 200)
        bye = phone.expect_one("BYE")
        phone.respond(bye, 200)

    def pump(self) -> list[int]:
        """Carry what pbx's application endpoint sent into the relay; the payload types the transferee got."""
        session = self.session()
        host, port = session.leg("b").rtp.remote
        endpoint = self.clock.udpPorts[port]
        written, endpoint.written = endpoint.written, []
        for data, addr in written:
            self.assertEqual(addr, ("127.0.0.1", session.local_port("b")))
            session.leg("b").rtp.datagramReceived(data, ("127.0.0.1", port))
        relayed, session.leg("a").rtp.transport.written = session.leg("a").rtp.transport.written, []
        return [parse_rtp(data).payload_type for data, addr in relayed if addr == ("192.0.2.11", 4000)]

    def app_records(self) -> list[Any]:
        """The records of application legs."""
        return [r for r in self.store.calls if r.application]


class ApplicationTargetTests(TransferTargetTests):
    """REFER to a number the dialplan gives to an application."""

    def test_callee_transfers_caller_to_application(self) -> None:
        """1002 transfers 1001 to *45: NOTIFY 200 and BYE to 1002; 1001 hears the beep on its own relay port; then BYE."""
        invite, leg, callee_leg = self.establish()
        port_a = self.session().local_port("a")
        self.released(self.callee, self.transfer(self.callee, callee_leg, "*45"))
        self.quiet(self.caller)  # no re-INVITE: the transferee's SDP stands
        call = self.call()
        self.assertEqual((call.caller, call.callee, call.state), ("1001", "*45", "confirmed"))
        self.assertEqual(self.session().local_port("a"), port_a)
        self.assertEqual(self.session().leg("b").rtp.remote[0], "127.0.0.1")
        heard = []
        for _ in range(frames("general/beep") - 1):
            self.clock.advance(0.02)
            heard += self.pump()
        # PCMA, the codec in use, at the transferee's payload type, a packet a frame (the first tick 20 ms on).
        self.assertGreaterEqual(len(heard), frames("general/beep") - 2)
        self.assertEqual(set(heard), {8})
        self.advance(0.1)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        [record] = self.app_records()
        self.assertEqual(
            (record.caller, record.callee, record.application, record.hangup_side, record.hangup_cause),
            ("1001", "*45", "beep-return", "pbx", "application finished"),
        )
        [moved] = [e for e in self.events if e.kind == "transferred"]
        self.assertEqual((moved.detail["how"], moved.detail["transferor"], moved.detail["target"]),
                         ("application", "1002", "*45"))
        self.assertIn(("b", "transferred to *45"), [(r.leg, r.hangup_cause) for r in self.store.calls])

    def test_caller_transfers_callee(self) -> None:
        """1001 transfers 1002 to *49: the application sees 1002 as its caller; 1002 hangs up and the leg is recorded."""
        invite, leg, callee_leg = self.establish()
        self.released(self.caller, self.transfer(self.caller, leg, "*49"))
        self.assertEqual(self.listener.seen, [("1002", "*49", {})])
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.assertEqual(self.controller.calls, {})
        [record] = self.app_records()
        self.assertEqual(
            (record.caller, record.disposition, record.hangup_side, record.hangup_cause),
            ("1002", "VOICEMAIL", "a", "BYE"),
        )

    def test_mailbox_from_pattern(self) -> None:
        """A transfer to *21003 reaches the application with the mailbox the pattern names (1003)."""
        invite, leg, callee_leg = self.establish()
        self.released(self.callee, self.transfer(self.callee, callee_leg, "*21003"))
        self.assertEqual(self.listener.seen, [("1001", "*21003", {"mailbox": "1003", "reason": "busy"})])
        self.bye(leg)

    def test_keys_by_info(self) -> None:
        """A key the transferee sends as SIP INFO reaches the application's channel (200)."""
        invite, leg, callee_leg = self.establish()
        self.released(self.callee, self.transfer(self.callee, callee_leg, "*49"))
        self.caller.in_dialog(leg, "INFO", body=b"Signal=5\r\nDuration=160\r\n",
                              extra=[("Content-Type", "application/dtmf-relay")])
        self.caller.expect(200)
        self.media(0.5)  # an INFO key waits 0.25 s for the same key as an RFC 4733 event (pbx.media.dtmf)
        self.assertEqual(self.listener.digits, ["5"])
        self.bye(leg)

    def test_reinvite_answered_here(self) -> None:
        """A transferee's re-INVITE keeping the codec is answered by pbx at the transferee's relay port; REFER gets 403."""
        invite, leg, callee_leg = self.establish()
        port_a = self.session().local_port("a")
        self.released(self.callee, self.transfer(self.callee, callee_leg, "*49"))
        self.caller.in_dialog(leg, "INVITE", body=CALLER_SDP.replace(b"100 1", b"100 2"),
                              extra=[("Content-Type", "application/sdp")])
        trying, ok = self.caller.expect(100, 200)
        host, port, formats, direction = audio(ok.body)
        self.assertEqual((port, formats[0], direction), (port_a, "8", "sendrecv"))
        self.caller.ack_reinvite(leg)
        self.caller.in_dialog(leg, "REFER", extra=[("Refer-To", f"<sip:1003@{REALM}>")])
        self.caller.expect(403)
        self.bye(leg)

    def test_not_running(self) -> None:
        """A route to an application that is not running: NOTIFY 404, the transferor keeps the call."""
        self.controller.applications.pop("listener")
        invite, leg, callee_leg = self.establish()
        [notify] = self.transfer(self.callee, callee_leg, "*49")
        self.assertEqual(sipfrag(notify), "SIP/2.0 404 Not Found")
        self.assertEqual(self.call().callee, "1002")
        self.hang_up(leg)


class GroupTargetTests(TransferTargetTests):
    """REFER to a ring group's number (or a route to the group)."""

    def ringing(self, *phones: Phone) -> list[Request]:
        """Each of ``phones`` gets one INVITE and answers 180."""
        invites = []
        for phone in phones:
            invite = phone.expect_one("INVITE")
            phone.respond(invite, 180)
            invites.append(invite)
        return invites

    def test_ringall_member_answers(self) -> None:
        """A transfer to 600 rings 1003 and 1004 from 1001; the first ring releases 1002; 1004 answers and is seated."""
        self.group()
        invite, leg, callee_leg = self.establish()
        self.transfer(self.callee, callee_leg, "600")
        first, second = self.ringing(*self.members)
        self.assertEqual(str(first.from_.uri), f"sip:1001@{REALM}")
        self.released(self.callee)
        self.members[1].respond(second, 200, body=MEMBER_SDP.replace(b"192.0.2.13", b"192.0.2.14"))
        self.members[1].expect("ACK")
        cancel = self.members[0].expect_one("CANCEL")
        self.members[0].respond(cancel, 200)
        self.members[0].respond(first, 487)
        self.members[0].expect("ACK")
        self.assertEqual(self.session().leg("b").rtp.remote, ("192.0.2.14", 5000))
        self.assertEqual(self.call().callee, "1004")
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.members[1].expect_one("BYE")
        self.members[1].respond(bye, 200)

    def test_hunt_by_route(self) -> None:
        """A route to the hunt group: 1003 rings member_timeout seconds, then 1004, who answers."""
        self.group(strategy="hunt", member_timeout=5, timeout=30)
        invite, leg, callee_leg = self.establish()
        self.transfer(self.callee, callee_leg, "6000")
        [first] = self.ringing(self.members[0])
        self.released(self.callee)
        self.quiet(self.members[1])
        self.advance(5)
        cancel = self.members[0].expect_one("CANCEL")
        self.members[0].respond(cancel, 200)
        self.members[0].respond(first, 487)
        self.members[0].expect("ACK")
        self.advance(0.1)
        second = self.members[1].expect_one("INVITE")
        self.members[1].respond(second, 200, body=MEMBER_SDP)
        self.members[1].expect("ACK")
        self.assertEqual(self.call().callee, "1004")
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.members[1].expect_one("BYE")
        self.members[1].respond(bye, 200)

    def test_unanswered_final_application(self) -> None:
        """Nobody in the group answers within its timeout: the group's final application takes the transferee."""
        self.group(timeout=10, final_application=ToApplication("listener", {"mailbox": "600"}))
        invite, leg, callee_leg = self.establish()
        self.transfer(self.callee, callee_leg, "600")
        invites = self.ringing(*self.members)
        self.released(self.callee)
        self.advance(10)
        for phone, forked in zip(self.members, invites, strict=True):
            cancel = phone.expect_one("CANCEL")
            phone.respond(cancel, 200)
            phone.respond(forked, 487)
            phone.expect("ACK")
        self.advance(0.1)
        self.assertEqual(self.listener.seen, [("1001", "600", {"mailbox": "600"})])
        self.bye(leg)
        [record] = self.app_records()
        self.assertEqual((record.caller, record.application), ("1001", "listener"))

    def test_nobody_to_ring_final_extension(self) -> None:
        """Every member logged out: the group's final extension (1003) rings for the transferee and takes the seat."""
        self.group(final_extension="1003")
        self.controller.groups.set_logged_in("sales", "1003", False)  # type: ignore[union-attr]
        self.controller.groups.set_logged_in("sales", "1004", False)  # type: ignore[union-attr]
        invite, leg, callee_leg = self.establish()
        self.transfer(self.callee, callee_leg, "600")
        [forked] = self.ringing(self.members[0])
        self.assertEqual(str(forked.to.uri), f"sip:600@{REALM}")
        self.released(self.callee)
        self.members[0].respond(forked, 200, body=MEMBER_SDP)
        self.members[0].expect("ACK")
        self.assertEqual(self.call().callee, "1003")
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.members[0].expect_one("BYE")
        self.members[0].respond(bye, 200)

    def test_nobody_to_ring(self) -> None:
        """A group with nobody to ring and no final destination: NOTIFY 480, the transferor keeps the call."""
        self.group()
        for member in ("1003", "1004"):
            self.controller.groups.set_logged_in("sales", member, False)  # type: ignore[union-attr]
        invite, leg, callee_leg = self.establish()
        [notify] = self.transfer(self.callee, callee_leg, "600")
        self.assertEqual(sipfrag(notify), "SIP/2.0 480 Temporarily Unavailable")
        self.assertEqual(self.call().callee, "1002")
        self.hang_up(leg)
