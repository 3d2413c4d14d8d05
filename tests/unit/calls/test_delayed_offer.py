"""
Tests for calls whose INVITE has no SDP (delayed offer, RFC 3261 §13.2.1,
§13.3.1; RFC 3264 §5), in memory: :mod:`pbx.calls.delayed_offer`.

The PBX is the one of :mod:`support.app_calls` (scripted phones, PCMU and PCMA
media services, the echo feature), with a diverter and a fake voicemail
from :mod:`support.divert` where a test needs them.  The caller's INVITE
carries no body; pbx's 200 carries the offer (its own, or the callee's
through the relay), and the caller's ACK the answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zope.interface import implementer

from pbx.calls.app_call import ApplicationCall
from pbx.calls.call import Call, refusal
from pbx.calls.endpoint_media import own_codecs
from pbx.calls.media import MediaError
from pbx.calls.own_offer import accept_answer
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import Channel
from pbx.media.codecs import PCMA, PCMU
from pbx.media.offer_answer import make_offer
from pbx.media.sdp import parse_sdp
from pbx.sip import timers
from pbx.sip.message import Request, Response
from pbx.testing import FakeUDPPort

from support.app_calls import CALLER_RTP, TICK, AppCallTestCase, frames, offer
from support.divert import DivertTestCase
from support.phones import CALLEE_SDP, RTP_MAX, RTP_MIN, Leg, Phone, audio, hold_sdp

#: The caller's answers to pbx's offer (0 8 101): PCMA with telephone-event, PCMU alone.
PCMA_ANSWER = offer("8 101", "8 PCMA/8000", "101 telephone-event/8000")
PCMU_ANSWER = offer("0", "0 PCMU/8000")
#: An answer naming nothing pbx offered.
G729_ANSWER = offer("18", "18 G729/8000")
#: A callee's offer of PCMU only.
CALLEE_PCMU = CALLEE_SDP.replace(b"RTP/AVP 8 101", b"RTP/AVP 0 101").replace(
    b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:0 PCMU/8000"
)


@implementer(IDialplanApplication)
class Keys:
    """Collects one digit, notes it, and waits for the caller to hang up."""

    name = "keys"

    def __init__(self) -> None:
        self.digits: list[str] = []

    async def run(self, channel: Channel, args: Any) -> None:
        """Note one digit."""
        self.digits.append(await channel.collect_digits(1, timeout=10))
        await channel.wait_for_hangup()


def confirm_with(
    phone: Phone, invite: Request, leg: Leg, ok: Response, body: bytes
) -> Request:
    """Take a 2xx into the leg and ACK it with ``body`` (the answer, or nothing)."""
    leg.remote = ok.headers.get("To") or ""
    leg.target = str(ok.contacts[0].uri)
    ack = phone.request_to("ACK", leg.target, leg, body=body, cseq=invite.cseq.number)
    phone.send(ack)
    return ack


class DelayedOfferCase(AppCallTestCase):
    """The PBX of support.app_calls, called with INVITEs that carry no SDP."""

    def offerless(self, number: str) -> tuple[Request, Leg, Response]:
        """The caller calls ``number`` without SDP (through the 407) and gets 100 and 200."""
        return self.dial(number, b"")

    def answered(
        self, number: str, answer: bytes = PCMA_ANSWER
    ) -> tuple[Leg, FakeUDPPort, Response]:
        """A confirmed call to ``number``: its leg, pbx's RTP socket and pbx's 200."""
        invite, leg, ok = self.offerless(number)
        confirm_with(self.caller, invite, leg, ok, answer)
        self.assertEqual(
            [c.state for c in self.controller.calls.values()], ["confirmed"]
        )
        # Half a frame: from now on each TICK of media() holds exactly one playout tick.
        self.clock.advance(TICK / 2)
        return leg, self.clock.udpPorts[audio(ok.body)[1]], ok


class ApplicationOfferTests(DelayedOfferCase):
    """Calls pbx answers itself: our 200 offers, the ACK answers, then the application runs."""

    def test_offer_in_200(self) -> None:
        """
        An INVITE without SDP to *43 gets 200 offering PCMU, PCMA and
        telephone-event at a bound port; nothing is played before the ACK.
        """
        invite, leg, ok = self.offerless("*43")
        self.assertEqual(ok.headers.get("Content-Type"), "application/sdp")
        sdp = parse_sdp(ok.body)
        [media] = sdp.media
        self.assertEqual(list(media.formats), ["0", "8", "101"])
        self.assertEqual(
            media.rtpmap,
            {
                "0": ("PCMU", 8000, 1),
                "8": ("PCMA", 8000, 1),
                "101": ("telephone-event", 8000, 1),
            },
        )
        self.assertEqual(media.ptime, 20)
        host, port, _, direction = audio(ok.body)
        self.assertEqual((host, direction), ("127.0.0.1", "sendrecv"))
        self.assertTrue(RTP_MIN <= port <= RTP_MAX)
        self.assertTrue(self.clock.udpPorts[port].listening)
        [call] = self.controller.calls.values()
        assert isinstance(call, ApplicationCall)
        self.assertTrue(call.delayed)
        self.assertEqual(call.state, "answered")
        self.media(1)
        self.assertEqual(self.clock.udpPorts[port].written, [])
        self.assertEqual({m.status for m in self.caller.received()}, {200})
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.bye(leg)

    def test_offer_order_is_pbx_offer_order(self) -> None:
        """The offer lists pbx's codecs in the order of the calls pbx places: G.711 first, PCMU before PCMA."""
        self.controller.media.codecs = {"pcma": PCMA(), "pcmu": PCMU()}
        invite, leg, ok = self.offerless("*43")
        self.assertEqual(audio(ok.body)[2], ["0", "8", "101"])
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.bye(leg)

    def test_answer_in_ack_starts_echo(self) -> None:
        """
        An ACK answering PCMA starts the echo application: the intro is sent
        as PCMA to the address of the answer, then the caller's audio comes
        back; the record names PCMA.
        """
        leg, port, ok = self.answered("*43")
        intro = frames("echo/intro")
        self.media(intro * TICK + 0.1)
        packets = self.sent(port)
        self.assertEqual(len(packets), intro)
        self.assertEqual({p.payload_type for p in packets}, {8})
        encoder = PCMA().new_encoder()
        payloads = [
            encoder.encode(np.full(160, 1000 * (i % 7 + 1), dtype=np.int16))
            for i in range(20)
        ]
        for payload in payloads:
            self.rtp(port, payload, pt=8)
            self.media(TICK)
        self.media(0.4)
        echoed = [p for p in self.sent(port) if p.payload_type == 8]
        decoder = PCMA().new_decoder()
        self.assertEqual(
            [decoder.decode(p.payload).tolist() for p in echoed[:20]],
            [decoder.decode(p).tolist() for p in payloads],
        )
        self.bye(leg)
        [record] = self.store.calls
        self.assertEqual((record.disposition, record.codecs), ("ANSWERED", "PCMA"))

    def test_first_offered_codec_of_answer(self) -> None:
        """The answer's first codec that pbx offered is used: PCMU for an answer of G.729, PCMU."""
        leg, port, ok = self.answered(
            "*43", offer("18 0", "18 G729/8000", "0 PCMU/8000")
        )
        self.media(0.5)
        self.assertEqual({p.payload_type for p in self.sent(port)}, {0})
        self.bye(leg)
        self.assertEqual(self.store.calls[0].codecs, "PCMU")

    def test_rfc4733_digit(self) -> None:
        """An answer with telephone-event: RFC 4733 digits reach the application."""
        keys = Keys()
        self.controller.applications["beep-return"] = keys  # what *45 runs
        leg, port, ok = self.answered("*45")
        self.press(port, "5")
        self.assertEqual(keys.digits, ["5"])
        self.bye(leg)

    def test_info_digit_without_telephone_event(self) -> None:
        """An answer without telephone-event: a SIP INFO digit reaches the application at once."""
        keys = Keys()
        self.controller.applications["beep-return"] = keys  # what *45 runs
        leg, port, ok = self.answered("*45", PCMU_ANSWER)
        self.caller.in_dialog(
            leg,
            "INFO",
            body=b"Signal=7\r\nDuration=160\r\n",
            extra=[("Content-Type", "application/dtmf-relay")],
        )
        self.caller.expect(200)
        self.media(0.1)
        self.assertEqual(keys.digits, ["7"])
        self.bye(leg)

    def test_rtp_before_ack(self) -> None:
        """RTP arriving between our 200 and the ACK is dropped quietly; the call goes on."""
        invite, leg, ok = self.offerless("*43")
        port = self.clock.udpPorts[audio(ok.body)[1]]
        for _ in range(5):
            self.rtp(port, b"\xff" * 160)
            self.media(TICK)
        confirm_with(self.caller, invite, leg, ok, PCMU_ANSWER)
        self.media(0.5)
        self.assertTrue(self.sent(port))
        self.bye(leg)

    def test_ack_without_sdp(self) -> None:
        """
        An ACK without an answer leaves no session (RFC 3264 §5): pbx sends
        BYE, the application never runs, the port is released.
        """
        invite, leg, ok = self.offerless("*43")
        port = self.clock.udpPorts[audio(ok.body)[1]]
        confirm_with(self.caller, invite, leg, ok, b"")
        bye = self.caller.expect_one("BYE")
        self.assertEqual((bye.call_id, bye.from_.tag), (invite.call_id, ok.to.tag))
        self.caller.respond(bye, 200)
        self.assertEqual(port.written, [])
        self.assertFalse(port.listening)
        [record] = self.store.calls
        self.assertEqual(
            (record.hangup_side, record.hangup_cause, record.codecs),
            ("a", "no answer in ACK", ""),
        )
        self.assertEqual(self.allocator.in_use, 0)

    def test_ack_with_unusable_answer(self) -> None:
        """An ACK whose answer names no codec pbx offered gets BYE too."""
        invite, leg, ok = self.offerless("*43")
        confirm_with(self.caller, invite, leg, ok, G729_ANSWER)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(self.store.calls[0].hangup_cause, "no answer in ACK")

    def test_ok_retransmitted_until_ack(self) -> None:
        """The 200 with our offer is resent after T1, 2T1, 4T1 until the ACK, then never again."""
        invite, leg, ok = self.offerless("*43")
        start = self.clock.seconds()
        times = []
        for _ in range(int(4 / 0.25)):
            self.advance(0.25)
            for message in self.caller.received():
                self.assertEqual((message.status, message.body), (200, ok.body))
                times.append(self.clock.seconds() - start)
        self.assertEqual(times, [0.5, 1.5, 3.5])
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.advance(10)
        self.quiet(self.caller)
        self.bye(leg)

    def test_ack_retransmission_ignored(self) -> None:
        """A second ACK (the caller saw our 200 twice) changes nothing."""
        invite, leg, ok = self.offerless("*43")
        ack = confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.caller.send(ack)
        self.quiet(self.caller)
        [call] = self.controller.calls.values()
        self.assertEqual((call.state, call.codecs), ("confirmed", "PCMA"))
        self.bye(leg)

    def test_no_ack(self) -> None:
        """A caller that never ACKs gets BYE after 64*T1; the application never ran."""
        invite, leg, ok = self.offerless("*43")
        port = self.clock.udpPorts[audio(ok.body)[1]]
        self.advance(timers.TIMER_H - 0.25)
        self.assertEqual({m.status for m in self.caller.received()}, {200})
        self.advance(0.25)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(port.written, [])
        [record] = self.store.calls
        self.assertEqual((record.hangup_side, record.hangup_cause), ("a", "no ACK"))
        self.assertEqual(self.allocator.in_use, 0)

    def test_cancel_after_our_200(self) -> None:
        """A CANCEL crossing our 200 gets 200 and changes nothing (§9.2); the ACK's answer starts the call."""
        invite, leg, ok = self.offerless("*43")
        self.caller.cancel(invite)
        self.caller.expect(200)
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.assertEqual(
            [c.state for c in self.controller.calls.values()], ["confirmed"]
        )
        self.bye(leg)

    def test_shutdown_before_ack(self) -> None:
        """pbx stopping while it waits for the ACK: the BYE goes once the ACK comes; no application runs."""
        invite, leg, ok = self.offerless("*43")
        port = self.clock.udpPorts[audio(ok.body)[1]]
        self.controller.stop()
        self.quiet(self.caller)
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(port.written, [])
        self.assertEqual(self.store.calls[0].hangup_cause, "shutdown")

    def test_with_sdp_unchanged(self) -> None:
        """An INVITE with SDP is still answered by the plain application call."""
        invite, leg, ok = self.dial("*43")
        [call] = self.controller.calls.values()
        assert isinstance(call, ApplicationCall)
        self.assertFalse(call.delayed)
        self.caller.confirm(invite, leg, ok)
        self.bye(leg)


class B2BUAOfferTests(DelayedOfferCase):
    """
    Calls through the B2BUA: the callee offers in its 2xx, pbx passes the
    offer on in its 200, and the caller's answer reaches the callee in the
    ACK pbx holds back until then.
    """

    def ring_offerless(self, *callees: Phone) -> tuple[Request, Leg, list[Request]]:
        """The caller calls 1002 without SDP; each of ``callees`` gets an INVITE."""
        return self.ring(*callees, body=b"")

    def offered(self) -> tuple[Request, Leg, Request, Response]:
        """
        The callee answers with its offer (PCMA, telephone-event): the
        caller gets 180 and 200; the callee no ACK yet.  Returns (caller's
        INVITE, caller's leg, forked INVITE, 200 to the caller).
        """
        invite, leg, [forked] = self.ring_offerless()
        self.callee.respond(forked, 180)
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.quiet(self.callee)
        ringing, ok = self.caller.expect(180, 200)
        self.assertEqual(ok.to.tag, ringing.to.tag)
        return invite, leg, forked, ok

    def connect_b2bua(self, answer: bytes = PCMA_ANSWER) -> tuple[Leg, Request]:
        """A confirmed offer-less call; returns the caller's leg and the callee's ACK."""
        invite, leg, forked, ok = self.offered()
        confirm_with(self.caller, invite, leg, ok, answer)
        ack = self.callee.expect_one("ACK")
        self.assertEqual(
            [c.state for c in self.controller.calls.values()], ["confirmed"]
        )
        return leg, ack

    def test_invite_to_callee_without_sdp(self) -> None:
        """The callee's INVITE carries no SDP either (the offer is left to it)."""
        invite, leg, [forked] = self.ring_offerless()
        self.assertEqual(forked.body, b"")
        self.assertIsNone(forked.headers.get("Content-Type"))
        [call] = self.controller.calls.values()
        assert isinstance(call, Call)
        self.assertTrue(call.delayed)
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.abandon(invite, (self.callee, forked))

    def test_callee_offer_relayed(self) -> None:
        """
        The callee's offer reaches the caller in our 200, pointing at the
        relay's port of the caller's leg, its codecs first and pbx's others
        after them; the relay learnt the callee's address.
        """
        invite, leg, forked, ok = self.offered()
        session = self.session()
        self.assertEqual(ok.headers.get("Content-Type"), "application/sdp")
        host, port, formats, direction = audio(ok.body)
        self.assertEqual(
            (host, port, direction), ("127.0.0.1", session.local_port("a"), "sendrecv")
        )
        self.assertEqual(formats[:2], ["8", "101"])
        self.assertIn("0", formats)
        self.assertEqual(session.leg("b").rtp.remote, ("192.0.2.12", 5000))
        self.assertEqual(self.controller.calls[invite.call_id].state, "answered")
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.callee.expect("ACK")
        self.hang_up(leg)

    def test_answer_in_callee_ack(self) -> None:
        """
        The caller's answer in its ACK becomes the callee's ACK's SDP: the
        relay's port of the callee's leg, the codec the caller chose; the
        relay learnt the caller's address and the records name PCMA.
        """
        leg, ack = self.connect_b2bua()
        session = self.session()
        forked = self.answered_invite()
        self.assertEqual(str(ack.cseq), f"{forked.cseq.number} ACK")
        self.assertEqual((ack.call_id, ack.to.tag), (forked.call_id, self.callee.tag))
        self.assertEqual(ack.headers.get("Content-Type"), "application/sdp")
        host, port, formats, direction = audio(ack.body)
        self.assertEqual(
            (host, port, formats, direction),
            ("127.0.0.1", session.local_port("b"), ["8", "101"], "sendrecv"),
        )
        self.assertEqual(session.leg("a").rtp.remote, CALLER_RTP)
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)
        self.assertEqual({r.codecs for r in self.store.calls}, {"PCMA"})
        self.assertEqual({r.disposition for r in self.store.calls}, {"ANSWERED"})

    def test_caller_chooses_codec_callee_lacks(self) -> None:
        """A caller answering with PCMU, which only pbx added to the offer: the callee is answered PCMA and the relay transcodes."""
        leg, ack = self.connect_b2bua(PCMU_ANSWER)
        self.assertEqual(audio(ack.body)[2], ["8"])
        [call] = self.controller.calls.values()
        self.assertTrue(call.media.transcoding)
        self.hang_up(leg)

    def test_callee_2xx_retransmitted_before_caller_ack(self) -> None:
        """The callee's 200, resent while the caller's answer is awaited, gets no ACK and is not passed on."""
        invite, leg, forked, ok = self.offered()
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.quiet(self.caller, self.callee)
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        ack = self.callee.expect_one("ACK")
        # Resent once more (our ACK got lost): the same ACK, with the answer.
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        again = self.callee.expect_one("ACK")
        self.assertEqual((again.body, str(again.cseq)), (ack.body, str(ack.cseq)))
        self.quiet(self.caller)
        self.hang_up(leg)

    def test_ok_retransmitted_until_ack(self) -> None:
        """Our 200 with the callee's offer is resent after T1, 2T1, 4T1... until the caller's ACK."""
        invite, leg, forked, ok = self.offered()
        start = self.clock.seconds()
        times = []
        for _ in range(int(8 / 0.25)):
            self.advance(0.25)
            for message in self.caller.received():
                self.assertEqual((message.status, message.body), (200, ok.body))
                times.append(self.clock.seconds() - start)
        self.assertEqual(times, [0.5, 1.5, 3.5, 7.5])
        self.quiet(self.callee)
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.callee.expect("ACK")
        self.advance(10)
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_ack_without_sdp(self) -> None:
        """
        A caller ACK without an answer: the callee is ACKed with an answer
        refusing its stream, then both get BYE.
        """
        invite, leg, forked, ok = self.offered()
        confirm_with(self.caller, invite, leg, ok, b"")
        ack, bye = self.callee.expect("ACK", "BYE")
        [stream] = parse_sdp(ack.body).media
        self.assertEqual((stream.port, list(stream.formats)), (0, ["8", "101"]))
        self.callee.respond(bye, 200)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(
            {(r.leg, r.hangup_side, r.hangup_cause) for r in self.store.calls},
            {("a", "a", "no answer in ACK"), ("b", "a", "no answer in ACK")},
        )
        self.assertEqual(self.relay.sessions, 0)

    def test_ack_with_unusable_answer(self) -> None:
        """A caller answer naming no codec of the offer ends the call the same way."""
        invite, leg, forked, ok = self.offered()
        confirm_with(self.caller, invite, leg, ok, G729_ANSWER)
        ack, bye = self.callee.expect("ACK", "BYE")
        self.assertEqual(parse_sdp(ack.body).media[0].port, 0)
        self.callee.respond(bye, 200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)

    def test_no_ack(self) -> None:
        """A caller that never ACKs: at 64*T1 the callee gets its ACK (refusing) and BYE, the caller BYE."""
        invite, leg, forked, ok = self.offered()
        self.advance(timers.TIMER_H - 0.25)
        self.assertEqual({m.status for m in self.caller.received()}, {200})
        self.quiet(self.callee)
        self.advance(0.25)
        ack, bye = self.callee.expect("ACK", "BYE")
        self.assertEqual(parse_sdp(ack.body).media[0].port, 0)
        self.callee.respond(bye, 200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)
        self.assertEqual(self.store.calls[0].hangup_cause, "no ACK")

    def test_callee_bye_before_caller_ack(self) -> None:
        """A callee that gives up waiting and sends BYE: the caller gets BYE, the callee no ACK."""
        invite, leg, forked, ok = self.offered()
        self.callee.in_dialog(self.callee.answer_leg(forked), "BYE")
        self.callee.expect(200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)
        self.quiet(self.callee)

    def test_caller_cancels(self) -> None:
        """CANCEL before any answer: 200 and 487 to the caller, CANCEL to the ringing callee, as with SDP."""
        invite, leg, [forked] = self.ring_offerless()
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.abandon(invite, (self.callee, forked))
        self.assertEqual(self.store.calls[0].disposition, "CANCELLED")

    def test_answer_after_cancel(self) -> None:
        """A callee 200 crossing the CANCEL is ACKed with an answer refusing its offer and sent BYE."""
        invite, leg, [forked] = self.ring_offerless()
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.caller.cancel(invite)
        self.caller.ack_failure(invite, self.caller.expect(200, 487)[1])
        self.callee.expect("CANCEL")
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        ack, bye = self.callee.expect("ACK", "BYE")
        self.assertEqual(parse_sdp(ack.body).media[0].port, 0)
        self.callee.respond(bye, 200)
        # Resent 200: the ACK again, no second BYE.
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.assertEqual(self.callee.expect_one("ACK").body, ack.body)

    def test_second_answer_turned_down(self) -> None:
        """A second phone answering in the race gets an ACK refusing its offer and BYE; the first one wins."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, [desk, cell] = self.ring_offerless(self.callee, mobile)
        mobile.respond(cell, 180)
        self.callee.respond(desk, 200, body=CALLEE_SDP)
        mobile.expect("CANCEL")
        mobile.respond(cell, 200, body=CALLEE_PCMU)
        ack, bye = mobile.expect("ACK", "BYE")
        self.assertEqual(parse_sdp(ack.body).media[0].port, 0)
        mobile.respond(bye, 200)
        ok = self.caller.expect(180, 200)[1]
        self.assertEqual(audio(ok.body)[2][:2], ["8", "101"])
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.callee.expect("ACK")
        self.hang_up(leg)

    def test_unusable_offer_fails_fork(self) -> None:
        """
        A callee 2xx without an offer is ACKed and hung up; with no other
        phone left the caller gets 488 (nothing diverts here).
        """
        invite, leg, [forked] = self.ring_offerless()
        self.callee.respond(forked, 200)
        ack, bye = self.callee.expect("ACK", "BYE")
        self.assertEqual(ack.body, b"")
        self.callee.respond(bye, 200)
        refused = self.caller.expect_one(488)
        self.caller.ack_failure(invite, refused)

    def test_unusable_offer_other_fork_continues(self) -> None:
        """A phone whose 2xx has unparsable SDP is hung up; another phone of the callee can still answer."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, [desk, cell] = self.ring_offerless(self.callee, mobile)
        mobile.respond(cell, 200, body=b"v=0\r\nnot sdp\r\n")
        mobile.respond(mobile.expect("ACK", "BYE")[1], 200)
        self.quiet(self.caller)
        self.callee.respond(desk, 200, body=CALLEE_SDP)
        ok = self.caller.expect_one(200)
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.callee.expect("ACK")
        self.hang_up(leg)

    def test_early_sdp_not_an_answer(self) -> None:
        """A 183 with SDP is no answer to an offer-less INVITE (RFC 6337 §3.1): the caller gets 180 without SDP."""
        invite, leg, [forked] = self.ring_offerless()
        self.callee.respond(forked, 183, body=CALLEE_SDP)
        progress = self.caller.expect_one(180)
        self.assertEqual(progress.body, b"")
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        ok = self.caller.expect_one(200)
        confirm_with(self.caller, invite, leg, ok, PCMA_ANSWER)
        self.callee.expect("ACK")
        self.hang_up(leg)

    def test_hold_afterwards(self) -> None:
        """Once confirmed, the caller's re-INVITE to hold works as in any call: offer relayed, answer passed back."""
        leg, ack = self.connect_b2bua()
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(PCMA_ANSWER, "sendonly"))
        reinvite = self.callee.expect_one("INVITE")
        self.assertEqual(audio(reinvite.body)[3], "sendonly")
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "recvonly"))
        self.callee.expect("ACK")
        ok = self.caller.expect(100, 200)[1]
        self.assertEqual(audio(ok.body)[3], "recvonly")
        self.caller.ack_reinvite(leg)
        self.assertTrue(self.session().leg("a").rtp.held)
        self.hang_up(leg)

    def test_with_sdp_unchanged(self) -> None:
        """An INVITE with SDP still makes a plain call: the callee gets the offer and its 200 is ACKed at once."""
        invite, leg, [forked] = self.ring()
        [call] = self.controller.calls.values()
        assert isinstance(call, Call)
        self.assertFalse(call.delayed)
        self.assertTrue(forked.body)
        self.answer(self.callee, forked)
        self.caller.confirm(invite, leg, self.caller.expect(180, 200)[1])
        self.hang_up(leg)


class DivertedOfferTests(DelayedOfferCase, DivertTestCase):
    """An offer-less call nobody answers reaches voicemail, which offers in its 200."""

    def test_no_answer_to_voicemail(self) -> None:
        """
        After the ring timeout the voicemail application answers the same
        INVITE with its offer, in the dialog of the 180; the ACK's answer
        starts it.
        """
        invite, leg, [forked] = self.ring(body=b"")
        self.callee.respond(forked, 180)
        ringing = self.caller.expect_one(180)
        self.advance(30)
        self.cancelled_by_pbx(forked)
        ok = self.caller.expect_one(200)
        self.assertEqual(ok.to.tag, ringing.to.tag)
        self.assertEqual(audio(ok.body)[2], ["0", "8", "101"])
        [call] = self.controller.calls.values()
        assert isinstance(call, ApplicationCall)
        self.assertTrue(call.delayed)
        self.assertEqual(self.voicemail.calls, [])
        confirm_with(self.caller, invite, leg, ok, PCMU_ANSWER)
        self.voicemail_got("1002", "no_answer")
        self.bye(leg)
        self.assertEqual(self.store.calls[-1].codecs, "PCMU")


class HelperTests(DelayedOfferCase):
    """The pure helpers: the refusing answer and reading an answer to our offer."""

    def test_refusal(self) -> None:
        """A refusal keeps every m= line, with port 0 and the offered formats (RFC 3264 §6)."""
        sdp = parse_sdp(refusal(parse_sdp(CALLEE_SDP), "127.0.0.1"))
        [stream] = sdp.media
        self.assertEqual(
            (stream.media, stream.port, stream.proto, list(stream.formats)),
            ("audio", 0, "RTP/AVP", ["8", "101"]),
        )

    def test_accept_answer(self) -> None:
        """The first offered codec of the answer, the telephone-event type and the RTP address are read."""
        ours = make_offer(
            codecs=[s for s, _ in self.offered_codecs()],
            local_address="127.0.0.1",
            port=30000,
            session_id=1,
            version=1,
        )
        accepted = accept_answer(
            ours, self.offered_codecs(), offer("8 0", "8 PCMA/8000", "0 PCMU/8000")
        )
        self.assertEqual(
            (accepted.spec.encoding, accepted.spec.payload_type, accepted.remote),
            ("PCMA", 8, CALLER_RTP),
        )
        self.assertIsNone(accepted.telephone_event)
        for bad in (b"", b"garbage", G729_ANSWER):
            with self.assertRaises(MediaError):
                accept_answer(ours, self.offered_codecs(), bad)

    def offered_codecs(self) -> list[Any]:
        """What pbx offers with PCMU and PCMA."""
        return own_codecs({"pcmu": PCMU(), "pcma": PCMA()})
