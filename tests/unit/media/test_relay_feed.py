"""Tests for :meth:`pbx.media.relay.RelaySession.feed`: one shared source heard on one leg."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.ports import PortAllocator
from pbx.media.relay import Relay, RelayFeed
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


class FeedTests(SynchronousTestCase):
    """A fed leg hears the source with its own RTP header, and the other leg again when unfed."""

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

    def test_own_header(self) -> None:
        """Each payload goes from b's socket to b with b's payload type, one SSRC, seq +1, timestamp +160, marker first."""
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
