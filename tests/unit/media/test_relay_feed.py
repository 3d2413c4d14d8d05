"""Tests for :meth:`pbx.media.relay.RelaySession.feed`: one shared source heard on one leg."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.ports import PortAllocator
from pbx.media.relay import FLOWING, Relay, RelayFeed
from pbx.media.relay_feed import WAIT_FRAMES
from pbx.testing import FakeUDPPort, FakeUDPReactor

PHONE_A = ("81.2.69.160", 4000)
PHONE_B = ("81.2.69.170", 5000)
NAT_B = ("81.2.69.170", 31000)
RTP = b"\x80\x00\x00\x01" + b"\x00" * 8 + bytes(range(160))


class Source:
    """A stand-in for a playout: keeps its sinks, and sends a payload to each on demand."""

    timestamp_step = 160

    def __init__(self) -> None:
        self.sinks: list[Callable[[bytes], object]] = []

    def add(self, sink: Callable[[bytes], object]) -> Callable[[], None]:
        """Keep ``sink`` until the returned function is called."""
        self.sinks.append(sink)
        return lambda: self.sinks.remove(sink)

    def play(self, payload: bytes) -> None:
        """One frame to every sink."""
        for sink in list(self.sinks):
            sink(payload)


def header(packet: bytes) -> tuple[int, int, int, int, int]:
    """(first byte, second byte, sequence, timestamp, SSRC) of an RTP packet."""
    return struct.unpack("!BBHII", packet[:12])


class FeedTestCase(SynchronousTestCase):
    """A relay session between two phones, and a source."""

    def setUp(self) -> None:
        """A session between two phones with known addresses."""
        self.reactor = FakeUDPReactor()
        self.relay = Relay(
            self.reactor, PortAllocator(10000, 10099, random.Random(5)), "127.0.0.1"
        )
        self.session = self.relay.open_session()
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)
        self.source = Source()

    def port(self, leg: str, rtcp: bool = False) -> FakeUDPPort:
        """The fake socket of ``leg``."""
        return self.reactor.udpPorts[self.session.local_port(leg) + rtcp]

    def written(
        self, leg: str, rtcp: bool = False
    ) -> list[tuple[bytes, tuple[str, int]]]:
        """What our socket of ``leg`` sent, and then forget it."""
        port = self.port(leg, rtcp)
        out, port.written = port.written, []
        return out


class FeedTests(FeedTestCase):
    """A fed leg hears the source with its own RTP header, and the other leg again when unfed."""

    def test_own_header(self) -> None:
        """
        With a silent other leg, each payload goes from b's socket to b with
        b's payload type, one SSRC, seq +1, timestamp +160, marker first.
        """
        self.session.feed("b", self.source, 8)
        for payload in (b"one", b"two", b"three"):
            self.source.play(payload)
        sent = self.written("b")
        self.assertEqual(
            [(p[12:], addr) for p, addr in sent],
            [(b"one", PHONE_B), (b"two", PHONE_B), (b"three", PHONE_B)],
        )
        headers = [header(p) for p, _ in sent]
        self.assertEqual(
            [(h[0], h[1]) for h in headers], [(0x80, 0x88), (0x80, 8), (0x80, 8)]
        )
        self.assertEqual({h[4] for h in headers}, {headers[0][4]})
        self.assertEqual([(h[2] - headers[0][2]) % 65536 for h in headers], [0, 1, 2])
        self.assertEqual(
            [(h[3] - headers[0][3]) % 2**32 for h in headers], [0, 160, 320]
        )
        self.assertEqual(self.written("a"), [])

    def test_listeners_differ(self) -> None:
        """Two sessions fed by one source each get the same payload under their own SSRC."""
        other = self.relay.open_session()
        other.set_remote("a", *PHONE_A)
        self.session.feed("b", self.source, 0)
        other.feed("a", self.source, 0)
        self.source.play(b"frame")
        [(mine, _)] = self.written("b")
        [(theirs, _)] = self.reactor.udpPorts[other.local_port("a")].written
        self.assertEqual(mine[12:], theirs[12:])
        self.assertNotEqual(header(mine)[4], header(theirs)[4])

    def test_other_leg_muted_while_fed(self) -> None:
        """RTP from a does not reach a fed b (counted as dropped); RTCP from a still does."""
        self.session.feed("b", self.source, 0)
        self.port("a").protocol.datagramReceived(RTP, PHONE_A)
        self.assertEqual(self.written("b"), [])
        self.assertEqual(self.session.leg("a").rtp.dropped_no_dest, 1)
        self.port("a", rtcp=True).protocol.datagramReceived(
            b"\x81\xc8rtcp", (PHONE_A[0], 4001)
        )
        self.assertEqual(
            self.written("b", rtcp=True), [(b"\x81\xc8rtcp", (PHONE_B[0], 5001))]
        )

    def test_unfeed_restores_relay(self) -> None:
        """After unfeed, the source reaches b no more and a's packets reach b byte for byte."""
        self.session.feed("b", self.source, 0)
        self.session.unfeed("b")
        self.assertEqual(self.source.sinks, [])
        self.assertIsNone(self.session.feeding("b"))
        self.port("a").protocol.datagramReceived(RTP, PHONE_A)
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])

    def test_follows_latched_address(self) -> None:
        """Music goes where b's own packets come from (latching), as relayed media would."""
        self.session.set_remote("b", "10.0.0.5", 5000)  # private: any source may latch
        self.session.feed("b", self.source, 0)
        self.port("b").protocol.datagramReceived(RTP, NAT_B)
        self.source.play(b"x")
        self.assertEqual([addr for _, addr in self.written("b")], [NAT_B])
        self.assertIsNone(self.session.leg("b").rtp.dest)

    def test_no_address_no_packet(self) -> None:
        """A leg with no address yet (or on c=0.0.0.0) gets nothing, and nothing is counted as sent."""
        self.session.set_remote("b", "0.0.0.0", 5000)
        self.session.feed("b", self.source, 0)
        self.source.play(b"x")
        self.assertEqual(self.written("b"), [])
        feed = self.session.feeding("b")
        assert feed is not None
        self.assertEqual(feed.sent, 0)

    def test_refeed_replaces(self) -> None:
        """Feeding a fed leg takes it off its first source."""
        first, second = Source(), Source()
        self.session.feed("b", first, 0)
        self.session.feed("b", second, 0)
        self.assertEqual((len(first.sinks), len(second.sinks)), (0, 1))

    def test_close_unfeeds(self) -> None:
        """Closing the session takes every leg off its source."""
        self.session.feed("a", self.source, 0)
        self.session.feed("b", self.source, 0)
        self.relay.close(self.session)
        self.assertEqual(self.source.sinks, [])

    def test_send_error_counted(self) -> None:
        """A socket error is counted on the feed, not raised into the playout."""
        self.session.feed("b", self.source, 0)

        def refuse(data: bytes, addr: tuple[str, int]) -> None:
            raise OSError("EAGAIN")

        self.session.leg("b").rtp.send = refuse
        self.source.play(b"x")
        feed = self.session.feeding("b")
        assert feed is not None
        self.assertEqual((feed.sent, feed.send_errors), (0, 1))

    def test_bad_payload_type(self) -> None:
        """A payload type outside 0..127 is refused."""
        self.assertRaises(ValueError, RelayFeed, self.session.leg("b").rtp, 128, 160)

    def test_sequence_wraps(self) -> None:
        """Sequence numbers wrap at 2**16 and timestamps at 2**32 (RFC 3550 §5.1)."""
        self.session.feed("b", self.source, 0)
        feed = self.session.feeding("b")
        assert feed is not None
        feed.seq, feed.timestamp = 0xFFFF, 0xFFFFFFF0
        self.source.play(b"x")
        self.source.play(b"y")
        headers = [header(p) for p, _ in self.written("b")]
        self.assertEqual(
            [(h[2], h[3]) for h in headers], [(0xFFFF, 0xFFFFFFF0), (0, 0x90)]
        )


def packet(seq: int, timestamp: int, ssrc: int = 0x5EED, pt: int = 0) -> bytes:
    """An RTP packet of phone a's stream."""
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + bytes(160)


class ContinuityTests(FeedTestCase):
    """The feed continues the stream b was hearing, and a's stream carries on after the feed's (RFC 3550 §8.2)."""

    def talk(self, first: int, count: int, ssrc: int = 0x5EED) -> list[bytes]:
        """Phone a sends ``count`` packets from sequence number ``first`` (timestamps 160 apart)."""
        sent = [packet(seq, 1000 + 160 * seq, ssrc) for seq in range(first, first + count)]
        for data in sent:
            self.port("a").protocol.datagramReceived(data, PHONE_A)
        return sent

    def test_continues_stream(self) -> None:
        """
        The feed's first frame takes the place of a's first dropped packet:
        a's SSRC, the next sequence number and its timestamp, marker set;
        once unfed, a's packets reach b unchanged and, at the same pace, in
        sequence with the feed's.
        """
        relayed = self.talk(10, 3)
        self.assertEqual([p for p, _ in self.written("b")], relayed)
        self.session.feed("b", self.source, 0)
        self.source.play(b"early")  # before a's next packet: held back
        self.talk(13, 1)
        for i in range(3):
            self.source.play(b"music")
            self.talk(14 + i, 1)
        self.source.play(b"music")
        sent = [header(p) for p, _ in self.written("b")]
        self.assertEqual(
            [(h[1], h[2], h[3], h[4]) for h in sent],
            [(0x80, 13, 1000 + 160 * 13, 0x5EED)] + [(0, seq, 1000 + 160 * seq, 0x5EED) for seq in (14, 15, 16)],
        )
        self.session.unfeed("b")
        relayed = self.talk(17, 2)
        self.assertEqual([p for p, _ in self.written("b")], relayed)

    def test_own_pace_after_start(self) -> None:
        """
        Once started, the feed numbers its frames one by one whatever a's
        packets say (a burst of late frames is not turned into a loss), and
        a's socket is no longer watched.
        """
        self.talk(10, 1)
        self.written("b")
        self.session.feed("b", self.source, 0)
        self.port("a").protocol.datagramReceived(b"\x80\xc8" + bytes(30), PHONE_A)  # RTCP (RFC 5761): not a start
        self.talk(11, 1)
        self.assertNotIn("datagramReceived", vars(self.port("a").protocol))
        self.talk(12, 5)  # a runs ahead while pbx's frames are late
        for _ in range(3):
            self.source.play(b"late")
        self.assertEqual([header(p)[2] for p, _ in self.written("b")], [11, 12, 13])

    def test_late_other_leg(self) -> None:
        """A flowing leg whose next packet is late for :data:`WAIT_FRAMES` frames: the feed starts a stream of its own."""
        self.talk(10, 1)
        self.written("b")
        self.session.feed("b", self.source, 0)
        for _ in range(WAIT_FRAMES):
            self.source.play(b"held back")
        self.assertEqual(self.written("b"), [])
        self.source.play(b"x")
        self.talk(11, 1)
        self.source.play(b"y")
        [first, second] = [header(p) for p, _ in self.written("b")]
        self.assertNotEqual(first[4], 0x5EED)
        self.assertEqual(first[1], 0x80)
        self.assertEqual((second[4], (second[2] - first[2]) % 65536), (first[4], 1))

    def own_stream_at_once(self, silence: float = 0.0) -> None:
        """After a's packet and ``silence`` seconds, feeding b sends at once, not under a's SSRC; a is not watched."""
        self.talk(10, 1)
        self.written("b")
        self.reactor.advance(silence)
        self.session.feed("b", self.source, 0)
        self.source.play(b"x")
        [(sent, _)] = self.written("b")
        self.assertNotEqual(header(sent)[4], 0x5EED)
        self.assertNotIn("datagramReceived", vars(self.port("a").protocol))

    def test_silent_other_leg(self) -> None:
        """A leg silent for :data:`FLOWING` seconds (on hold) is not waited for, or watched."""
        self.own_stream_at_once(FLOWING)

    def test_transcoded_own_stream(self) -> None:
        """In a transcoded call (a's packets rewritten on their way) the feed does not follow a's stream."""
        self.session.set_transform("a", lambda data: data)
        self.own_stream_at_once()

    def test_unfeed_before_start(self) -> None:
        """A feed that ends before a's next packet leaves a's socket unwatched, its plain hot path."""
        self.talk(10, 1)
        self.session.feed("b", self.source, 0)
        self.assertIn("datagramReceived", vars(self.port("a").protocol))
        self.session.unfeed("b")
        self.assertNotIn("datagramReceived", vars(self.port("a").protocol))
