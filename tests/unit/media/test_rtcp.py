"""Tests for RTCP packets, receiver statistics and the RTCP session state."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.rtcp import (
    Bye,
    OtherRTCP,
    QualityReport,
    ReceiverReport,
    ReportBlock,
    RTCPSession,
    SDESChunk,
    SenderReport,
    SourceDescription,
    SourceStats,
    build_rtcp,
    ntp_from_unix,
    ntp_short,
    parse_rtcp,
    report_interval,
    round_trip_time,
    unix_from_ntp,
)

BLOCK = ReportBlock(0x0A0B0C0D, 0x40, 5, 0x00010010, 0x20, 0x12345678, 0x00018000)
BLOCK_BYTES = bytes.fromhex("0a0b0c0d4000000500010010000000201234567800018000")
RR_BYTES = bytes.fromhex("81c9000701020304") + BLOCK_BYTES
SDES_BYTES = bytes.fromhex("81ca0003000000010102616200000000")
BYE_BYTES = bytes.fromhex("81cb00020000000101780000")


class PacketTests(SynchronousTestCase):
    """SR, RR, SDES and BYE build and parse per RFC 3550 §6.4-§6.6."""

    def test_rr_vector(self) -> None:
        """An RR with one report block has the byte layout of RFC 3550 §6.4.2."""
        rr = ReceiverReport(0x01020304, (BLOCK,))
        self.assertEqual(rr.to_bytes(), RR_BYTES)
        self.assertEqual(parse_rtcp(RR_BYTES), [rr])

    def test_sr_round_trip(self) -> None:
        """An SR with sender info and two report blocks survives build and parse."""
        other = ReportBlock(7, 255, -3, 65536 * 3 + 2, 1000, 0, 0)
        sr = SenderReport(
            0xCAFEBABE, 0xE1234567_89ABCDEF, 123456, 50, 8000, (BLOCK, other)
        )
        data = sr.to_bytes()
        self.assertEqual(data[:4], bytes.fromhex("82c80012"))  # RC=2, 19 words
        self.assertEqual(parse_rtcp(data), [sr])

    def test_sr_without_blocks(self) -> None:
        """An SR without report blocks is 28 bytes long."""
        sr = SenderReport(1, 2, 3, 4, 5)
        self.assertEqual(len(sr.to_bytes()), 28)
        self.assertEqual(parse_rtcp(sr.to_bytes()), [sr])

    def test_negative_cumulative_loss(self) -> None:
        """A negative cumulative loss (duplicates) is a signed 24-bit field."""
        block = ReportBlock(1, 0, -1, 0, 0)
        self.assertEqual(block.to_bytes()[4:8], bytes.fromhex("00ffffff"))
        self.assertEqual(
            ReportBlock.from_bytes(block.to_bytes(), 0).cumulative_lost, -1
        )

    def test_cumulative_loss_clamped(self) -> None:
        """A loss beyond 24 bits is clamped to the largest value."""
        block = ReportBlock(1, 0, 1 << 30, 0, 0)
        self.assertEqual(
            ReportBlock.from_bytes(block.to_bytes(), 0).cumulative_lost, 0x7FFFFF
        )

    def test_sdes_vector(self) -> None:
        """SDES CNAME is a null-terminated item list padded to 32 bits."""
        sdes = SourceDescription((SDESChunk(1, ((1, b"ab"),)),))
        self.assertEqual(sdes.to_bytes(), SDES_BYTES)
        parsed = parse_rtcp(SDES_BYTES)[0]
        assert isinstance(parsed, SourceDescription)
        self.assertEqual(parsed.chunks[0].cname, b"ab")

    def test_sdes_several_chunks(self) -> None:
        """Several chunks with several items each round-trip; a chunk without CNAME has none."""
        sdes = SourceDescription(
            (
                SDESChunk(1, ((1, b"user@host"), (2, b"Alice"))),
                SDESChunk(2, ((2, b"1234"),)),
            )
        )
        parsed = parse_rtcp(sdes.to_bytes())
        self.assertEqual(parsed, [sdes])
        self.assertIsNone(sdes.chunks[1].cname)

    def test_bye_vector(self) -> None:
        """BYE carries the SSRCs and an optional length-prefixed reason."""
        bye = Bye((1,), b"x")
        self.assertEqual(bye.to_bytes(), BYE_BYTES)
        self.assertEqual(parse_rtcp(BYE_BYTES), [bye])
        self.assertEqual(parse_rtcp(Bye((1, 2)).to_bytes()), [Bye((1, 2))])

    def test_compound(self) -> None:
        """A compound packet RR + SDES + BYE parses into its three parts in order."""
        packets = [
            ReceiverReport(0x01020304, (BLOCK,)),
            SourceDescription((SDESChunk(1, ((1, b"ab"),)),)),
            Bye((1,), b"x"),
        ]
        data = build_rtcp(packets)
        self.assertEqual(data, RR_BYTES + SDES_BYTES + BYE_BYTES)
        self.assertEqual(parse_rtcp(data), packets)

    def test_unknown_type_kept(self) -> None:
        """An APP packet (or any type not interpreted) is kept as bytes."""
        app = OtherRTCP(204, 3, b"\x00\x00\x00\x01NAMEdata")
        self.assertEqual(
            parse_rtcp(build_rtcp([ReceiverReport(1), app])), [ReceiverReport(1), app]
        )

    def test_padding_on_last_packet(self) -> None:
        """Padding on the last packet of a compound is removed."""
        padded = bytes.fromhex("a1cb00020000000100000004")
        self.assertEqual(
            parse_rtcp(RR_BYTES + padded),
            [ReceiverReport(0x01020304, (BLOCK,)), Bye((1,))],
        )


class MalformedTests(SynchronousTestCase):
    """Malformed RTCP raises ValueError (RFC 3550 §A.2)."""

    def test_empty(self) -> None:
        """An empty datagram is not RTCP."""
        self.assertRaises(ValueError, parse_rtcp, b"")

    def test_wrong_version(self) -> None:
        """Version 1 is refused."""
        self.assertRaises(ValueError, parse_rtcp, b"\x41" + RR_BYTES[1:])

    def test_length_beyond_datagram(self) -> None:
        """A length field longer than the datagram is refused."""
        self.assertRaises(ValueError, parse_rtcp, RR_BYTES[:-4])

    def test_trailing_garbage(self) -> None:
        """Bytes after the last packet that do not form a header are refused."""
        self.assertRaises(ValueError, parse_rtcp, RR_BYTES + b"\x81")

    def test_too_few_blocks(self) -> None:
        """A report count larger than the blocks present is refused."""
        self.assertRaises(ValueError, parse_rtcp, b"\x82" + RR_BYTES[1:])
        self.assertRaises(ValueError, parse_rtcp, bytes.fromhex("80c8000100000001"))
        self.assertRaises(ValueError, parse_rtcp, bytes.fromhex("80c90000"))

    def test_padding_not_last(self) -> None:
        """Padding on a packet that is not the last of the compound is refused."""
        padded = bytes.fromhex("a1cb00020000000100000004")
        self.assertRaises(ValueError, parse_rtcp, padded + RR_BYTES)
        self.assertRaises(ValueError, parse_rtcp, bytes.fromhex("a1cb000100000000"))

    def test_sdes_unterminated(self) -> None:
        """An SDES item list without its null item, or an item past the end, is refused."""
        self.assertRaises(
            ValueError, parse_rtcp, bytes.fromhex("81ca00020000000101026162")
        )
        self.assertRaises(
            ValueError, parse_rtcp, bytes.fromhex("81ca00020000000101096162")
        )
        self.assertRaises(
            ValueError, parse_rtcp, bytes.fromhex("82ca00020000000101016100")
        )

    def test_bye_truncated(self) -> None:
        """A BYE whose SSRC list or reason runs past the packet is refused."""
        self.assertRaises(ValueError, parse_rtcp, bytes.fromhex("82cb000100000001"))
        self.assertRaises(
            ValueError, parse_rtcp, bytes.fromhex("81cb00020000000105787878")
        )

    def test_count_out_of_range(self) -> None:
        """More than 31 report blocks cannot be built."""
        self.assertRaises(ValueError, ReceiverReport(1, (BLOCK,) * 32).to_bytes)


class TimeTests(SynchronousTestCase):
    """NTP timestamps and the round-trip time of RFC 3550 §6.4.1."""

    def test_ntp_epoch(self) -> None:
        """The Unix epoch is 2208988800 seconds after the NTP epoch."""
        self.assertEqual(ntp_from_unix(0), 2208988800 << 32)
        self.assertEqual(ntp_from_unix(1.5), (2208988801 << 32) | 0x80000000)

    def test_ntp_round_trip(self) -> None:
        """Converting a Unix time to NTP and back loses less than a microsecond."""
        t = 1700000000.123456
        self.assertAlmostEqual(unix_from_ntp(ntp_from_unix(t)), t, places=6)

    def test_ntp_short(self) -> None:
        """The LSR field is the middle 32 bits of the NTP timestamp."""
        self.assertEqual(ntp_short(0x11223344_55667788), 0x33445566)

    def test_rtt_rfc_example(self) -> None:
        """RFC 3550 figure 2: A 0xb7108000, LSR 0xb7052000, DLSR 0x00054000 give 6.125 s."""
        self.assertEqual(round_trip_time(0xB7108000, 0xB7052000, 0x00054000), 6.125)

    def test_rtt_wraps(self) -> None:
        """The 32-bit fields may wrap between LSR and arrival."""
        self.assertEqual(round_trip_time(0x00008000, 0xFFFF8000, 0x00008000), 0.5)

    def test_rtt_unknown(self) -> None:
        """No SR received (LSR 0) or a negative result gives no RTT."""
        self.assertIsNone(round_trip_time(0xB7108000, 0, 0))
        self.assertIsNone(round_trip_time(0x00010000, 0x00010000, 0x00020000))

    def test_report_interval(self) -> None:
        """Intervals are randomised in [0.5, 1.5] times 5 s, the first one halved."""
        rng = random.Random(1)
        values = [report_interval(rng) for _ in range(200)]
        self.assertTrue(all(2.5 <= v <= 7.5 for v in values))
        self.assertGreater(max(values) - min(values), 3)
        self.assertTrue(
            all(1.25 <= report_interval(rng, initial=True) <= 3.75 for _ in range(50))
        )


class SourceStatsTests(SynchronousTestCase):
    """Reception statistics per RFC 3550 §A.1, §A.3 and §A.8."""

    def feed(self, stats: SourceStats, seqs: list[int], ts_step: int = 160) -> None:
        """Packets with sequence numbers ``seqs`` arriving exactly on time."""
        for seq in seqs:
            stats.update(seq & 0xFFFF, (seq * ts_step) & 0xFFFFFFFF, seq * 0.02)

    def test_probation(self) -> None:
        """The first packet is on probation; counting starts with the second in sequence."""
        stats = SourceStats(1, 8000, 100)
        self.assertFalse(stats.update(100, 0, 0.0))
        self.assertTrue(stats.update(101, 160, 0.02))
        self.assertEqual((stats.received, stats.base_seq, stats.expected), (1, 101, 1))

    def test_loss_and_fraction(self) -> None:
        """Two of nine expected packets missing: cumulative 2 and fraction 2*256//9 = 56."""
        stats = SourceStats(1, 8000, 1)
        self.feed(
            stats, [1, 2, 3, 5, 6, 8, 9, 10]
        )  # counting starts at 2; 4 and 7 lost
        self.assertEqual((stats.expected, stats.received, stats.lost), (9, 7, 2))
        block = stats.report_block(now=1.0)
        self.assertEqual(
            (block.fraction_lost, block.cumulative_lost, block.highest_seq), (56, 2, 10)
        )
        self.feed(stats, list(range(11, 21)))
        block = stats.report_block(now=2.0)
        self.assertEqual(
            (block.fraction_lost, block.cumulative_lost, block.highest_seq), (0, 2, 20)
        )

    def test_duplicates_make_loss_negative(self) -> None:
        """Duplicates count as received, so the cumulative loss can go below zero."""
        stats = SourceStats(1, 8000, 1)
        self.feed(stats, [1, 2, 3, 3, 3, 4])
        self.assertEqual(stats.lost, -2)
        self.assertEqual(stats.report_block(0).fraction_lost, 0)

    def test_wraparound(self) -> None:
        """The extended highest sequence number counts cycles past 65535."""
        stats = SourceStats(1, 8000, 65533)
        self.feed(stats, [65533, 65534, 65535, 65536, 65537])
        self.assertEqual(stats.extended_max, 65536 + 1)
        self.assertEqual((stats.expected, stats.lost), (4, 0))

    def test_restart_after_big_jump(self) -> None:
        """A big jump is ignored once and believed when the next packet follows it."""
        stats = SourceStats(1, 8000, 10)
        self.feed(stats, [10, 11, 12])
        self.assertFalse(stats.update(40000, 0, 1.0))
        self.assertTrue(stats.update(40001, 160, 1.02))
        self.assertEqual((stats.base_seq, stats.received, stats.lost), (40001, 1, 0))

    def test_jitter_hand_computed(self) -> None:
        """J follows §A.8: transit differences 0, 40, 40 samples give 0, 2.5, 4.84375."""
        stats = SourceStats(1, 8000, 0)
        arrivals = [0.0, 0.020, 0.040, 0.065, 0.080]  # packet 3 is 5 ms late
        for seq, arrival in enumerate(arrivals):
            stats.update(seq, seq * 160, arrival)
        # counted from packet 1: D(1,2)=0, D(2,3)=40, D(3,4)=40
        self.assertAlmostEqual(stats.jitter, 4.84375)
        self.assertEqual(stats.report_block(0).jitter, 4)

    def test_dlsr(self) -> None:
        """DLSR is the time since the last SR from the source, in 1/65536 s."""
        stats = SourceStats(1, 8000, 0)
        self.feed(stats, [0, 1])
        stats.lsr, stats.lsr_arrival = 0x12345678, 10.0
        block = stats.report_block(now=11.25)
        self.assertEqual((block.lsr, block.dlsr), (0x12345678, int(1.25 * 65536)))


class SessionTests(SynchronousTestCase):
    """RTCPSession chooses SR or RR, answers LSR/DLSR and measures round-trip time."""

    def setUp(self) -> None:
        self.alice = RTCPSession(0xA, 8000, b"alice")
        self.bob = RTCPSession(0xB, 8000, b"bob")

    def test_rr_when_not_sending(self) -> None:
        """A session that has sent nothing reports with an RR and an SDES CNAME."""
        packets = self.alice.report(now=100.0)
        self.assertEqual(packets[0], ReceiverReport(0xA))
        self.assertEqual(
            packets[1], SourceDescription((SDESChunk(0xA, ((1, b"alice"),)),))
        )

    def test_sr_when_sending(self) -> None:
        """After sending, the report is an SR with counts and an extrapolated RTP timestamp."""
        self.alice.on_rtp_sent(1000, 160, now=100.0)
        self.alice.on_rtp_sent(1160, 160, now=100.02)
        sr = self.alice.report(now=100.52)[0]
        assert isinstance(sr, SenderReport)
        self.assertEqual((sr.packet_count, sr.octet_count), (2, 320))
        self.assertEqual(sr.rtp_timestamp, 1160 + 4000)
        self.assertAlmostEqual(unix_from_ntp(sr.ntp_timestamp), 100.52, places=6)
        self.assertIsInstance(self.alice.report(now=105.0)[0], SenderReport)
        self.assertIsInstance(self.alice.report(now=110.0)[0], ReceiverReport)

    def test_report_block_about_sender(self) -> None:
        """The report carries a block about the source we receive, with its statistics."""
        for seq in range(10):
            if seq != 5:
                self.alice.on_rtp_received(0xB, seq, seq * 160, 100 + seq * 0.02)
        (block,) = self.alice.report(now=101.0)[0].reports  # type: ignore[union-attr]
        self.assertEqual(
            (block.ssrc, block.cumulative_lost, block.highest_seq), (0xB, 1, 9)
        )

    def test_round_trip(self) -> None:
        """An SR taking 0.1 s, held 1.5 s by Bob, answered by an RR taking 0.25 s: RTT 0.35 s."""
        self.bob.on_rtp_received(0xA, 1, 160, 99.0)
        self.bob.on_rtp_received(0xA, 2, 320, 99.02)
        self.alice.on_rtp_sent(320, 160, now=99.0)
        sr = parse_rtcp(build_rtcp(self.alice.report(now=100.0)))
        self.bob.on_rtcp(sr, now=100.1)
        rr = parse_rtcp(build_rtcp(self.bob.report(now=101.6)))
        self.alice.on_rtcp(rr, now=101.85)
        assert self.alice.rtt is not None
        self.assertAlmostEqual(self.alice.rtt, 0.35, places=4)
        self.assertAlmostEqual(self.alice.quality().rtt_ms or 0, 350, places=1)

    def test_quality_report(self) -> None:
        """The quality report sums loss, gives jitter in ms and the far end's view of us."""
        for seq in range(1, 11):
            if seq not in (4, 7):
                self.alice.on_rtp_received(
                    0xB, seq, seq * 160, seq * 0.02 + (0.005 if seq == 5 else 0)
                )
        for _ in range(3):
            self.alice.on_rtp_sent(0, 160, 0.0)
        remote = ReportBlock(0xA, 64, 1, 100, 80)
        self.alice.on_rtcp([ReceiverReport(0xB, (remote,))], now=1.0)
        quality = self.alice.quality()
        self.assertEqual(
            (quality.packets_received, quality.packets_lost, quality.packets_sent),
            (7, 2, 3),
        )
        self.assertAlmostEqual(quality.loss_percent, 100 * 2 / 9)
        self.assertGreater(quality.jitter_ms, 0)
        self.assertEqual(
            (quality.remote_loss_percent, quality.remote_jitter_ms), (25.0, 10.0)
        )
        self.assertIsNone(quality.rtt_ms)
        self.assertIsInstance(quality, QualityReport)

    def test_bye(self) -> None:
        """bye() ends the compound with a BYE for our SSRC; a BYE received stops reports on that source."""
        packets = self.alice.bye(now=1.0, reason=b"done")
        self.assertEqual(packets[-1], Bye((0xA,), b"done"))
        for seq in range(3):
            self.alice.on_rtp_received(0xB, seq, seq * 160, seq * 0.02)
        self.alice.on_rtcp([Bye((0xB,))], now=1.0)
        self.assertEqual(self.alice.report(now=2.0)[0], ReceiverReport(0xA))

    def test_sources_bounded(self) -> None:
        """A flood of new SSRCs keeps only the most recent sources."""
        for ssrc in range(100):
            self.alice.on_rtp_received(ssrc, 1, 160, 0.0)
        self.assertEqual(len(self.alice.sources), 16)
        self.assertIn(99, self.alice.sources)
