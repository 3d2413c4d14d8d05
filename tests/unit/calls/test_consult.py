"""
Tests for :mod:`pbx.calls.consult`: attended transfer (``*2``) and
three-way calls (``*3``) keyed by SIP INFO, through the real controller
and relay, in memory.

1001 calls 1002; 1003 is the number keyed.  pbx has G.711 codecs and no
music on hold, so a transferee put aside is fed silence.
"""

from __future__ import annotations

import numpy as np

from pbx.calls.endpoint_media import MediaServices
from pbx.calls.events import CallEvent
from pbx.media import g711
from pbx.media.codecs import PCMA, PCMU
from pbx.media.relay import RelaySession
from pbx.media.rtp import RTPPacket, parse_rtp
from pbx.sip.message import Request

from support.phones import REALM, CallTestCase, Leg, Phone, audio

TARGET_SDP = (
    b"v=0\r\n"
    b"o=target 42 1 IN IP4 192.0.2.13\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.13\r\n"
    b"t=0 0\r\n"
    b"m=audio 6010 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)


class ConsultTestCase(CallTestCase):
    """A call 1001 -> 1002 with 1003 registered, pbx with codecs, transfer events collected."""

    def setUp(self) -> None:
        """Register 1003, give pbx G.711 codecs, collect ``transferred`` events."""
        super().setUp()
        self.controller.media = MediaServices(codecs={"pcmu": PCMU(), "pcma": PCMA()}, prompts=None,
                                              load=lambda path: None)  # type: ignore[arg-type,return-value]
        self.target = self.phone("1003", "192.0.2.13")
        self.transfers: list[CallEvent] = []
        self.controller.events.subscribe(self.transfers.append, ("transferred",))

    def parties(self) -> tuple[str, str]:
        """Who is in the one call in progress: (caller's seat, callee's seat)."""
        [call] = self.controller.calls.values()
        return call.caller, call.callee

    def press(self, phone: Phone, leg: Leg, keys: str, other: Phone) -> None:
        """``phone`` keys ``keys``, one INFO each (relayed to ``other``, which answers 200)."""
        for key in keys:
            info = f"Signal={key}\r\nDuration=100\r\n".encode()
            phone.in_dialog(leg, "INFO", body=info, extra=[("Content-Type", "application/dtmf-relay")])
            other.respond(other.expect_one("INFO"), 200)
            phone.expect(200)

    def consulted(self, keys: str = "*21003#") -> tuple[Leg, Leg, Request, Leg]:
        """1002 keys ``keys``; 1003 answers.  Returns 1001's, 1002's and 1003's legs and 1003's INVITE."""
        invite, leg, callee_leg = self.establish()
        self.press(self.callee, callee_leg, keys, self.caller)
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 180)
        self.target.respond(forked, 200, body=TARGET_SDP)
        self.target.expect("ACK")
        return leg, callee_leg, forked, self.target.answer_leg(forked)

    def fed(self, session: RelaySession) -> tuple[bool, bool]:
        """Whether legs a and b of ``session`` hear a feed instead of each other."""
        return session.feeding("a") is not None, session.feeding("b") is not None

    def bye(self, phone: Phone, leg: Leg) -> None:
        """``phone`` hangs up ``leg``; pbx answers 200."""
        phone.in_dialog(leg, "BYE")
        phone.expect(200)

    def send_tone(self, session: RelaySession, leg: str, source: tuple[str, int], frequency: float) -> None:
        """Half a second of a PCMU tone from ``source`` into ``leg`` of ``session``, 20 ms at a time."""
        endpoint = session.leg(leg).rtp
        t = np.arange(160) / 8000
        for n in range(25):
            pcm = (8000 * np.sin(2 * np.pi * frequency * (t + n * 0.02))).astype(np.int16)
            packet = RTPPacket(payload_type=0, sequence=n, timestamp=160 * n, ssrc=7, payload=g711.ulaw_encode(pcm))
            endpoint.datagramReceived(packet.to_bytes(), source)
            self.clock.advance(0.02)


class AttendedTests(ConsultTestCase):
    """``*2`` + number: the transferee waits, the transferor consults the target."""

    def test_consult_then_transfer(self) -> None:
        """1002 keys *21003#, talks to 1003 and hangs up: 1003 is re-INVITEd onto 1002's relay port and talks to 1001."""
        invite, leg, callee_leg = self.establish()
        [call] = self.controller.calls.values()
        session = self.session()
        self.press(self.callee, callee_leg, "*21003#", self.caller)
        forked = self.target.expect_one("INVITE")
        self.assertEqual(str(forked.from_.uri), f"sip:1002@{REALM}")
        host, port, formats, direction = audio(forked.body)
        # The target gets a relay session of its own, not a port of the call.
        self.assertNotIn(port, (session.local_port("a"), session.local_port("b")))
        self.assertEqual(self.fed(session), (True, True))  # 1001 waits, 1002 hears ringback
        self.target.respond(forked, 200, body=TARGET_SDP)
        self.target.expect("ACK")
        target_leg = self.target.answer_leg(forked)
        self.quiet(self.caller, self.callee)
        self.bye(self.callee, callee_leg)
        reinvite = self.target.expect_one("INVITE")
        self.assertEqual(reinvite.call_id, target_leg.call_id)
        self.assertEqual(audio(reinvite.body)[1], session.local_port("b"))
        self.target.respond(reinvite, 200, body=TARGET_SDP.replace(b" 1 IN", b" 2 IN"))
        self.target.expect("ACK")
        self.assertEqual(list(self.controller.calls.values()), [call])
        self.assertEqual(self.parties(), ("1001", "1003"))
        self.assertEqual(self.fed(session), (False, False))
        self.assertEqual(session.leg("b").rtp.remote, ("192.0.2.13", 6010))
        [event] = self.transfers
        self.assertEqual((event.detail["how"], event.detail["transferor"], event.detail["target"]),
                         ("attended", "1002", "1003"))
        self.quiet(self.caller)
        self.bye(self.caller, leg)
        self.target.respond(self.target.expect_one("BYE"), 200)
        self.assertIn(("b", "1002", "transferred to 1003"),
                      {(r.leg, r.callee, r.hangup_cause) for r in self.store.calls})

    def test_cancel_code_returns(self) -> None:
        """While consulting, 1002 keys *: 1003 gets BYE and 1001 and 1002 talk again through the plain relay."""
        leg, callee_leg, forked, target_leg = self.consulted()
        session = self.session()
        self.press(self.callee, callee_leg, "*", self.caller)
        bye = self.target.expect_one("BYE")
        self.assertEqual(bye.call_id, target_leg.call_id)
        self.target.respond(bye, 200)
        self.assertEqual(self.fed(session), (False, False))
        self.assertEqual(self.parties(), ("1001", "1002"))
        self.assertEqual(self.transfers, [])
        self.hang_up(leg)

    def test_target_hangs_up(self) -> None:
        """1003 hanging up while consulted puts 1002 back with 1001."""
        leg, callee_leg, forked, target_leg = self.consulted()
        session = self.session()
        self.bye(self.target, target_leg)
        self.assertEqual(self.fed(session), (False, False))
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_busy_target(self) -> None:
        """A busy target: 1002 hears a busy tone for a few seconds, then is back with 1001; the code still works later."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        self.press(self.callee, callee_leg, "*21003#", self.caller)
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 486)
        self.target.expect("ACK")
        written = session.leg("b").rtp.transport.written
        written.clear()
        self.advance(1.0, step=0.02)
        self.assertGreater(len(written), 40)  # the tone, from 1002's relay port
        self.assertEqual(self.fed(session), (True, True))
        self.advance(3.0)
        self.assertEqual(self.fed(session), (False, False))
        self.press(self.callee, callee_leg, "*21003#", self.caller)
        self.target.respond(self.target.expect_one("INVITE"), 486)
        self.target.expect("ACK")
        self.press(self.callee, callee_leg, "*", self.caller)  # ends the tone at once
        self.assertEqual(self.fed(session), (False, False))
        self.hang_up(leg)

    def test_unknown_number(self) -> None:
        """A number that is nobody's rings nothing; 1002 hears the congestion tone and is back."""
        invite, leg, callee_leg = self.establish()
        self.press(self.callee, callee_leg, "*29999#", self.caller)
        self.advance(4.0)
        self.quiet(self.target, self.caller, self.callee)
        self.assertEqual(self.fed(self.session()), (False, False))
        self.hang_up(leg)

    def test_transferor_leaves_while_target_rings(self) -> None:
        """1002 hangs up while 1003 rings: 1003 answering takes 1002's seat."""
        invite, leg, callee_leg = self.establish()
        self.press(self.callee, callee_leg, "*21003#", self.caller)
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 180)
        self.bye(self.callee, callee_leg)
        self.assertEqual([c.state for c in self.controller.calls.values()], ["confirmed"])
        self.target.respond(forked, 200, body=TARGET_SDP)
        ack, reinvite = self.target.expect("ACK", "INVITE")
        self.target.respond(reinvite, 200, body=TARGET_SDP.replace(b" 1 IN", b" 2 IN"))
        self.target.expect("ACK")
        self.assertEqual(self.parties()[1], "1003")
        self.bye(self.caller, leg)
        self.target.respond(self.target.expect_one("BYE"), 200)

    def test_call_ends_while_consulting(self) -> None:
        """1001 hanging up ends the call: 1002 and the consulted 1003 get BYE, every port is given back."""
        leg, callee_leg, forked, target_leg = self.consulted()
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        # 1001 was the transferee: its seat waits for 1003, who is re-INVITEd there.
        reinvite = self.target.expect_one("INVITE")
        self.target.respond(reinvite, 200, body=TARGET_SDP.replace(b" 1 IN", b" 2 IN"))
        self.target.expect("ACK")
        self.assertEqual(self.parties(), ("1003", "1002"))
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.target.respond(self.target.expect_one("BYE"), 200)


class ThreeWayTests(ConsultTestCase):
    """``*3`` + number: once the target answers, each of the three hears the other two."""

    def test_three_hear_each_other(self) -> None:
        """1001's voice reaches 1002 and 1003, 1003's reaches 1001 and 1002, each from the port it talks to."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        self.press(self.caller, leg, "*31003#", self.callee)
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 200, body=TARGET_SDP)
        self.target.expect("ACK")
        self.assertEqual(self.fed(session), (True, True))
        [other] = [s for s in self.relay_sessions() if s is not session]
        self.assertEqual(other.feeding("b") is not None, True)
        for port in (session.leg("a").rtp, session.leg("b").rtp, other.leg("b").rtp):
            port.transport.written.clear()
        self.send_tone(session, "a", ("192.0.2.11", 4000), 600.0)
        heard_by_callee = self.loudness(session.leg("b").rtp.transport.written)
        heard_by_target = self.loudness(other.leg("b").rtp.transport.written)
        self.assertGreater(heard_by_callee, 1000)
        self.assertGreater(heard_by_target, 1000)
        self.quiet(self.caller, self.callee, self.target)
        # The target hangs up: 1001 and 1002 are a plain two-party call again.
        self.bye(self.target, self.target.answer_leg(forked))
        self.assertEqual(self.fed(session), (False, False))
        self.hang_up(leg)

    def test_party_leaves_three_way(self) -> None:
        """1002 hangs up a three-way call: 1003 takes its seat and 1001 and 1003 talk on."""
        invite, leg, callee_leg = self.establish()
        self.press(self.caller, leg, "*31003#", self.callee)
        forked = self.target.expect_one("INVITE")
        self.target.respond(forked, 200, body=TARGET_SDP)
        self.target.expect("ACK")
        self.bye(self.callee, callee_leg)
        reinvite = self.target.expect_one("INVITE")
        self.target.respond(reinvite, 200, body=TARGET_SDP.replace(b" 1 IN", b" 2 IN"))
        self.target.expect("ACK")
        self.assertEqual(self.parties(), ("1001", "1003"))
        self.assertEqual(self.fed(self.session()), (False, False))
        [event] = self.transfers
        self.assertEqual(event.detail["how"], "three-way")
        self.bye(self.caller, leg)
        self.target.respond(self.target.expect_one("BYE"), 200)

    def test_no_codecs_no_codes(self) -> None:
        """Without media services pbx cannot mix: *3 and a number are just relayed keys."""
        self.controller.media = None
        invite, leg, callee_leg = self.establish()
        self.press(self.caller, leg, "*31003#", self.callee)
        self.advance(5)
        self.quiet(self.target)
        self.hang_up(leg)

    # -- plumbing ---------------------------------------------------------------

    def relay_sessions(self) -> list[RelaySession]:
        """Every relay session open now."""
        return list(self.relay._sessions)  # type: ignore[attr-defined]

    @staticmethod
    def loudness(written: list[tuple[bytes, tuple[str, int]]]) -> float:
        """The loudest sample of the PCMU packets written (RMS of the last ones)."""
        pcm = [g711.ulaw_decode(parse_rtp(data).payload) for data, addr in written[-10:]]
        samples = np.concatenate(pcm).astype(np.float64) if pcm else np.zeros(1)
        return float(np.sqrt(np.mean(samples**2)))


