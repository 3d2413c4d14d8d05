"""
Tests for :mod:`pbx.calls.transfer`: blind and attended transfer of
relayed calls by scripted phones, through the real controller, in memory.

1001 calls 1002 (1001 offers PCMU, PCMA; 1002 answers PCMA); 1003 and
1004 are the targets.
"""

from __future__ import annotations

from urllib.parse import quote

import attrs

from pbx.calls.call import Call
from pbx.calls.dialplan import (
    Action,
    Dialplan,
    HangUp,
    Route,
    ToApplication,
    ToExtension,
    compile_pattern,
)
from pbx.calls.events import CallEvent
from pbx.calls.party import Party
from pbx.media.rtp import parse_rtp
from pbx.sip.message import Request, Response

from support.phones import (
    CALLEE_SDP,
    CALLER_SDP,
    REALM,
    CallTestCase,
    Leg,
    Phone,
    audio,
    describe,
    hold_sdp,
)
from support.recording import Talker

TARGET_SDP = (
    b"v=0\r\n"
    b"o=carol 300 1 IN IP4 192.0.2.13\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.13\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 8 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)
TARGET_PCMU_SDP = TARGET_SDP.replace(b"RTP/AVP 8 101", b"RTP/AVP 0 101").replace(
    b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:0 PCMU/8000"
)

#: 1001's SDP answering with the codec in use only (PCMA), as an answer does.
CALLER_PCMA_SDP = CALLER_SDP.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 8 101").replace(
    b"a=rtpmap:0 PCMU/8000\r\n", b""
)


def sipfrag(notify: Request) -> str:
    """The status line a NOTIFY's message/sipfrag body carries."""
    return notify.body.decode().strip()


class TransferTestCase(CallTestCase):
    """Calls with a third phone, 1003, registered; transfer events collected."""

    def setUp(self) -> None:
        """Register 1003 and collect ``transferred`` events."""
        super().setUp()
        self.target = self.phone("1003", "192.0.2.13")
        self.transfers: list[CallEvent] = []
        self.controller.events.subscribe(self.transfers.append, kinds=("transferred",))

    def call(self) -> Call:
        """The one call in progress."""
        [call] = self.controller.calls.values()
        assert isinstance(call, Call)
        return call

    def refer(
        self, phone: Phone, leg: Leg, refer_to: str, *extra: tuple[str, str]
    ) -> Request:
        """``phone`` sends REFER in ``leg``; returns the first NOTIFY (or checks there is none)."""
        phone.in_dialog(leg, "REFER", extra=[("Refer-To", refer_to), *extra])
        return phone.received()  # type: ignore[return-value]

    def accepted(self, phone: Phone, leg: Leg, refer_to: str) -> Request:
        """``phone`` REFERs; pbx answers 202 and NOTIFYs 100 Trying, which the phone answers."""
        messages = self.refer(phone, leg, refer_to)
        self.assertEqual([describe(m) for m in messages], [202, "NOTIFY"])
        accepted, notify = messages
        assert isinstance(accepted, Response) and isinstance(notify, Request)
        self.assertEqual(notify.headers.get("Event"), "refer")
        self.assertEqual(
            notify.headers.get("Content-Type"), "message/sipfrag;version=2.0"
        )
        self.assertEqual(notify.headers.get("Subscription-State"), "active;expires=60")
        self.assertEqual(sipfrag(notify), "SIP/2.0 100 Trying")
        self.assertEqual(notify.call_id, leg.call_id)
        phone.respond(notify, 200)
        return notify

    def released(self, phone: Phone) -> None:
        """``phone`` gets the final NOTIFY (200), answers it, then gets BYE and answers it."""
        notify = phone.expect_one("NOTIFY")
        self.assertEqual(sipfrag(notify), "SIP/2.0 200 OK")
        self.assertEqual(
            notify.headers.get("Subscription-State"), "terminated;reason=noresource"
        )
        phone.respond(notify, 200)
        bye = phone.expect_one("BYE")
        phone.respond(bye, 200)

    def target_answers(
        self, phone: Phone, invite: Request, body: bytes = TARGET_SDP
    ) -> Leg:
        """``phone`` rings and answers pbx's ``invite``; pbx ACKs it."""
        phone.respond(invite, 200, body=body)
        phone.expect("ACK")
        return phone.answer_leg(invite)


class BlindTransferTests(TransferTestCase):
    """REFER without Replaces: the transferee is connected to the number in Refer-To."""

    def test_callee_transfers_caller(self) -> None:
        """1002 transfers 1001 to 1003: 202, NOTIFY 100 and 200, 1002 hung up, 1003 on 1002's relay port."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        port_b = session.local_port("b")
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.assertEqual(str(forked.from_.uri), f"sip:1001@{REALM}")
        self.assertEqual(forked.headers.get("Referred-By"), f"<sip:1002@{REALM}>")
        host, port, formats, direction = audio(forked.body)
        # The codec in use (PCMA) and telephone-event, at the transferor's port.
        self.assertEqual((host, port, direction), ("127.0.0.1", port_b, "sendrecv"))
        self.assertEqual(formats[:2], ["8", "101"])
        self.target.respond(forked, 180)
        self.released(self.callee)
        self.quiet(self.caller)
        self.assertTrue(session.leg("b").rtp.held)
        target_leg = self.target_answers(self.target, forked)
        self.assertEqual(session.leg("b").rtp.remote, ("192.0.2.13", 6000))
        self.assertFalse(session.leg("b").rtp.held)
        self.assertEqual(session.leg("a").rtp.remote, ("192.0.2.11", 4000))
        call = self.call()
        self.assertEqual(
            (call.caller, call.callee, call.state), ("1001", "1003", "confirmed")
        )
        [event] = self.transfers
        self.assertEqual(
            (
                event.leg,
                event.detail["how"],
                event.detail["transferor"],
                event.detail["target"],
            ),
            ("b", "blind", "1002", "1003"),
        )
        self.quiet(self.caller)
        # The caller hangs up: the BYE goes to the target.
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.target.expect_one("BYE")
        self.assertEqual(bye.call_id, target_leg.call_id)
        self.target.respond(bye, 200)
        causes = sorted((r.leg, r.callee, r.hangup_cause) for r in self.store.calls)
        self.assertEqual(
            causes,
            [
                ("a", "1003", "BYE"),
                ("b", "1002", "transferred to 1003"),
                ("b", "1003", "BYE"),
            ],
        )

    def test_ringback_while_target_rings(self) -> None:
        """Once the transferor left, the transferee gets PCMA ringback from its relay port until the target answers."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        port = session.leg("a").rtp.transport
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.assertEqual(port.written, [])
        self.target.respond(forked, 180)
        self.released(self.callee)
        port.written.clear()
        self.advance(1.0, step=0.02)
        packets = [
            parse_rtp(data)
            for data, addr in port.written
            if addr == ("192.0.2.11", 4000)
        ]
        self.assertGreaterEqual(len(packets), 49)
        self.assertEqual({p.payload_type for p in packets}, {8})
        self.assertEqual({len(p.payload) for p in packets}, {160})
        self.assertEqual(
            [
                (b.sequence - a.sequence) & 0xFFFF
                for a, b in zip(packets, packets[1:], strict=False)
            ],
            [1] * (len(packets) - 1),
        )
        self.target_answers(self.target, forked)
        port.written.clear()
        self.advance(1.0, step=0.02)
        self.assertEqual(port.written, [])
        self.hang_up_with_target(leg)

    def test_held_transferee_resumed(self) -> None:
        """A transferee the transferor held first is re-INVITEd sendrecv once the target answers."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        # 1002 holds 1001: 1001 answers recvonly.
        self.callee.in_dialog(
            callee_leg, "INVITE", body=hold_sdp(CALLEE_SDP, "sendonly")
        )
        self.callee.expect(100)
        hold = self.caller.expect_one("INVITE")
        self.caller.respond(hold, 200, body=hold_sdp(CALLER_PCMA_SDP, "recvonly"))
        self.caller.expect("ACK")
        self.callee.expect(200)
        self.callee.ack_reinvite(callee_leg)
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.assertEqual(audio(forked.body)[3], "sendrecv")
        self.target_answers(self.target, forked)
        self.released(self.callee)
        resume = self.caller.expect_one("INVITE")
        host, port, formats, direction = audio(resume.body)
        self.assertEqual(
            (host, port, direction), ("127.0.0.1", session.local_port("a"), "sendrecv")
        )
        self.caller.respond(resume, 200, body=hold_sdp(CALLER_PCMA_SDP, "sendrecv", 3))
        self.caller.expect("ACK")
        self.quiet(self.target)
        self.assertFalse(session.leg("a").rtp.held)
        self.assertFalse(session.leg("b").rtp.held)
        self.hang_up_with_target(leg)

    def test_caller_transfers_callee(self) -> None:
        """1001 transfers 1002 to 1003: 1003 gets an offer at 1001's port, and talks to 1002."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        self.accepted(self.caller, leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.assertEqual(str(forked.from_.uri), f"sip:1002@{REALM}")
        host, port, formats, direction = audio(forked.body)
        self.assertEqual((host, port), ("127.0.0.1", session.local_port("a")))
        self.assertEqual(formats[:2], ["8", "101"])
        self.target_answers(self.target, forked)
        self.released(self.caller)
        self.assertEqual(session.leg("a").rtp.remote, ("192.0.2.13", 6000))
        call = self.call()
        self.assertIsInstance(call.a, Party)
        self.assertEqual((call.caller, call.callee), ("1003", "1002"))
        # A re-INVITE from the callee now reaches the target.
        self.callee.in_dialog(
            callee_leg, "INVITE", body=CALLEE_SDP.replace(b" 1 IN", b" 2 IN")
        )
        self.callee.expect(100)
        reinvite = self.target.expect_one("INVITE")
        self.target.respond(reinvite, 200, body=TARGET_SDP.replace(b" 1 IN", b" 2 IN"))
        self.target.expect("ACK")
        self.callee.expect(200)
        self.callee.ack_reinvite(callee_leg)
        # The callee hangs up: BYE to the target, the call ends.
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        bye = self.target.expect_one("BYE")
        self.target.respond(bye, 200)
        self.assertEqual(self.controller.calls, {})

    def test_refer_sub_false(self) -> None:
        """RFC 4488: with Refer-Sub: false the 202 says so and no NOTIFY is sent; the BYE still comes."""
        invite, leg, callee_leg = self.establish()
        messages = self.refer(
            self.callee, callee_leg, f"<sip:1003@{REALM}>", ("Refer-Sub", "false")
        )
        [accepted] = messages
        self.assertEqual(
            (accepted.status, accepted.headers.get("Refer-Sub")), (202, "false")
        )
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 180)
        bye = self.callee.expect_one("BYE")
        self.callee.respond(bye, 200)
        self.target_answers(self.target, forked)
        self.hang_up_with_target(leg)

    def hang_up_with_target(self, leg: Leg) -> None:
        """The caller hangs up; the target answers the BYE."""
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.target.respond(self.target.expect_one("BYE"), 200)

    def test_target_answers_unoffered_codec(self) -> None:
        """A target answering with a codec it was not offered is hung up; NOTIFY 488 and the call goes on."""
        invite, leg, callee_leg = self.establish()
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 200, body=TARGET_PCMU_SDP)
        ack, bye = self.target.expect("ACK", "BYE")
        self.target.respond(bye, 200)
        notify = self.callee.expect_one("NOTIFY")
        self.assertEqual(sipfrag(notify), "SIP/2.0 488 Not Acceptable Here")
        self.callee.respond(notify, 200)
        self.assertEqual(self.call().callee, "1002")
        self.assertEqual(self.session().leg("b").rtp.remote, ("192.0.2.12", 5000))
        self.hang_up(leg)

    def test_transferor_hangs_up_first(self) -> None:
        """A transferor that hangs up before the target rings leaves; the transferee stays for the target."""
        invite, leg, callee_leg = self.establish()
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.quiet(self.caller)
        self.target_answers(self.target, forked)
        self.assertEqual(self.call().callee, "1003")
        self.hang_up_with_target(leg)

    def test_transferee_hangs_up_while_target_rings(self) -> None:
        """The transferee hanging up while the target rings cancels the target."""
        invite, leg, callee_leg = self.establish()
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 180)
        self.released(self.callee)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        cancel = self.target.expect_one("CANCEL")
        self.target.respond(cancel, 200)
        self.target.respond(forked, 487)
        self.target.expect("ACK")
        self.assertEqual(self.controller.transfers.active, 0)
        self.assertEqual(self.controller.calls, {})

    def test_unanswered_target_recalls(self) -> None:
        """After recall_after seconds of ringing the target is cancelled and the transferor rung back."""
        self.controller.transfers.recall_after = 5
        invite, leg, callee_leg = self.establish()
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 180)
        self.released(self.callee)
        self.advance(4.9)
        self.quiet(self.target, self.callee)
        self.advance(0.2)
        cancel = self.target.expect_one("CANCEL")
        self.target.respond(cancel, 200)
        self.target.respond(forked, 487)
        self.target.expect("ACK")
        recall = self.callee.expect_one("INVITE")
        self.assertEqual(str(recall.from_.uri), f"sip:1001@{REALM}")
        self.assertEqual(str(recall.to.uri), f"sip:1002@{REALM}")
        self.assertEqual(audio(recall.body)[1], self.session().local_port("b"))
        self.callee.respond(recall, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        recalled = self.callee.answer_leg(recall)
        self.assertEqual([e.detail["how"] for e in self.transfers], ["recalled"])
        self.assertEqual(self.call().callee, "1002")
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.callee.expect_one("BYE")
        self.assertEqual(bye.call_id, recalled.call_id)
        self.callee.respond(bye, 200)

    def test_unanswered_recall_hangs_up(self) -> None:
        """A transferor that does not answer its recall either: the transferee is hung up."""
        self.controller.transfers.recall_after = 5
        invite, leg, callee_leg = self.establish()
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 180)
        self.released(self.callee)
        self.advance(5.1)
        self.target.respond(self.target.expect_one("CANCEL"), 200)
        self.target.respond(forked, 487)
        self.target.expect("ACK")
        recall = self.callee.expect_one("INVITE")
        self.callee.respond(recall, 486)
        self.callee.expect("ACK")
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(self.controller.calls, {})

    def test_busy_target_reported(self) -> None:
        """A target that refuses before ringing: final NOTIFY 486 and the transferor keeps the call."""
        invite, leg, callee_leg = self.establish()
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 486)
        self.target.expect("ACK")
        notify = self.callee.expect_one("NOTIFY")
        self.assertEqual(sipfrag(notify), "SIP/2.0 486 Busy Here")
        self.callee.respond(notify, 200)
        self.assertEqual(self.call().callee, "1002")
        self.assertFalse(self.session().leg("b").rtp.held)
        self.hang_up(leg)

    def test_unknown_target(self) -> None:
        """A Refer-To naming no extension: final NOTIFY 404, nothing rings, the call goes on."""
        invite, leg, callee_leg = self.establish()
        messages = self.refer(self.callee, callee_leg, f"<sip:7777@{REALM}>")
        self.assertEqual([describe(m) for m in messages], [202, "NOTIFY", "NOTIFY"])
        self.assertEqual(
            [sipfrag(m) for m in messages[1:]],
            ["SIP/2.0 100 Trying", "SIP/2.0 404 Not Found"],
        )
        for notify in messages[1:]:
            self.callee.respond(notify, 200)
        self.quiet(self.caller, self.target)
        self.hang_up(leg)

    def dialplan(self, *routes: tuple[str, Action]) -> None:
        """Give the controller a dialplan of ``(pattern, action)`` routes."""
        self.controller.config = attrs.evolve(
            self.config,
            dialplan=Dialplan(
                tuple(Route(p, compile_pattern(p), a) for p, a in routes)
            ),
        )

    def test_dialplan_routes_the_target(self) -> None:
        """The Refer-To number goes through the dialplan: an alias rings its extension, a barred number is reported."""
        self.dialplan(("0", ToExtension("1003")), ("_19XX", HangUp(403, "Barred")))
        invite, leg, callee_leg = self.establish()
        messages = self.refer(self.callee, callee_leg, f"<sip:1900@{REALM}>")
        self.assertEqual(
            [sipfrag(m) for m in messages[1:]],
            ["SIP/2.0 100 Trying", "SIP/2.0 403 Barred"],
        )
        for notify in messages[1:]:
            self.callee.respond(notify, 200)
        self.accepted(self.callee, callee_leg, f"<sip:0@{REALM}>")
        forked = self.target.expect_one("INVITE")
        self.assertEqual(str(forked.to.uri), f"sip:1003@{REALM}")
        self.target_answers(self.target, forked)
        self.released(self.callee)
        self.hang_up_with_target(leg)

    def test_application_target_not_running(self) -> None:
        """A number the dialplan gives to an application that is not running: NOTIFY 404, the transferor keeps the call."""
        self.dialplan(("*97", ToApplication("voicemail", {})))
        invite, leg, callee_leg = self.establish()
        messages = self.refer(self.callee, callee_leg, f"<sip:*97@{REALM}>")
        self.assertEqual(sipfrag(messages[-1]), "SIP/2.0 404 Not Found")
        for notify in messages[1:]:
            self.callee.respond(notify, 200)
        self.hang_up(leg)

    def test_bad_refer_to(self) -> None:
        """A REFER with no usable Refer-To gets 400 and changes nothing."""
        invite, leg, callee_leg = self.establish()
        for value in ("<mailto:bob@example.com>", "<sip:pbx.test>", "not a uri <"):
            [refused] = self.refer(self.callee, callee_leg, value)
            self.assertEqual(refused.status, 400, value)
        self.callee.in_dialog(callee_leg, "REFER")
        self.assertEqual(self.callee.expect_one(400).status, 400)
        self.quiet(self.caller, self.target)
        self.hang_up(leg)

    def test_second_refer_while_transferring(self) -> None:
        """A second REFER while the first transfer rings gets 491."""
        invite, leg, callee_leg = self.establish()
        self.accepted(self.callee, callee_leg, f"<sip:1003@{REALM}>")
        forked = self.target.expect_one("INVITE")
        [pending] = self.refer(self.caller, leg, f"<sip:1003@{REALM}>")
        self.assertEqual(pending.status, 491)
        self.target_answers(self.target, forked)
        self.released(self.callee)
        self.hang_up_with_target(leg)


class FeatureCodeTests(TransferTestCase):
    """``##`` + number + ``#`` keyed by SIP INFO blind-transfers the call."""

    def key(self, phone: Phone, leg: Leg, keys: str, other: Phone) -> None:
        """``phone`` sends each key as INFO; pbx relays it to ``other``, whose 200 goes back."""
        for key in keys:
            phone.in_dialog(
                leg,
                "INFO",
                body=f"Signal={key}\r\nDuration=160\r\n".encode(),
                extra=[("Content-Type", "application/dtmf-relay")],
            )
            other.respond(other.expect_one("INFO"), 200)
            phone.expect(200)

    def target_takes_over(self, leg: Leg) -> None:
        """1003 rings from 1001, the callee gets BYE once it rings, 1003 answers and talks to 1001, who hangs up."""
        forked = self.target.expect_one("INVITE")
        self.assertEqual(str(forked.from_.uri), f"sip:1001@{REALM}")
        self.target.respond(forked, 180)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        self.target_answers(self.target, forked)
        self.assertEqual(self.call().callee, "1003")
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.target.respond(self.target.expect_one("BYE"), 200)

    def test_keyed_blind_transfer(self) -> None:
        """The callee keys ##1003#: 1003 rings from 1001 and, once it rings, the callee gets BYE (no NOTIFY)."""
        invite, leg, callee_leg = self.establish()
        self.key(self.callee, callee_leg, "##1003#", self.caller)
        self.target_takes_over(leg)

    def test_keyed_by_rfc4733(self) -> None:
        """The callee keys ##1003# as RFC 4733 events in its RTP: relayed to the caller, and 1003 rings."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        callee_port = self.clock.udpPorts[session.local_port("b")].protocol
        phone = Talker(0)
        packets = [p for key in "##1003#" for p in phone.key(key)]
        for packet in packets:
            callee_port.datagramReceived(packet, ("192.0.2.12", 5000))
        relayed = [data for data, _ in self.clock.udpPorts[session.local_port("a")].written]
        self.assertEqual(relayed, packets)
        self.target_takes_over(leg)

    def test_other_keys_just_relayed(self) -> None:
        """Keys that are not the code are relayed and do nothing else."""
        invite, leg, callee_leg = self.establish()
        self.key(self.caller, leg, "#1#1003#", self.callee)
        self.advance(10)
        self.quiet(self.target, self.caller, self.callee)
        self.hang_up(leg)


class AttendedTransferTests(TransferTestCase):
    """REFER with Replaces: the transferor's two calls become one between the other parties."""

    def consult(self) -> tuple[Request, Leg, Leg, Leg, Response]:
        """
        1001 calls 1002, then 1002 calls 1003.  Returns 1001's leg, 1002's
        leg of the first call, 1002's and 1003's legs of the second, and the
        200 1002 got for the second.
        """
        invite, leg, callee_leg = self.establish()
        second, consult = self.callee.invite("1003")
        self.callee.expect(100)
        forked = self.target.expect_one("INVITE")
        target_leg = self.answer(self.target, forked, body=TARGET_SDP)
        ringing, ok = self.callee.expect(180, 200)
        self.callee.confirm(second, consult, ok)
        return leg, callee_leg, consult, target_leg, ok  # type: ignore[return-value]

    def replaces(self, consult: Leg, ok: Response) -> str:
        """The Refer-To naming the consultation call (RFC 3891 §7.1: escaped in the URI)."""
        value = f"{consult.call_id};to-tag={ok.to.tag};from-tag={self.callee.tag}"
        return f"<sip:1003@{REALM}?Replaces={quote(value, safe='')}>"

    def test_attended_by_callee(self) -> None:
        """1002 joins 1001 and 1003: 1003 is re-INVITEd onto 1002's port, 1002's two dialogs get BYE."""
        leg, callee_leg, consult, target_leg, ok = self.consult()
        [first, second] = self.controller.calls.values()
        assert isinstance(first, Call)
        port_b = first.media.session.local_port("b")
        self.accepted(self.callee, callee_leg, self.replaces(consult, ok))
        reinvite = self.target.expect_one("INVITE")
        self.assertEqual(reinvite.call_id, target_leg.call_id)
        host, port, formats, direction = audio(reinvite.body)
        self.assertEqual((host, port, direction), ("127.0.0.1", port_b, "sendrecv"))
        self.target.respond(reinvite, 200, body=TARGET_SDP.replace(b" 1 IN", b" 2 IN"))
        self.target.expect("ACK")
        # The consultation call ends (BYE to 1002 in it), then the final NOTIFY and BYE in the first.
        messages = self.callee.received()
        self.assertEqual([describe(m) for m in messages], ["BYE", "NOTIFY"])
        bye, notify = messages
        self.assertEqual(bye.call_id, consult.call_id)
        self.assertEqual(sipfrag(notify), "SIP/2.0 200 OK")
        self.callee.respond(bye, 200)
        self.callee.respond(notify, 200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        self.quiet(self.caller)
        [call] = self.controller.calls.values()
        assert isinstance(call, Call)
        self.assertIs(call, first)
        self.assertEqual((call.caller, call.callee), ("1001", "1003"))
        self.assertEqual(call.media.session.leg("b").rtp.remote, ("192.0.2.13", 6000))
        [event] = self.transfers
        self.assertEqual(
            (event.detail["how"], event.detail["target"]), ("attended", "1003")
        )
        # 1003 hangs up in its own dialog: the BYE reaches 1001.
        self.target.in_dialog(target_leg, "BYE")
        self.target.expect(200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)
        self.assertEqual(self.controller.calls, {})
        causes = {r.hangup_cause for r in self.store.calls}
        self.assertIn("transferred to 1003", causes)

    def test_unknown_replaces(self) -> None:
        """A Replaces naming no dialog: final NOTIFY 481, and both calls go on."""
        leg, callee_leg, consult, target_leg, ok = self.consult()
        stale = Leg(
            consult.call_id + "x", consult.local, consult.remote, consult.target, 0
        )
        messages = self.refer(self.callee, callee_leg, self.replaces(stale, ok))
        self.assertEqual([describe(m) for m in messages], [202, "NOTIFY", "NOTIFY"])
        self.assertEqual(
            sipfrag(messages[2]), "SIP/2.0 481 Call/Transaction Does Not Exist"
        )
        for notify in messages[1:]:
            self.callee.respond(notify, 200)
        self.assertEqual(len(self.controller.calls), 2)
        self.callee.in_dialog(consult, "BYE")
        self.callee.expect(200)
        self.target.respond(self.target.expect_one("BYE"), 200)
        self.hang_up(leg)

    def test_target_refuses_reinvite(self) -> None:
        """A target that refuses the re-INVITE: the final NOTIFY says so and both calls go on."""
        leg, callee_leg, consult, target_leg, ok = self.consult()
        self.accepted(self.callee, callee_leg, self.replaces(consult, ok))
        reinvite = self.target.expect_one("INVITE")
        self.target.respond(reinvite, 488)
        self.target.expect("ACK")
        notify = self.callee.expect_one("NOTIFY")
        self.assertEqual(sipfrag(notify), "SIP/2.0 488 Not Acceptable Here")
        self.callee.respond(notify, 200)
        self.assertEqual(len(self.controller.calls), 2)
        self.callee.in_dialog(consult, "BYE")
        self.callee.expect(200)
        self.target.respond(self.target.expect_one("BYE"), 200)
        self.hang_up(leg)

    def test_attended_target_called_in(self) -> None:
        """The consultation call came from the target (1003 called 1002): it still takes 1002's seat."""
        invite, leg, callee_leg = self.establish()
        second, consult = self.target.invite("1002")
        self.target.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        ok = self.target.expect_one(200)
        self.target.confirm(second, consult, ok)
        callee_consult = self.callee.answer_leg(forked)
        value = f"{forked.call_id};to-tag={forked.from_.tag};from-tag={self.callee.tag}"
        self.accepted(
            self.callee,
            callee_leg,
            f"<sip:1003@{REALM}?Replaces={quote(value, safe='')}>",
        )
        reinvite = self.target.expect_one("INVITE")
        self.assertEqual(reinvite.call_id, consult.call_id)
        self.target.respond(reinvite, 200, body=TARGET_SDP.replace(b" 1 IN", b" 2 IN"))
        self.target.expect("ACK")
        bye, notify = self.callee.expect("BYE", "NOTIFY")
        self.assertEqual(bye.call_id, callee_consult.call_id)
        self.callee.respond(bye, 200)
        self.callee.respond(notify, 200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        [call] = self.controller.calls.values()
        assert isinstance(call, Call) and call.b is not None
        self.assertEqual(
            (call.callee, call.b.invite.call_id), ("1003", consult.call_id)
        )
        # The caller hangs up: BYE to 1003 in the dialog it started.
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.target.expect_one("BYE")
        self.assertEqual(bye.call_id, consult.call_id)
        self.target.respond(bye, 200)


class ReplacesInviteTests(TransferTestCase):
    """An INVITE with Replaces (RFC 3891 §3) takes over a party's seat."""

    def test_takes_callee_seat(self) -> None:
        """1003 replaces 1002: 1001 is re-INVITEd with 1003's offer, 1003 answered on 1002's port, 1002 BYEd."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        forked = self.answered_invite()
        value = f"{forked.call_id};to-tag={forked.from_.tag};from-tag={self.callee.tag}"
        joining, joined = self.target.invite(
            "1002", body=TARGET_SDP, extra=[("Replaces", value)]
        )
        self.target.expect(100)
        reinvite = self.caller.expect_one("INVITE")
        self.assertEqual(reinvite.call_id, leg.call_id)
        host, port, formats, direction = audio(reinvite.body)
        self.assertEqual((host, port), ("127.0.0.1", session.local_port("a")))
        self.caller.respond(reinvite, 200, body=CALLER_SDP.replace(b" 1 IN", b" 2 IN"))
        self.caller.expect("ACK")
        bye = self.callee.expect_one("BYE")
        self.callee.respond(bye, 200)
        ok = self.target.expect_one(200)
        host, port, formats, direction = audio(ok.body)
        self.assertEqual((host, port), ("127.0.0.1", session.local_port("b")))
        self.target.confirm(joining, joined, ok)
        self.advance(5)
        self.quiet(self.target, self.caller, self.callee)
        call = self.call()
        self.assertEqual((call.caller, call.callee), ("1001", "1003"))
        self.assertEqual(session.leg("b").rtp.remote, ("192.0.2.13", 6000))
        [event] = self.transfers
        self.assertEqual(
            (event.detail["how"], event.detail["transferor"]), ("replaces", "1002")
        )
        # 1003 hangs up: the BYE reaches the caller.
        self.target.in_dialog(joined, "BYE")
        self.target.expect(200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)
        causes = {r.hangup_cause for r in self.store.calls}
        self.assertIn("replaced by 1003", causes)

    def test_unknown_dialog(self) -> None:
        """RFC 3891 §3: a Replaces naming no dialog of pbx gets 481 and changes nothing."""
        invite, leg, callee_leg = self.establish()
        joining, joined = self.target.invite(
            "1002", body=TARGET_SDP, extra=[("Replaces", "nope@x;to-tag=a;from-tag=b")]
        )
        trying, refused = self.target.expect(100, 481)
        self.target.ack_failure(joining, refused)
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_early_only(self) -> None:
        """RFC 3891 §3: early-only naming a confirmed dialog gets 486, and the call goes on."""
        invite, leg, callee_leg = self.establish()
        forked = self.answered_invite()
        value = f"{forked.call_id};to-tag={forked.from_.tag};from-tag={self.callee.tag};early-only"
        joining, joined = self.target.invite(
            "1002", body=TARGET_SDP, extra=[("Replaces", value)]
        )
        trying, refused = self.target.expect(100, 486)
        self.target.ack_failure(joining, refused)
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_malformed(self) -> None:
        """A Replaces without its tags gets 400."""
        invite, leg, callee_leg = self.establish()
        joining, joined = self.target.invite(
            "1002", body=TARGET_SDP, extra=[("Replaces", "c@x")]
        )
        trying, refused = self.target.expect(100, 400)
        self.target.ack_failure(joining, refused)
        self.hang_up(leg)
