"""
Tests for :mod:`pbx.calls.hold`: holds pbx answers itself, with music on
hold for the party held, in whole calls through the B2BUA, in memory.
"""

from __future__ import annotations

import struct

import numpy as np

from pbx.calls.events import CallEvent
from pbx.media import g711
from pbx.media.codecs import PCMA, PCMU
from pbx.media.music import MusicClass
from pbx.media.playout import HoldMusic
from pbx.sip.message import Request, Response

from support.phones import CALLEE_SDP, CALLER_SDP, CallTestCase, Leg, audio, hold_sdp

CALLER_MEDIA = ("192.0.2.11", 4000)
CALLEE_MEDIA = ("192.0.2.12", 5000)
#: The callee's SDP choosing PCMU instead of PCMA.
CALLEE_PCMU = CALLEE_SDP.replace(b"RTP/AVP 8 101", b"RTP/AVP 0 101").replace(
    b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:0 PCMU/8000"
)


def ramp_class(name: str, seconds: float = 1.0) -> MusicClass:
    """A class whose track is a recognisable sawtooth at 8 kHz."""
    n = int(8000 * seconds)
    track = ((np.arange(n) % 400) - 200) / 400.0
    return MusicClass(name, 8000, track)


def rtp_fields(packet: bytes) -> tuple[int, bool, int, int, int, bytes]:
    """(payload type, marker, sequence, timestamp, SSRC, payload) of an RTP packet without extensions."""
    first, second, seq, ts, ssrc = struct.unpack("!BBHII", packet[:12])
    assert first == 0x80
    return second & 0x7F, bool(second & 0x80), seq, ts, ssrc, packet[12:]


class HoldTests(CallTestCase):
    """pbx answers a phone's hold and resume itself; the other phone hears music meanwhile."""

    def setUp(self) -> None:
        """The PBX of CallTestCase with music on hold: 1001's class ``sales``, everyone else ``default``."""
        super().setUp()
        self.classes = {
            "default": ramp_class("default"),
            "sales": ramp_class("sales", 0.5),
        }
        self.music = HoldMusic(
            self.classes,
            {"1001": "sales"},
            {"pcmu": PCMU(), "pcma": PCMA()},
            self.controller.media_clock,
        )
        self.controller.music = self.music
        self.events: list[CallEvent] = []
        self.controller.events.subscribe(self.events.append)

    def play(self, seconds: float) -> None:
        """Let ``seconds`` pass in 20 ms steps, as the reactor would tick."""
        for _ in range(round(seconds / 0.02)):
            self.clock.advance(0.02)

    def kinds(self) -> list[tuple[str, str]]:
        """(kind, leg) of the hold events published so far."""
        return [(e.kind, e.leg) for e in self.events if e.kind in ("held", "resumed")]

    def sent_to(self, leg: str, where: tuple[str, int]) -> list[bytes]:
        """The datagrams pbx sent from ``leg``'s RTP port to ``where`` since the last look (and forget them)."""
        port = self.clock.udpPorts[self.session().local_port(leg)]
        mine = [data for data, addr in port.written if addr == where]
        port.written = [(d, a) for d, a in port.written if a != where]
        return mine

    def hold(
        self,
        phone_leg: Leg,
        sdp: bytes,
        direction: str,
        version: int = 2,
        caller: bool = True,
    ) -> Response:
        """The caller (or callee) sends a hold re-INVITE; returns pbx's own 200 after checking the other phone got nothing."""
        phone, other = (
            (self.caller, self.callee) if caller else (self.callee, self.caller)
        )
        phone.in_dialog(phone_leg, "INVITE", body=hold_sdp(sdp, direction, version))
        trying, ok = phone.expect(100, 200)
        assert isinstance(ok, Response)
        phone.ack_reinvite(phone_leg)
        self.deliver()
        self.quiet(other)
        return ok

    def test_hold_answered_here(self) -> None:
        """
        A sendonly re-INVITE from the caller is answered 200 recvonly by pbx
        (the codec in use, pbx's port) and the callee gets no re-INVITE; a
        held event is published.
        """
        invite, leg, callee_leg = self.establish()
        session = self.session()
        ok = self.hold(leg, CALLER_SDP, "sendonly")
        host, port, formats, direction = audio(ok.body)
        self.assertEqual(
            (host, port, formats, direction),
            ("127.0.0.1", session.local_port("a"), ["8", "101"], "recvonly"),
        )
        self.assertEqual(ok.headers.get("Content-Type"), "application/sdp")
        self.assertIsNotNone(ok.headers.get("Contact"))
        self.assertEqual(self.kinds(), [("held", "a")])
        self.assertTrue(session.leg("a").rtp.held)
        self.hang_up(leg)

    def test_held_party_hears_music(self) -> None:
        """
        While the caller holds, the callee gets one RTP packet per 20 ms from
        pbx's leg-b port: its payload type (PCMA, 8), one SSRC, consecutive
        sequence numbers, timestamps 160 apart, the marker on the first, and
        the caller's class (``sales``) encoded in A-law.
        """
        invite, leg, callee_leg = self.establish()
        self.hold(leg, CALLER_SDP, "sendonly")
        self.sent_to("b", CALLEE_MEDIA)
        self.play(0.2)
        packets = [rtp_fields(p) for p in self.sent_to("b", CALLEE_MEDIA)]
        self.assertEqual(len(packets), 10)
        self.assertEqual({p[0] for p in packets}, {8})
        self.assertEqual(len({p[4] for p in packets}), 1)
        self.assertEqual(
            [(p[2] - packets[0][2]) % 65536 for p in packets], list(range(10))
        )
        self.assertEqual(
            [(p[3] - packets[0][3]) % 2**32 for p in packets],
            [160 * i for i in range(10)],
        )
        self.assertEqual([p[1] for p in packets], [True] + [False] * 9)
        heard = np.concatenate([g711.alaw_decode(p[5]) for p in packets])
        expected = self.classes["sales"].pcm(8000)[: len(heard)]
        self.assertGreater(
            np.corrcoef(heard.astype(float), expected.astype(float))[0, 1], 0.99
        )
        self.hang_up(leg)

    def test_caller_media_not_relayed_while_music(self) -> None:
        """The holding phone's RTP does not reach the held phone over its music; RTCP still does."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        self.hold(leg, CALLER_SDP, "sendonly")
        self.sent_to("b", CALLEE_MEDIA)
        session.leg("a").rtp.datagramReceived(b"\x80\x08" + b"\x00" * 170, CALLER_MEDIA)
        self.assertEqual(self.sent_to("b", CALLEE_MEDIA), [])
        session.leg("a").rtcp.datagramReceived(
            b"\x81\xc8" + b"\x00" * 26, ("192.0.2.11", 4001)
        )
        rtcp = self.clock.udpPorts[session.local_port("b") + 1].written
        self.assertEqual(rtcp, [(b"\x81\xc8" + b"\x00" * 26, ("192.0.2.12", 5001))])
        self.hang_up(leg)

    def test_resume_restores_relay(self) -> None:
        """
        The caller's sendrecv re-INVITE is answered sendrecv by pbx; the
        music stops and the caller's packets reach the callee unchanged again;
        a resumed event is published.
        """
        invite, leg, callee_leg = self.establish()
        session = self.session()
        self.hold(leg, CALLER_SDP, "sendonly")
        self.play(0.1)
        ok = self.hold(leg, CALLER_SDP, "sendrecv", 3)
        self.assertEqual(audio(ok.body)[2:], (["8", "101"], "sendrecv"))
        self.assertEqual(self.kinds(), [("held", "a"), ("resumed", "a")])
        self.sent_to("b", CALLEE_MEDIA)
        self.play(0.1)
        self.assertEqual(self.sent_to("b", CALLEE_MEDIA), [])
        packet = b"\x80\x08\x12\x34" + b"\x55" * 168
        session.leg("a").rtp.datagramReceived(packet, CALLER_MEDIA)
        self.assertEqual(self.sent_to("b", CALLEE_MEDIA), [packet])
        self.assertFalse(session.leg("a").rtp.held)
        self.assertEqual(self.music.listeners(), {"sales/pcma": 0})
        self.hang_up(leg)

    def test_inactive_and_null_address(self) -> None:
        """An inactive offer is answered inactive; ``c=0.0.0.0`` with sendrecv (RFC 2543 hold) recvonly."""
        invite, leg, callee_leg = self.establish()
        ok = self.hold(leg, CALLER_SDP, "inactive")
        self.assertEqual(audio(ok.body)[3], "inactive")
        null = CALLER_SDP.replace(b"c=IN IP4 192.0.2.11", b"c=IN IP4 0.0.0.0")
        ok = self.hold(leg, null, "sendrecv", 3)
        self.assertEqual(audio(ok.body)[3], "recvonly")
        self.assertEqual(self.kinds(), [("held", "a")])
        self.hang_up(leg)

    def test_callee_holds(self) -> None:
        """The callee's hold is answered by pbx too, and the caller hears the default class in its codec."""
        invite, leg, callee_leg = self.establish()
        ok = self.hold(callee_leg, CALLEE_SDP, "sendonly", caller=False)
        self.assertEqual(audio(ok.body)[2:], (["8", "101"], "recvonly"))
        self.sent_to("a", CALLER_MEDIA)
        self.play(0.1)
        packets = [rtp_fields(p) for p in self.sent_to("a", CALLER_MEDIA)]
        self.assertIn(len(packets), (4, 5))
        heard = np.concatenate([g711.alaw_decode(p[5]) for p in packets])
        expected = self.classes["default"].pcm(8000)[: len(heard)]
        self.assertGreater(
            np.corrcoef(heard.astype(float), expected.astype(float))[0, 1], 0.99
        )
        self.assertEqual(self.kinds(), [("held", "b")])
        self.hang_up(leg)

    def test_both_hold(self) -> None:
        """Music goes only to a phone that does not hold: both holding, nobody; the first resumes, it hears music."""
        invite, leg, callee_leg = self.establish()
        self.hold(leg, CALLER_SDP, "sendonly")
        self.hold(callee_leg, CALLEE_SDP, "sendonly", caller=False)
        self.sent_to("a", CALLER_MEDIA)
        self.sent_to("b", CALLEE_MEDIA)
        self.play(0.1)
        self.assertEqual(
            (self.sent_to("a", CALLER_MEDIA), self.sent_to("b", CALLEE_MEDIA)), ([], [])
        )
        self.hold(leg, CALLER_SDP, "sendrecv", 3)
        self.play(0.1)
        # The 20 ms clock was already running: the first tick comes within 20 ms.
        self.assertIn(len(self.sent_to("a", CALLER_MEDIA)), (4, 5))
        self.assertEqual(self.sent_to("b", CALLEE_MEDIA), [])
        self.hang_up(leg)

    def test_hold_dropping_codec_passed_on(self) -> None:
        """A hold offer without the codec in use is not a pure hold: it goes to the callee as before."""
        invite, leg, callee_leg = self.establish()
        only_pcmu = hold_sdp(CALLER_SDP, "sendonly").replace(
            b"RTP/AVP 0 8 101", b"RTP/AVP 0 101"
        )
        self.caller.in_dialog(leg, "INVITE", body=only_pcmu)
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        assert isinstance(reinvite, Request)
        self.assertEqual(audio(reinvite.body)[3], "sendonly")
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_PCMU, "recvonly"))
        self.callee.expect("ACK")
        self.assertEqual(
            audio(self.caller.expect_one(200).body)[2:], (["0", "101"], "recvonly")
        )
        self.caller.ack_reinvite(leg)
        self.assertEqual(self.music.listeners(), {})
        self.hang_up(leg)

    def test_codec_change_while_held_passed_on(self) -> None:
        """A resume that changes codec ends pbx's hold (music off) and goes to the callee."""
        invite, leg, callee_leg = self.establish()
        self.hold(leg, CALLER_SDP, "sendonly")
        pcmu = hold_sdp(CALLER_SDP, "sendrecv", 3).replace(
            b"RTP/AVP 0 8 101", b"RTP/AVP 0 101"
        )
        self.caller.in_dialog(leg, "INVITE", body=pcmu)
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        assert isinstance(reinvite, Request)
        self.assertEqual(self.music.listeners(), {"sales/pcma": 0})
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_PCMU, "sendrecv", 3))
        self.callee.expect("ACK")
        self.caller.expect(200)
        self.caller.ack_reinvite(leg)
        self.hang_up(leg)

    def test_held_party_changes_codec(self) -> None:
        """
        While the caller holds, the callee's re-INVITE to PCMU goes to the
        caller as before; once answered, the callee's music comes in PCMU
        (payload type 0) from the PCMU playout.
        """
        invite, leg, callee_leg = self.establish()
        self.hold(leg, CALLER_SDP, "sendonly")
        self.callee.in_dialog(
            callee_leg, "INVITE", body=hold_sdp(CALLEE_PCMU, "sendrecv", 2)
        )
        self.callee.expect(100)
        reinvite = self.caller.expect_one("INVITE")
        assert isinstance(reinvite, Request)
        pcmu_only = CALLER_SDP.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 0 101")
        self.caller.respond(reinvite, 200, body=hold_sdp(pcmu_only, "sendonly", 4))
        self.caller.expect("ACK")
        self.assertEqual(audio(self.callee.expect_one(200).body)[2], ["0", "101"])
        self.callee.ack_reinvite(callee_leg)
        self.assertEqual(self.music.listeners(), {"sales/pcma": 0, "sales/pcmu": 1})
        self.sent_to("b", CALLEE_MEDIA)
        self.play(0.1)
        packets = [rtp_fields(p) for p in self.sent_to("b", CALLEE_MEDIA)]
        self.assertEqual({p[0] for p in packets}, {0})
        heard = np.concatenate([g711.ulaw_decode(p[5]) for p in packets])
        # A playout of its own (a new codec): the class from its start.
        expected = self.classes["sales"].pcm(8000)[: len(heard)]
        self.assertGreater(
            np.corrcoef(heard.astype(float), expected.astype(float))[0, 1], 0.99
        )
        self.hang_up(leg)

    def test_hang_up_stops_music(self) -> None:
        """A call that ends while held leaves no listener and no media tick behind."""
        invite, leg, callee_leg = self.establish()
        self.hold(leg, CALLER_SDP, "sendonly")
        self.assertEqual(self.music.listeners(), {"sales/pcma": 1})
        self.hang_up(leg)
        self.assertEqual(self.music.listeners(), {"sales/pcma": 0})
        self.assertEqual(self.controller.media_clock.subscribers, 0)

    def test_update_hold(self) -> None:
        """A hold by UPDATE is answered by pbx the same way (no retransmission: UPDATE has no ACK)."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "UPDATE", body=hold_sdp(CALLER_SDP, "sendonly"))
        [ok] = self.caller.expect(200)
        assert isinstance(ok, Response)
        self.assertEqual(audio(ok.body)[3], "recvonly")
        self.quiet(self.callee)
        self.assertEqual(self.music.listeners(), {"sales/pcma": 1})
        self.hang_up(leg)
