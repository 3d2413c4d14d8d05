"""
Tests for :mod:`pbx.calls.park`: parking a relayed call by transfer to the
park code, retrieving it from a slot, and the recall of an unretrieved
call, by scripted phones through the real controller, in memory.

1001 calls 1002 and 1002 parks 1001; 1003 retrieves; 1004 is the operator.
"""

from __future__ import annotations

import numpy as np

from twisted.internet.defer import Deferred, succeed

from pbx.calls.call import Call
from pbx.calls.endpoint_media import MediaServices
from pbx.calls.events import CallEvent
from pbx.calls.park import ParkingLot
from pbx.calls.park_options import ParkConfig
from pbx.config import CallsConfig
from pbx.media import g711
from pbx.media.codecs import PCMA, PCMU
from pbx.media.music import MusicClass
from pbx.media.playout import HoldMusic
from pbx.media.wav import WavAudio
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
)

RETRIEVER_SDP = (
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


class ParkTestCase(CallTestCase):
    """
    Park on 70, slots 71-73, 60 s before the recall, 1004 the operator; no
    RTP flows in memory, so the media watchdog waits longer than the tests.
    """

    calls_config = CallsConfig(
        ring_timeout=30, media_timeout=3600, min_session_expires=90
    )

    park_config = ParkConfig(
        code="70", slots=("71", "72", "73"), timeout=60, operator="1004"
    )

    def setUp(self) -> None:
        """Register 1003 and 1004; collect ``parked`` and ``unparked`` events."""
        super().setUp()
        self.retriever = self.phone("1003", "192.0.2.13")
        self.operator = self.phone("1004", "192.0.2.14")
        self.events: list[CallEvent] = []
        self.controller.events.subscribe(
            self.events.append, kinds=("parked", "unparked")
        )

    @property
    def lot(self) -> ParkingLot:
        """The controller's parking lot."""
        assert self.controller.parking is not None
        return self.controller.parking

    def call(self) -> Call:
        """The one call in progress."""
        [call] = self.controller.calls.values()
        assert isinstance(call, Call)
        return call

    def park(self, callee_leg: Leg) -> Request:
        """1002 REFERs its call to 70: 202, NOTIFY 100, final NOTIFY, BYE; returns the final NOTIFY."""
        self.callee.in_dialog(
            callee_leg, "REFER", extra=[("Refer-To", f"<sip:70@{REALM}>")]
        )
        # The slot is known at once: both NOTIFYs go together.
        accepted, trying, final = self.callee.expect(202, "NOTIFY", "NOTIFY")
        self.assertEqual(trying.body, b"SIP/2.0 100 Trying\r\n")
        self.callee.respond(trying, 200)
        self.assertEqual(
            final.headers.get("Subscription-State"), "terminated;reason=noresource"
        )
        self.quiet(self.callee)  # no BYE before the NOTIFY is answered
        self.callee.respond(final, 200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        return final

    def retrieve(self, slot: str = "71") -> tuple[Request, Leg, Response]:
        """1003 dials ``slot``; 1001 takes the re-INVITE; returns 1003's INVITE, leg and 200."""
        invite, leg = self.retriever.invite(slot, body=RETRIEVER_SDP)
        self.retriever.expect(100)
        reinvite = self.caller.expect_one("INVITE")
        self.caller.respond(reinvite, 200, body=CALLER_SDP.replace(b" 1 IN", b" 2 IN"))
        self.caller.expect("ACK")
        ok = self.retriever.expect_one(200)
        self.retriever.confirm(invite, leg, ok)
        return invite, leg, ok


class ParkTests(ParkTestCase):
    """A transfer to the park code parks the other party in the first free slot."""

    def test_park_by_refer(self) -> None:
        """1002 parks 1001: the final NOTIFY says the slot, 1002 gets BYE, 1001 stays, slot 71 is listed."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        port_a = session.local_port("a")
        final = self.park(callee_leg)
        self.assertEqual(final.body, b"SIP/2.0 200 Parked at 71\r\n")
        self.quiet(self.caller, self.retriever, self.operator)
        call = self.call()
        self.assertEqual(call.state, "confirmed")
        self.assertEqual(session.local_port("a"), port_a)
        self.assertTrue(session.leg("b").rtp.held)
        [parked] = self.events
        self.assertEqual(
            (parked.kind, parked.leg, parked.detail["slot"], parked.detail["parker"]),
            ("parked", "a", "71", "1002"),
        )
        [slot] = self.lot.occupied()
        self.assertEqual(
            (slot["slot"], slot["parked"], slot["parker"], slot["call_id"]),
            ("71", "1001", "1002", leg.call_id),
        )
        self.hang_up_parked(leg)

    def hang_up_parked(self, leg: Leg) -> None:
        """1001 hangs up while parked: the call ends and the slot is free, no timer left."""
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.lot.occupied(), [])
        self.assertEqual(
            [(e.kind, e.detail["slot"]) for e in self.events][-1], ("unparked", "71")
        )
        self.assertEqual(self.events[-1].detail["how"], "ended")
        causes = {r.hangup_cause for r in self.store.calls}
        self.assertIn("parked at 71", causes)

    def test_caller_parks_callee(self) -> None:
        """The caller may park too: 1002 waits in the slot, 1001 gets BYE."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "REFER", extra=[("Refer-To", f"<sip:70@{REALM}>")])
        accepted, trying, final = self.caller.expect(202, "NOTIFY", "NOTIFY")
        self.caller.respond(trying, 200)
        self.assertEqual(final.body, b"SIP/2.0 200 Parked at 71\r\n")
        self.caller.respond(final, 200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)
        [slot] = self.lot.occupied()
        self.assertEqual((slot["parked"], slot["parker"]), ("1002", "1001"))
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.assertEqual(self.lot.occupied(), [])

    def test_second_call_takes_next_slot(self) -> None:
        """Slots are handed out in order: a second parked call goes to 72."""
        invite, leg, callee_leg = self.establish()
        self.park(callee_leg)
        # A second call, 1003 -> 1004, parked by 1004.
        second, second_leg = self.retriever.invite("1004", body=RETRIEVER_SDP)
        self.retriever.expect(100)
        forked = self.operator.expect_one("INVITE")
        self.operator.respond(forked, 200, body=CALLEE_SDP)
        self.operator.expect("ACK")
        operator_leg = self.operator.answer_leg(forked)
        ok = self.retriever.expect_one(200)
        self.retriever.confirm(second, second_leg, ok)
        self.operator.in_dialog(
            operator_leg, "REFER", extra=[("Refer-To", f"<sip:70@{REALM}>")]
        )
        accepted, trying, final = self.operator.expect(202, "NOTIFY", "NOTIFY")
        self.operator.respond(trying, 200)
        self.assertEqual(final.body, b"SIP/2.0 200 Parked at 72\r\n")
        self.operator.respond(final, 200)
        self.operator.respond(self.operator.expect_one("BYE"), 200)
        self.assertEqual([s["slot"] for s in self.lot.occupied()], ["71", "72"])
        for phone, dialog in ((self.caller, leg), (self.retriever, second_leg)):
            phone.in_dialog(dialog, "BYE")
            phone.expect(200)
        self.assertEqual(self.lot.occupied(), [])

    def test_keyed_park(self) -> None:
        """1002 keys ##70# by SIP INFO: 1001 is parked at 71 and 1002 gets BYE (no NOTIFY)."""
        invite, leg, callee_leg = self.establish()
        for key in "##70#":
            self.callee.in_dialog(
                callee_leg,
                "INFO",
                body=f"Signal={key}\r\nDuration=160\r\n".encode(),
                extra=[("Content-Type", "application/dtmf-relay")],
            )
            self.caller.respond(self.caller.expect_one("INFO"), 200)
        messages = self.callee.received()
        self.assertIn("BYE", [describe(m) for m in messages])
        self.assertNotIn("NOTIFY", [describe(m) for m in messages])
        bye = next(m for m in messages if describe(m) == "BYE")
        self.callee.respond(bye, 200)
        self.assertEqual([s["slot"] for s in self.lot.occupied()], ["71"])
        self.hang_up_parked(leg)


class FullLotTests(ParkTestCase):
    """A lot with one slot."""

    park_config = ParkConfig(code="70", slots=("71",), timeout=60)

    def test_no_free_slot(self) -> None:
        """With every slot taken the final NOTIFY says 486 and the parker keeps its call."""
        invite, leg, callee_leg = self.establish()
        self.park(callee_leg)
        second, second_leg = self.retriever.invite("1004", body=RETRIEVER_SDP)
        self.retriever.expect(100)
        forked = self.operator.expect_one("INVITE")
        self.operator.respond(forked, 200, body=CALLEE_SDP)
        self.operator.expect("ACK")
        operator_leg = self.operator.answer_leg(forked)
        self.retriever.confirm(second, second_leg, self.retriever.expect_one(200))
        self.operator.in_dialog(
            operator_leg, "REFER", extra=[("Refer-To", f"<sip:70@{REALM}>")]
        )
        accepted, trying, final = self.operator.expect(202, "NOTIFY", "NOTIFY")
        self.operator.respond(trying, 200)
        self.assertEqual(final.body, b"SIP/2.0 486 All Park Slots Busy\r\n")
        self.operator.respond(final, 200)
        self.quiet(self.operator, self.retriever)
        self.assertEqual(len(self.controller.calls), 2)
        self.operator.in_dialog(operator_leg, "BYE")
        self.operator.expect(200)
        self.retriever.respond(self.retriever.expect_one("BYE"), 200)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)


class RetrieveTests(ParkTestCase):
    """Dialling a slot seats the caller in the parked call's vacant seat."""

    def test_retrieve(self) -> None:
        """1003 dials 71: 1001 is re-INVITEd at its own relay port, 1003 is answered on 1002's port."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        port_a, port_b = session.local_port("a"), session.local_port("b")
        self.park(callee_leg)
        joining, joined = self.retriever.invite("71", body=RETRIEVER_SDP)
        self.retriever.expect(100)
        reinvite = self.caller.expect_one("INVITE")
        self.assertEqual(reinvite.call_id, leg.call_id)
        self.assertEqual(audio(reinvite.body)[:2], ("127.0.0.1", port_a))
        self.caller.respond(reinvite, 200, body=CALLER_SDP.replace(b" 1 IN", b" 2 IN"))
        self.caller.expect("ACK")
        ok = self.retriever.expect_one(200)
        self.assertEqual(audio(ok.body)[:2], ("127.0.0.1", port_b))
        self.retriever.confirm(joining, joined, ok)
        self.advance(5)
        self.quiet(self.caller, self.callee, self.retriever)
        call = self.call()
        self.assertEqual((call.caller, call.callee), ("1001", "1003"))
        self.assertFalse(session.leg("b").rtp.held)
        self.assertEqual(session.leg("b").rtp.remote, ("192.0.2.13", 6000))
        self.assertEqual(self.lot.occupied(), [])
        unparked = self.events[-1]
        self.assertEqual(
            (unparked.kind, unparked.detail["how"], unparked.detail["by"]),
            ("unparked", "retrieved", "1003"),
        )
        # No recall comes later.
        self.advance(120)
        self.quiet(self.caller, self.callee, self.retriever, self.operator)
        self.retriever.in_dialog(joined, "BYE")
        self.retriever.expect(200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)
        self.assertEqual(self.controller.calls, {})

    def test_empty_slot(self) -> None:
        """Dialling a slot with nothing parked: 404."""
        invite, leg = self.retriever.invite("72", body=RETRIEVER_SDP)
        trying, response = self.retriever.expect(100, 404)
        self.assertEqual(response.reason, "Nothing Parked Here")
        self.retriever.ack_failure(invite, response)

    def test_retrieve_without_offer(self) -> None:
        """A retriever's INVITE without SDP: 488, and the call stays parked."""
        invite, leg, callee_leg = self.establish()
        self.park(callee_leg)
        joining, joined = self.retriever.invite("71", body=b"")
        trying, response = self.retriever.expect(100, 488)
        self.retriever.ack_failure(joining, response)
        self.assertEqual([s["slot"] for s in self.lot.occupied()], ["71"])
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)

    def test_parked_party_cannot_retrieve_itself(self) -> None:
        """The parked extension dialling its own slot from another line: 403, still parked."""
        invite, leg, callee_leg = self.establish()
        self.park(callee_leg)
        other_line = self.phone("1001", "192.0.2.21")
        joining, joined = other_line.invite("71", body=RETRIEVER_SDP)
        trying, refused = other_line.expect(100, 403)
        other_line.ack_failure(joining, refused)
        self.assertEqual([s["slot"] for s in self.lot.occupied()], ["71"])
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)

    def test_slot_needs_authentication(self) -> None:
        """A slot is dialled by extensions only: the INVITE is challenged."""
        invite, leg = self.retriever.invite(
            "71", body=RETRIEVER_SDP, authenticate=False
        )
        challenge = self.retriever.expect_one(407)
        self.retriever.ack_failure(invite, challenge)


class RecallTests(ParkTestCase):
    """An unretrieved call rings the parker, then the operator, then is hung up."""

    def parked(self) -> Leg:
        """1001 parked by 1002; returns 1001's leg."""
        invite, leg, callee_leg = self.establish()
        self.park(callee_leg)
        return leg

    def no_answer(self, phone: Phone, invite: Request) -> None:
        """``phone`` rings ``ring_timeout`` seconds and is cancelled."""
        phone.respond(invite, 180)
        self.advance(30)
        phone.respond(phone.expect_one("CANCEL"), 200)
        phone.respond(invite, 487)
        phone.expect("ACK")

    def test_recall_parker(self) -> None:
        """After 60 s the parker's phone rings from 1001 on 1002's relay port; answering seats it again."""
        self.parked()
        self.advance(59.5)
        self.quiet(self.callee)
        self.advance(0.5)
        recall = self.callee.expect_one("INVITE")
        self.assertEqual(str(recall.from_.uri), f"sip:1001@{REALM}")
        self.assertEqual(str(recall.to.uri), f"sip:1002@{REALM}")
        self.assertEqual(audio(recall.body)[1], self.session().local_port("b"))
        self.callee.respond(recall, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        recalled = self.callee.answer_leg(recall)
        self.assertEqual(self.lot.occupied(), [])
        self.assertEqual(
            (self.events[-1].detail["how"], self.events[-1].detail["by"]),
            ("recalled", "1002"),
        )
        self.assertEqual(self.call().callee, "1002")
        self.callee.in_dialog(recalled, "BYE")
        self.callee.expect(200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)

    def test_recall_operator(self) -> None:
        """A parker that does not answer: the operator rings next and takes the call."""
        leg = self.parked()
        self.advance(60)
        self.no_answer(self.callee, self.callee.expect_one("INVITE"))
        recall = self.operator.expect_one("INVITE")
        self.assertEqual(str(recall.to.uri), f"sip:1004@{REALM}")
        self.assertEqual(self.lot.occupied()[0]["recalling"], "1004")
        self.operator.respond(recall, 200, body=CALLEE_SDP)
        self.operator.expect("ACK")
        self.assertEqual(
            (self.events[-1].detail["how"], self.events[-1].detail["by"]),
            ("recalled", "1004"),
        )
        self.assertEqual(self.call().callee, "1004")
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.operator.respond(self.operator.expect_one("BYE"), 200)

    def test_nobody_answers(self) -> None:
        """Neither the parker nor the operator answers: the parked party is hung up."""
        self.parked()
        self.advance(60)
        self.no_answer(self.callee, self.callee.expect_one("INVITE"))
        self.no_answer(self.operator, self.operator.expect_one("INVITE"))
        self.caller.respond(self.caller.expect_one("BYE"), 200)
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.lot.occupied(), [])
        self.assertEqual(self.events[-1].detail["how"], "ended")
        causes = {r.hangup_cause for r in self.store.calls}
        self.assertIn("park recall unanswered", causes)

    def test_retrieved_while_recall_rings(self) -> None:
        """A retriever while the parker's phone rings back: the ringing phone is cancelled."""
        leg = self.parked()
        self.advance(60)
        recall = self.callee.expect_one("INVITE")
        self.callee.respond(recall, 180)
        self.retrieve()
        self.callee.respond(self.callee.expect_one("CANCEL"), 200)
        self.callee.respond(recall, 487)
        self.callee.expect("ACK")
        self.assertEqual(self.call().callee, "1003")
        self.assertEqual(self.events[-1].detail["how"], "retrieved")
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.retriever.respond(self.retriever.expect_one("BYE"), 200)

    def test_hang_up_while_recall_rings(self) -> None:
        """The parked party hanging up while its recall rings cancels the ringing phone."""
        leg = self.parked()
        self.advance(60)
        recall = self.callee.expect_one("INVITE")
        self.callee.respond(recall, 180)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.callee.respond(self.callee.expect_one("CANCEL"), 200)
        self.callee.respond(recall, 487)
        self.callee.expect("ACK")
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.lot.occupied(), [])


class MusicTests(ParkTestCase):
    """A parked party hears the parker's music-on-hold class until it leaves the slot."""

    def setUp(self) -> None:
        """Music on hold with one class, a 1 s track of a constant level."""
        super().setUp()
        track = np.full(8000, 0.25)
        self.controller.music = HoldMusic(
            {"default": MusicClass("default", 8000, track)},
            {},
            {"pcmu": PCMU(), "pcma": PCMA()},
            self.controller.media_clock,
        )

    def sent_to_caller(self) -> list[bytes]:
        """The RTP pbx sent 1001 from its relay port since the last look (then forgotten)."""
        port = self.clock.udpPorts[self.session().local_port("a")]
        mine = [d for d, a in port.written if a == ("192.0.2.11", 4000)]
        port.written.clear()
        return mine

    def play(self, seconds: float) -> None:
        """Let ``seconds`` pass in 20 ms steps, as the reactor would tick."""
        for _ in range(round(seconds / 0.02)):
            self.clock.advance(0.02)

    def test_music_while_parked(self) -> None:
        """1001 gets a packet of the class every 20 ms while parked, in its codec (PCMA), and none once retrieved."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        self.park(callee_leg)
        self.assertIsNotNone(session.feeding("a"))
        self.sent_to_caller()
        self.play(1.0)
        packets = self.sent_to_caller()
        self.assertGreaterEqual(len(packets), 48)
        self.assertEqual({p[1] & 0x7F for p in packets}, {8})
        self.retrieve()
        self.assertIsNone(session.feeding("a"))
        self.play(0.2)
        self.assertEqual(self.sent_to_caller(), [])
        self.deliver()
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.retriever.respond(self.retriever.expect_one("BYE"), 200)

    def test_music_stops_when_parked_party_leaves(self) -> None:
        """The parked party hanging up stops its music."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        self.park(callee_leg)
        self.assertIsNotNone(session.feeding("a"))
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.assertIsNone(session.feeding("a"))


class FakePrompts:
    """Digit prompts by id, each a file name."""

    def say_digits(self, digits: str) -> list[str]:
        """One id per digit."""
        return [f"digits/{d}" for d in digits]

    def path(self, prompt_id: str, rate: int = 8000) -> str:
        """The id is the path."""
        return prompt_id


class AnnounceTests(ParkTestCase):
    """The parker hears the slot's digits before the final NOTIFY."""

    def setUp(self) -> None:
        """Prompts of 100 ms each, a digit's level standing for the digit."""
        super().setUp()
        self.loaded: list[str] = []

        def load(path: str) -> Deferred[WavAudio]:
            self.loaded.append(path)
            level = 1000 * int(path.rsplit("/", 1)[1])
            return succeed(WavAudio(8000, 1, np.full(800, level, dtype=np.int16)))

        self.controller.media = MediaServices({}, FakePrompts(), load)

    def test_slot_said_then_notify(self) -> None:
        """1002 gets 7, 1, 300 ms of silence as PCMA from its relay port; then the final NOTIFY and BYE."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        port = self.clock.udpPorts[session.local_port("b")]
        port.written.clear()
        self.callee.in_dialog(
            callee_leg, "REFER", extra=[("Refer-To", f"<sip:70@{REALM}>")]
        )
        accepted, trying = self.callee.expect(202, "NOTIFY")
        self.callee.respond(trying, 200)
        self.assertEqual(self.loaded, ["digits/7", "digits/1"])
        for _ in range(24):
            self.clock.advance(0.02)
        self.deliver()
        self.quiet(self.callee)
        self.clock.advance(0.02)
        self.clock.advance(0.02)
        final = self.callee.expect_one("NOTIFY")
        self.assertEqual(final.body, b"SIP/2.0 200 Parked at 71\r\n")
        self.callee.respond(final, 200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        packets = [d for d, a in port.written if a == ("192.0.2.12", 5000)]
        # (800 + 800 + 2400) samples: 25 frames of 160.
        self.assertEqual(len(packets), 25)
        self.assertEqual({p[1] & 0x7F for p in packets}, {8})
        decoded = [g711.alaw_decode(p[12:]) for p in packets]
        # A-law keeps each level within a step: 7 (7000), then 1 (1000), then silence.
        levels = [int(np.median(d)) for d in (decoded[0], decoded[5], decoded[20])]
        for level, want in zip(levels, (7000, 1000, 0), strict=True):
            self.assertLess(abs(level - want), 64, levels)
        self.assertIsNone(session.feeding("b"))
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)

    def test_frames_cached(self) -> None:
        """A slot said once in a codec is not loaded again."""
        for _ in range(2):
            invite, leg, callee_leg = self.establish()
            self.callee.in_dialog(
                callee_leg, "REFER", extra=[("Refer-To", f"<sip:70@{REALM}>")]
            )
            accepted, trying = self.callee.expect(202, "NOTIFY")
            self.callee.respond(trying, 200)
            self.advance(0.6, step=0.02)
            final = self.callee.expect_one("NOTIFY")
            self.callee.respond(final, 200)
            self.callee.respond(self.callee.expect_one("BYE"), 200)
            self.caller.in_dialog(leg, "BYE")
            self.caller.expect(200)
        self.assertEqual(self.loaded, ["digits/7", "digits/1"])


class NoParkTests(CallTestCase):
    """Without a ``park:`` section nothing parks."""

    def test_no_lot(self) -> None:
        """The controller has no parking lot and the transfer module none either."""
        self.assertIsNone(self.controller.parking)
        self.assertIsNone(self.controller.transfers.parking)
