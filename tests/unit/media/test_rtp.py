"""Tests for RTP packet parsing and building, and the RTP sender."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.rtp import (
    RTPExtension,
    RTPPacket,
    RTPSender,
    looks_like_rtcp,
    parse_rtp,
    seq_delta,
    ts_delta,
)

# version 2, PT 0, seq 0x1234, timestamp 0x01020304, SSRC 0xDEADBEEF
HEADER = bytes.fromhex("8000123401020304deadbeef")


class ParseTests(SynchronousTestCase):
    """parse_rtp reads every header field of RFC 3550 §5.1."""

    def test_minimal(self) -> None:
        """A plain header followed by a payload gives every field and the payload."""
        packet = parse_rtp(HEADER + b"voice")
        self.assertEqual(
            packet,
            RTPPacket(0, 0x1234, 0x01020304, 0xDEADBEEF, b"voice"),
        )

    def test_marker_and_payload_type(self) -> None:
        """The second octet splits into the marker bit and a 7-bit payload type."""
        packet = parse_rtp(bytes.fromhex("80e5") + HEADER[2:])
        self.assertTrue(packet.marker)
        self.assertEqual(packet.payload_type, 0x65)

    def test_empty_payload(self) -> None:
        """A packet that is only a header has an empty payload."""
        self.assertEqual(parse_rtp(HEADER).payload, b"")

    def test_padding_removed(self) -> None:
        """With the P bit, the count in the last octet of padding is stripped."""
        packet = parse_rtp(b"\xa0" + HEADER[1:] + b"abc" + b"\x00\x00\x03")
        self.assertEqual(packet.payload, b"abc")
        self.assertEqual(packet.padding, 3)

    def test_extension_skipped(self) -> None:
        """A header extension is skipped: the payload starts after it."""
        ext = bytes.fromhex("bede0002") + b"12345678"
        packet = parse_rtp(b"\x90" + HEADER[1:] + ext + b"pay")
        self.assertEqual(packet.payload, b"pay")
        self.assertEqual(packet.extension, RTPExtension(0xBEDE, b"12345678"))

    def test_csrcs(self) -> None:
        """The CC field gives the number of CSRCs that follow the SSRC."""
        csrcs = bytes.fromhex("0000000100000002ffffffff")
        packet = parse_rtp(b"\x83" + HEADER[1:] + csrcs + b"x")
        self.assertEqual(packet.csrcs, (1, 2, 0xFFFFFFFF))
        self.assertEqual(packet.payload, b"x")

    def test_everything_together(self) -> None:
        """CSRCs, extension and padding in one packet are all taken off the payload."""
        data = (
            b"\xb1"
            + HEADER[1:]
            + bytes.fromhex("0000000a")
            + bytes.fromhex("10000001")
            + b"ext!"
            + b"media"
            + b"\x00\x02"
        )
        packet = parse_rtp(data)
        self.assertEqual(
            (packet.csrcs, packet.extension, packet.payload, packet.padding),
            ((10,), RTPExtension(0x1000, b"ext!"), b"media", 2),
        )

    def test_round_trip(self) -> None:
        """Building a parsed packet gives back the same bytes."""
        data = b"\xb1" + HEADER[1:] + bytes(4) + bytes.fromhex("10000001") + b"ext!"
        data += b"media\x00\x00\x03"
        self.assertEqual(parse_rtp(data).to_bytes(), data)

    def test_memoryview_input(self) -> None:
        """A memoryview parses like bytes and the payload comes out as bytes."""
        packet = parse_rtp(memoryview(HEADER + b"p"))  # type: ignore[arg-type]
        self.assertIsInstance(packet.payload, bytes)


class MalformedTests(SynchronousTestCase):
    """Anything that is not a valid RTP packet raises ValueError."""

    def test_too_short(self) -> None:
        """Fewer than 12 bytes cannot hold the fixed header."""
        self.assertRaises(ValueError, parse_rtp, HEADER[:11])
        self.assertRaises(ValueError, parse_rtp, b"")

    def test_wrong_version(self) -> None:
        """A version other than 2 is refused."""
        for first in (b"\x00", b"\x40", b"\xc0"):
            self.assertRaises(ValueError, parse_rtp, first + HEADER[1:])

    def test_csrcs_beyond_end(self) -> None:
        """A CSRC count that runs past the datagram is refused."""
        self.assertRaises(ValueError, parse_rtp, b"\x82" + HEADER[1:] + bytes(4))

    def test_extension_header_truncated(self) -> None:
        """An X bit with no room for the extension header is refused."""
        self.assertRaises(ValueError, parse_rtp, b"\x90" + HEADER[1:] + b"\xbe\xde")

    def test_extension_longer_than_packet(self) -> None:
        """An extension length that runs past the datagram is refused."""
        bad = b"\x90" + HEADER[1:] + bytes.fromhex("bede0003") + bytes(8)
        self.assertRaises(ValueError, parse_rtp, bad)

    def test_padding_zero(self) -> None:
        """A padding count of zero is invalid (the count includes itself)."""
        self.assertRaises(ValueError, parse_rtp, b"\xa0" + HEADER[1:] + b"ab\x00")

    def test_padding_too_large(self) -> None:
        """A padding count larger than what follows the header is refused."""
        self.assertRaises(ValueError, parse_rtp, b"\xa0" + HEADER[1:] + b"ab\x04")
        self.assertRaises(ValueError, parse_rtp, b"\xa0" + HEADER[1:])

    def test_build_out_of_range(self) -> None:
        """Fields that do not fit their header bits cannot be built."""
        for packet in (
            RTPPacket(128, 0, 0, 0),
            RTPPacket(0, 65536, 0, 0),
            RTPPacket(0, 0, 1 << 32, 0),
            RTPPacket(0, 0, 0, -1),
            RTPPacket(0, 0, 0, 0, csrcs=tuple(range(16))),
            RTPPacket(0, 0, 0, 0, padding=256),
            RTPPacket(0, 0, 0, 0, extension=RTPExtension(0, b"abc")),
        ):
            self.assertRaises(ValueError, packet.to_bytes)


class HelperTests(SynchronousTestCase):
    """Sequence and timestamp arithmetic wraps around; RTCP-mux is recognised."""

    def test_seq_delta_wraps(self) -> None:
        """Sequence number differences are signed and wrap at 65536."""
        self.assertEqual(seq_delta(0, 65535), 1)
        self.assertEqual(seq_delta(65535, 0), -1)
        self.assertEqual(seq_delta(10, 5), 5)

    def test_ts_delta_wraps(self) -> None:
        """Timestamp differences are signed and wrap at 2**32."""
        self.assertEqual(ts_delta(80, 0xFFFFFFB0), 160)
        self.assertEqual(ts_delta(0xFFFFFFB0, 80), -160)

    def test_rtcp_mux_demultiplexing(self) -> None:
        """RTCP packet types 192-223 are recognised, RTP payload types are not."""
        self.assertTrue(looks_like_rtcp(b"\x81\xc8\x00\x06"))
        self.assertTrue(looks_like_rtcp(b"\x80\xc9\x00\x01"))
        self.assertFalse(looks_like_rtcp(HEADER))
        self.assertFalse(looks_like_rtcp(b"\x80\xe5"))
        self.assertFalse(looks_like_rtcp(b"\x80"))


class SenderTests(SynchronousTestCase):
    """RTPSender numbers packets per RFC 3550 §5.1 and RFC 4733."""

    def setUp(self) -> None:
        self.sender = RTPSender(8, rng=random.Random(42))

    def test_random_initial_values(self) -> None:
        """SSRC, first sequence number and first timestamp differ between senders."""
        firsts = {
            (s.ssrc, s.sequence, s.timestamp)
            for s in (RTPSender(0, rng=random.Random(seed)) for seed in range(10))
        }
        self.assertEqual(len(firsts), 10)
        self.assertEqual(len({s[1] for s in firsts}), 10)

    def test_sequence_and_timestamp(self) -> None:
        """Each packet takes the next sequence number; the timestamp advances by its samples."""
        seq, ts = self.sender.sequence, self.sender.timestamp
        packets = [self.sender.next_packet(b"x" * 160, 160) for _ in range(3)]
        self.assertEqual(
            [(p.sequence, p.timestamp) for p in packets],
            [((seq + i) & 0xFFFF, (ts + 160 * i) & 0xFFFFFFFF) for i in range(3)],
        )
        self.assertEqual({p.ssrc for p in packets}, {self.sender.ssrc})
        self.assertEqual({p.payload_type for p in packets}, {8})

    def test_wraparound(self) -> None:
        """Sequence numbers wrap from 65535 to 0 and timestamps from 2**32-1."""
        self.sender.sequence, self.sender.timestamp = 65535, 0xFFFFFF00
        first = self.sender.next_packet(b"", 0x100)
        second = self.sender.next_packet(b"", 0x100)
        self.assertEqual((first.sequence, second.sequence), (65535, 0))
        self.assertEqual(second.timestamp, 0)

    def test_marker_on_first_packet_only(self) -> None:
        """The first packet of the stream starts a talkspurt; the next ones do not."""
        markers = [self.sender.next_packet(b"", 160).marker for _ in range(3)]
        self.assertEqual(markers, [True, False, False])

    def test_talkspurt_after_silence(self) -> None:
        """After advance() the timestamp has moved on and the next packet is marked."""
        self.sender.next_packet(b"", 160)
        ts = self.sender.timestamp
        self.sender.advance(800)
        packet = self.sender.next_packet(b"", 160)
        self.assertTrue(packet.marker)
        self.assertEqual(packet.timestamp, (ts + 800) & 0xFFFFFFFF)

    def test_forced_marker_and_payload_type(self) -> None:
        """marker=True and pt= override the defaults for one packet."""
        self.sender.next_packet(b"", 160)
        packet = self.sender.next_packet(b"", 160, marker=True, pt=13)
        self.assertEqual((packet.marker, packet.payload_type), (True, 13))
        self.assertEqual(self.sender.next_packet(b"", 160).payload_type, 8)

    def test_telephone_event_keeps_timestamp(self) -> None:
        """Packets of one event share the event's start timestamp; sequence numbers go on."""
        self.sender.next_packet(b"", 160)
        start = self.sender.timestamp
        events = [
            self.sender.next_event_packet(b"\x05\x0a\x00\xa0", pt=101, start=True),
            self.sender.next_event_packet(b"\x05\x0a\x01\x40", pt=101),
            self.sender.next_event_packet(b"\x05\x8a\x01\xe0", pt=101),
        ]
        self.assertEqual({e.timestamp for e in events}, {start})
        self.assertEqual([e.marker for e in events], [True, False, False])
        seqs = [e.sequence for e in events]
        self.assertEqual(seqs, [(seqs[0] + i) & 0xFFFF for i in range(3)])
        self.assertEqual({e.payload_type for e in events}, {101})

    def test_new_event_new_timestamp(self) -> None:
        """A second digit, after media time has passed, takes a new timestamp."""
        first = self.sender.next_event_packet(b"\x01\x00\x00\xa0", pt=101, start=True)
        self.sender.advance(1600)
        second = self.sender.next_event_packet(b"\x02\x00\x00\xa0", pt=101, start=True)
        self.assertEqual(ts_delta(second.timestamp, first.timestamp), 1600)
        self.assertTrue(second.marker)

    def test_counts(self) -> None:
        """The sender counts packets and payload octets for RTCP sender reports."""
        self.sender.next_packet(b"x" * 160, 160)
        self.sender.next_event_packet(b"abcd", pt=101)
        self.assertEqual((self.sender.packets_sent, self.sender.octets_sent), (2, 164))

    def test_built_packets_parse(self) -> None:
        """A sent packet survives the wire unchanged."""
        packet = self.sender.next_packet(b"\xff" * 160, 160)
        self.assertEqual(parse_rtp(packet.to_bytes()), packet)

    def test_bad_payload_type(self) -> None:
        """A sender for a payload type above 127 cannot be made."""
        self.assertRaises(ValueError, RTPSender, 128)
