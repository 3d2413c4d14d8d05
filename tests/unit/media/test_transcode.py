"""Tests for transcoding calls whose legs share no codec."""

from __future__ import annotations

from typing import Any

import numpy as np

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.media import CallMedia, extend_offer
from pbx.media.g711 import alaw_decode, ulaw_encode
from pbx.media.rtp import RTPPacket, parse_rtp
from pbx.media.sdp import parse_sdp
from pbx.media.transcode import RTPTranscoder
from pbx.plugin_loader import discover_codecs

CODECS = discover_codecs()

PCMU_ONLY = (
    b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)
G722_ANSWER = (
    b"v=0\r\no=b 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 5000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)
PCMU_ANSWER = PCMU_ONLY.replace(b"o=a", b"o=b").replace(b"4000", b"5000")


def tone(hz: float, n: int = 160, rate: int = 8000) -> np.ndarray:
    """``n`` samples of a sine at ``hz``."""
    return (np.sin(2 * np.pi * hz * np.arange(n) / rate) * 8000).astype(np.int16)


def peak_hz(samples: np.ndarray, rate: int = 8000) -> float:
    """The strongest frequency of ``samples``."""
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    return float(np.argmax(spectrum) * rate / len(samples))


class FakeSession:
    """Records what CallMedia asks of the relay session."""

    def __init__(self) -> None:
        self.transforms: dict[str, Any] = {}
        self.remotes: dict[str, tuple[str, int]] = {}

    def set_remote(self, leg: str, host: str, port: int) -> None:
        """Remember."""
        self.remotes[leg] = (host, port)

    def hold(self, leg: str) -> None:
        """Nothing."""

    def unhold(self, leg: str) -> None:
        """Nothing."""

    def local_port(self, leg: str) -> int:
        """Fixed ports."""
        return 30000 if leg == "a" else 30002

    def set_transform(self, leg: str, transform: Any) -> None:
        """Remember."""
        self.transforms[leg] = transform


class RTPTranscoderTests(SynchronousTestCase):
    """One direction of a transcoded call, packet by packet."""

    def test_pcmu_to_pcma_keeps_tone_and_header(self) -> None:
        """A PCMU packet becomes a PCMA packet with the same tone, sequence, SSRC and marker."""
        t = RTPTranscoder(CODECS["pcmu"], 0, CODECS["pcma"], 8)
        out = []
        for i in range(5):
            packet = RTPPacket(0, 100 + i, 160 * i, 0x1234, ulaw_encode(tone(1000)), i == 0)
            data = t(packet.to_bytes())
            assert data is not None
            out.append(parse_rtp(data))
        self.assertEqual([p.payload_type for p in out], [8] * 5)
        self.assertEqual([p.sequence for p in out], [100, 101, 102, 103, 104])
        self.assertEqual({p.ssrc for p in out}, {0x1234})
        self.assertTrue(out[0].marker)
        pcm = np.concatenate([alaw_decode(p.payload) for p in out[1:]])
        self.assertLessEqual(abs(peak_hz(pcm) - 1000), 15)

    def test_events_mapped_and_others_dropped(self) -> None:
        """Telephone-events change payload type; other payload types are dropped."""
        t = RTPTranscoder(CODECS["pcmu"], 0, CODECS["pcma"], 8, events=(101, 96))
        event = RTPPacket(101, 1, 0, 1, b"\x05\x0a\x00\xa0", True).to_bytes()
        mapped = t(event)
        assert mapped is not None
        self.assertEqual((parse_rtp(mapped).payload_type, parse_rtp(mapped).payload), (96, b"\x05\x0a\x00\xa0"))
        self.assertIsNone(t(RTPPacket(13, 2, 0, 1, b"\x40").to_bytes()))
        self.assertIsNone(t(b"\x00garbage"))
        self.assertEqual(t.dropped, 2)

    def test_timestamp_scaled_to_destination_clock(self) -> None:
        """Towards Opus (48 kHz clock) timestamps advance six times as fast."""
        t = RTPTranscoder(CODECS["pcmu"], 0, CODECS["opus"], 96)
        stamps = []
        for i in range(3):
            data = t(RTPPacket(0, i, 1000 + 160 * i, 7, ulaw_encode(tone(440))).to_bytes())
            if data is not None:
                stamps.append(parse_rtp(data).timestamp)
        self.assertEqual(stamps[1] - stamps[0], 960)


class CallMediaTranscodingTests(SynchronousTestCase):
    """The B2BUA transcodes only when the callee picks a codec the caller lacks."""

    def test_offer_extended_with_our_codecs(self) -> None:
        """The offer to the callee lists the caller's codecs first, then ours it lacks."""
        extended = extend_offer(parse_sdp(PCMU_ONLY), CODECS)
        formats = list(extended.media[0].formats)
        self.assertEqual(formats[:2], ["0", "101"])
        names = {v.split()[1].split("/")[0].lower() for n, v in extended.media[0].attributes if n == "rtpmap"}
        self.assertTrue({"pcma", "g722", "opus"} <= names)

    def test_common_codec_relays_untouched(self) -> None:
        """A callee answering with the caller's codec gets no transcoding."""
        session = FakeSession()
        media = CallMedia(session, "127.0.0.1", available=CODECS)
        media.offer_from("a", PCMU_ONLY)
        media.answer_from("b", PCMU_ANSWER)
        self.assertEqual(session.transforms, {"a": None, "b": None})
        self.assertFalse(media.transcoding)
        self.assertEqual(media.codecs, "PCMU")

    def test_callee_codec_the_caller_lacks_transcodes(self) -> None:
        """A G.722 answer to a PCMU-only caller: the caller gets PCMU, both directions transcode."""
        session = FakeSession()
        media = CallMedia(session, "127.0.0.1", available=CODECS)
        media.offer_from("a", PCMU_ONLY)
        answer = parse_sdp(media.answer_from("b", G722_ANSWER))
        self.assertEqual(list(answer.media[0].formats), ["0", "101"])
        self.assertTrue(media.transcoding)
        a, b = session.transforms["a"], session.transforms["b"]
        self.assertEqual((a.source.name, a.destination.name, a.events), ("PCMU", "G722", (101, 101)))
        self.assertEqual((b.source.name, b.destination.name), ("G722", "PCMU"))
        self.assertEqual(media.codecs, "PCMU<>G722")


class RelayTransformTests(SynchronousTestCase):
    """The relay applies a leg's transform before forwarding, and drops on None."""

    def test_transform_applied(self) -> None:
        """Packets from leg a reach leg b rewritten; a None result is not sent."""
        from pbx.media.ports import PortAllocator
        from pbx.media.relay import Relay
        from pbx.testing import FakeUDPReactor

        reactor = FakeUDPReactor()
        relay = Relay(reactor, PortAllocator(40000, 40099))
        session = relay.open_session()
        session.set_remote("a", "127.0.0.1", 4000)
        session.set_remote("b", "127.0.0.1", 5000)
        session.set_transform("a", lambda data: None if data == b"drop" else data.upper())
        a_port = reactor.udpPorts[session.local_port("a")]
        b_port = reactor.udpPorts[session.local_port("b")]
        a_port.protocol.datagramReceived(b"hello", ("127.0.0.1", 4000))
        a_port.protocol.datagramReceived(b"drop", ("127.0.0.1", 4000))
        self.assertEqual(b_port.written, [(b"HELLO", ("127.0.0.1", 5000))])
        session.set_transform("a", None)
        a_port.protocol.datagramReceived(b"plain", ("127.0.0.1", 4000))
        self.assertEqual(b_port.written[-1], (b"plain", ("127.0.0.1", 5000)))
        relay.close(session)
