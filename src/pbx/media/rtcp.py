"""
RTCP (RFC 3550 §6): packets, receiver statistics and round-trip time.

:func:`parse_rtcp` splits a compound packet into :class:`SenderReport`,
:class:`ReceiverReport`, :class:`SourceDescription`, :class:`Bye` and
:class:`OtherRTCP` values and raises :class:`ValueError` for malformed
input; :func:`build_rtcp` is its inverse.  :class:`SourceStats` keeps the
reception statistics of one source (RFC 3550 §A.1, §A.3, §A.8), and
:class:`RTCPSession` the RTCP side of one RTP session: what to report, what
the far end reported, and the :class:`QualityReport` of the call.

This module is pure: times are passed in as seconds since the Unix epoch.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable

from attrs import frozen

SR, RR, SDES, BYE = 200, 201, 202, 203
CNAME = 1  # SDES item type (RFC 3550 §6.5.1)
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!IQIII")
MAX_DROPOUT, MAX_MISORDER, MIN_SEQUENTIAL = 3000, 100, 2  # RFC 3550 §A.1
MAX_SOURCES = 16  # sources kept per session


def ntp_from_unix(seconds: float) -> int:
    """The 64-bit NTP timestamp (RFC 3550 §4) of a Unix time."""
    whole, frac = divmod(seconds + NTP_UNIX_OFFSET, 1.0)
    return (int(whole) & 0xFFFFFFFF) << 32 | min(int(frac * 2**32), 0xFFFFFFFF)


def unix_from_ntp(ntp: int) -> float:
    """The Unix time of a 64-bit NTP timestamp (era 0, years 1900-2036)."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


def ntp_short(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR format (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


def round_trip_time(arrival: int, lsr: int, dlsr: int) -> float | None:
    """
    Seconds from LSR and DLSR of a report block received at ``arrival``
    (RFC 3550 §6.4.1, figure 2: A - LSR - DLSR); all three in 1/65536 s.

    :returns: None when the far end has had no SR from us (LSR 0), or when
        the result is negative (clocks or reports inconsistent).
    """
    if lsr == 0:
        return None
    rtt = (arrival - lsr - dlsr) & 0xFFFFFFFF
    return None if rtt >= 0x80000000 else rtt / 65536


def report_interval(
    rng: random.Random, mean: float = 5.0, initial: bool = False
) -> float:
    """
    Seconds until the next report: ``mean`` times a random factor in
    [0.5, 1.5] (RFC 3550 §6.3.1, simplified for a two-party session); half
    that for the first report (§6.2).
    """
    return (mean / 2 if initial else mean) * rng.uniform(0.5, 1.5)


def _join(blocks: tuple[ReportBlock, ...]) -> bytes:
    return b"".join(block.to_bytes() for block in blocks)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _packet(count: int, packet_type: int, body: bytes) -> bytes:
    """The common header (RFC 3550 §6.4.1) and a body that is a multiple of 4 bytes."""
    if not 0 <= count <= 31:
        raise ValueError(f"RTCP count {count} out of range 0-31")
    return _HEADER.pack(0x80 | count, packet_type, len(body) // 4) + body


@frozen
class ReportBlock:
    """Reception report about one source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    """Lost since the previous report, as a fraction of 256."""
    cumulative_lost: int
    """Expected minus received since the start (may be negative: duplicates)."""
    highest_seq: int
    """The extended highest sequence number received."""
    jitter: int
    """Interarrival jitter, in RTP timestamp units."""
    lsr: int = 0
    dlsr: int = 0

    def to_bytes(self) -> bytes:
        """The 24-byte block."""
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_seq & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr,
            self.dlsr,
        )

    @classmethod
    def from_bytes(cls, data: bytes, offset: int) -> ReportBlock:
        """The block at ``offset``."""
        ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)


@frozen
class SenderReport:
    """SR (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def to_bytes(self) -> bytes:
        """The packet."""
        counts = (self.rtp_timestamp, self.packet_count, self.octet_count)
        info = (self.ssrc, self.ntp_timestamp, *(n & 0xFFFFFFFF for n in counts))
        body = _SENDER_INFO.pack(*info) + _join(self.reports)
        return _packet(len(self.reports), SR, body)


@frozen
class ReceiverReport:
    """RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def to_bytes(self) -> bytes:
        """The packet."""
        body = struct.pack("!I", self.ssrc) + _join(self.reports)
        return _packet(len(self.reports), RR, body)


@frozen
class SDESChunk:
    """The items (type, value) describing one source (RFC 3550 §6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...]

    @property
    def cname(self) -> bytes | None:
        """The CNAME item, if present."""
        return next((value for kind, value in self.items if kind == CNAME), None)


@frozen
class SourceDescription:
    """SDES (RFC 3550 §6.5)."""

    chunks: tuple[SDESChunk, ...]

    def to_bytes(self) -> bytes:
        """The packet."""
        body = []
        for chunk in self.chunks:
            items = b"".join(
                bytes((kind, len(value))) + value for kind, value in chunk.items
            )
            # the null item ends the list; pad to a 32-bit boundary (§6.5)
            body.append(_pad4(struct.pack("!I", chunk.ssrc) + items + b"\x00"))
        return _packet(len(self.chunks), SDES, b"".join(body))


@frozen
class Bye:
    """BYE (RFC 3550 §6.6)."""

    ssrcs: tuple[int, ...]
    reason: bytes = b""

    def to_bytes(self) -> bytes:
        """The packet."""
        body = struct.pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        if self.reason:
            body += bytes((len(self.reason),)) + self.reason
        return _packet(len(self.ssrcs), BYE, _pad4(body))


@frozen
class OtherRTCP:
    """A packet type we do not interpret (APP, XR, feedback...): kept as bytes."""

    packet_type: int
    count: int
    body: bytes

    def to_bytes(self) -> bytes:
        """The packet."""
        return _packet(self.count, self.packet_type, _pad4(self.body))


RTCPPacket = SenderReport | ReceiverReport | SourceDescription | Bye | OtherRTCP


def build_rtcp(packets: Iterable[RTCPPacket]) -> bytes:
    """A compound packet of ``packets`` (RFC 3550 §6.1: start with an SR or RR)."""
    return b"".join(p.to_bytes() for p in packets)


def _blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > len(body):
        raise ValueError(f"RTCP report too short for {count} report blocks")
    return tuple(ReportBlock.from_bytes(body, offset + 24 * i) for i in range(count))


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks, offset = [], 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise ValueError("SDES chunk truncated")
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        items = []
        while True:
            if offset >= len(body):
                raise ValueError("SDES item list not terminated")
            kind = body[offset]
            if kind == 0:  # end of list; the chunk is padded to 32 bits
                offset = (offset + 4) & ~3
                break
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                raise ValueError("SDES item truncated")
            end = offset + 2 + body[offset + 1]
            items.append((kind, bytes(body[offset + 2 : end])))
            offset = end
        chunks.append(SDESChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def _parse_one(packet_type: int, count: int, body: bytes) -> RTCPPacket:
    if packet_type == SR:
        if len(body) < _SENDER_INFO.size:
            raise ValueError("SR too short for its sender info")
        ssrc, ntp, rtp, packets, octets = _SENDER_INFO.unpack_from(body)
        reports = _blocks(body, _SENDER_INFO.size, count)
        return SenderReport(ssrc, ntp, rtp, packets, octets, reports)
    if packet_type == RR:
        if len(body) < 4:
            raise ValueError("RR too short for its SSRC")
        return ReceiverReport(
            struct.unpack_from("!I", body)[0], _blocks(body, 4, count)
        )
    if packet_type == SDES:
        return _parse_sdes(body, count)
    if packet_type == BYE:
        if len(body) < 4 * count:
            raise ValueError(f"BYE too short for {count} SSRCs")
        ssrcs = struct.unpack_from(f"!{count}I", body)
        reason, at = b"", 4 * count
        if at < len(body) and body[at]:
            if at + 1 + body[at] > len(body):
                raise ValueError("BYE reason truncated")
            reason = bytes(body[at + 1 : at + 1 + body[at]])
        return Bye(ssrcs, reason)
    return OtherRTCP(packet_type, count, bytes(body))


def parse_rtcp(data: bytes) -> list[RTCPPacket]:
    """
    The packets of a compound RTCP packet.

    :raises ValueError: a packet is malformed or the lengths do not add up
        (RFC 3550 §A.2).
    """
    packets: list[RTCPPacket] = []
    offset, size = 0, len(data)
    if size == 0:
        raise ValueError("empty RTCP packet")
    while offset < size:
        if size - offset < 4:
            raise ValueError("RTCP packet truncated in its header")
        b0, packet_type, length = _HEADER.unpack_from(data, offset)
        if b0 >> 6 != 2:
            raise ValueError(f"RTCP version {b0 >> 6}, not 2")
        end = offset + 4 + 4 * length
        if end > size:
            raise ValueError("RTCP length field exceeds the datagram")
        body_end = end
        if b0 & 0x20:  # padding: only the last packet of a compound may have it
            pad = data[end - 1]
            if end != size or pad == 0 or pad > end - offset - 4:
                raise ValueError("bad RTCP padding")
            body_end -= pad
        packets.append(
            _parse_one(packet_type, b0 & 0x1F, bytes(data[offset + 4 : body_end]))
        )
        offset = end
    return packets


class SourceStats:
    """
    What we received from one source, per RFC 3550 §A.1 (sequence numbers,
    with probation), §A.3 (loss) and §A.8 (jitter).

    :ivar jitter: interarrival jitter estimate, in timestamp units.
    :ivar lsr: the last SR's NTP timestamp (middle 32 bits); ``lsr_arrival``: when it came.
    """

    def __init__(self, ssrc: int, clock_rate: int, sequence: int) -> None:
        """A source whose first packet had ``sequence``: on probation (§A.1)."""
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self._init_seq(sequence)
        self.max_seq = (sequence - 1) & 0xFFFF
        self.probation = MIN_SEQUENTIAL
        self.jitter = 0.0
        self._transit: float | None = None
        self.lsr = 0
        self.lsr_arrival: float | None = None

    def _init_seq(self, sequence: int) -> None:
        self.base_seq = self.max_seq = sequence
        self.bad_seq = 0x10001  # never equal to a sequence number
        self.cycles = self.received = self.received_prior = self.expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
        """RFC 3550 §A.1 ``update_seq``: whether the packet is valid and counted."""
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:  # wrapped: one more cycle
                self.cycles += 0x10000
            self.max_seq = seq
        elif udelta <= 0x10000 - MAX_MISORDER:
            if seq != self.bad_seq:  # a jump: believe it if the next packet follows
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
            self._init_seq(seq)  # the source restarted its numbering
        self.received += 1
        return True

    def update(self, sequence: int, timestamp: int, arrival: float) -> bool:
        """
        A data packet from this source arrived at ``arrival`` (seconds).

        :returns: whether it was counted (not on probation, not a bad jump).
        """
        valid = self._update_seq(sequence)
        if valid:  # §A.8: J += (|D| - J) / 16, in timestamp units
            transit = arrival * self.clock_rate - timestamp
            if self._transit is not None:
                d = abs(transit - self._transit)
                if d > 0x80000000:  # the timestamp wrapped between the two packets
                    d = abs(d - 0x100000000)
                self.jitter += (d - self.jitter) / 16
            self._transit = transit
        return valid

    @property
    def extended_max(self) -> int:
        """The extended highest sequence number received (§A.3)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the first counted one (§A.3)."""
        return self.extended_max - self.base_seq + 1 if self.received else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (§A.3); negative with duplicates."""
        return self.expected - self.received

    def report_block(self, now: float) -> ReportBlock:
        """The reception report for this source; starts the next interval (§A.3)."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        dlsr = 0
        if self.lsr_arrival is not None:
            dlsr = min(int((now - self.lsr_arrival) * 65536), 0xFFFFFFFF)
        highest, jitter = self.extended_max, int(self.jitter)
        return ReportBlock(
            self.ssrc, fraction, self.lost, highest, jitter, self.lsr, dlsr
        )


@frozen
class QualityReport:
    """The media quality of one call, for the call record and the console."""

    packets_sent: int
    packets_received: int
    packets_lost: int
    loss_percent: float
    """Of the packets we expected to receive."""
    jitter_ms: float
    """Interarrival jitter of what we receive (RFC 3550 §6.4.1)."""
    rtt_ms: float | None
    """The last round-trip time measured from the far end's reports."""
    remote_loss_percent: float | None = None
    """Fraction of our packets the far end lost in its last report interval."""
    remote_jitter_ms: float | None = None
    """The jitter the far end measures on our packets."""


class RTCPSession:
    """
    The RTCP state of one RTP session with one far end: feed it what is sent
    and received, ask it for the next report.

    :ivar sources: reception statistics per SSRC heard.
    :ivar rtt: the last round-trip time in seconds, or None.
    """

    def __init__(self, ssrc: int, clock_rate: int, cname: bytes) -> None:
        """
        :param ssrc: our SSRC (the RTP sender's).
        :param clock_rate: the RTP clock rate, for jitter and SR timestamps.
        :param cname: our canonical name (RFC 3550 §6.5.1; RFC 7022: random per session).
        """
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.cname = cname
        self.sources: dict[int, SourceStats] = {}
        self._current: SourceStats | None = None  # the source we report on
        self._left: set[int] = set()  # sources that sent BYE
        self.packets_sent = self.octets_sent = 0
        self._last_sent: tuple[float, int] | None = None  # (seconds, RTP timestamp)
        self._sent_at_reports = [0, 0]  # packet counts at the two previous reports
        self.rtt: float | None = None
        self.remote: ReportBlock | None = None

    def on_rtp_sent(self, timestamp: int, payload_octets: int, now: float) -> None:
        """We sent an RTP packet."""
        self.packets_sent += 1
        self.octets_sent += payload_octets
        self._last_sent = (now, timestamp)

    def on_rtp_received(
        self, ssrc: int, sequence: int, timestamp: int, arrival: float
    ) -> None:
        """An RTP packet arrived."""
        source = self.sources.get(ssrc)
        if source is None:
            if len(self.sources) >= MAX_SOURCES:  # forget the oldest
                del self.sources[next(iter(self.sources))]
            source = self.sources[ssrc] = SourceStats(ssrc, self.clock_rate, sequence)
        source.update(sequence, timestamp, arrival)
        self._current = source
        self._left.discard(ssrc)

    def on_rtcp(self, packets: Iterable[RTCPPacket], now: float) -> None:
        """An RTCP compound packet arrived (parsed) at ``now``."""
        for packet in packets:
            if isinstance(packet, SenderReport):
                source = self.sources.get(packet.ssrc)
                if source is not None:
                    source.lsr = ntp_short(packet.ntp_timestamp)
                    source.lsr_arrival = now
            if isinstance(packet, SenderReport | ReceiverReport):
                for block in packet.reports:
                    if block.ssrc == self.ssrc:
                        self.remote = block
                        rtt = round_trip_time(
                            ntp_short(ntp_from_unix(now)), block.lsr, block.dlsr
                        )
                        if rtt is not None:
                            self.rtt = rtt
            elif isinstance(packet, Bye):
                self._left.update(packet.ssrcs)

    def report(self, now: float) -> list[RTCPPacket]:
        """
        The next compound report: an SR if we sent RTP since the report
        before last, else an RR (RFC 3550 §6.4), then SDES with our CNAME.
        """
        source = self._current
        blocks: tuple[ReportBlock, ...] = ()
        if source is not None and source.received and source.ssrc not in self._left:
            blocks = (source.report_block(now),)
        earlier, _ = self._sent_at_reports
        self._sent_at_reports = [self._sent_at_reports[1], self.packets_sent]
        first: RTCPPacket
        if self.packets_sent > earlier and self._last_sent is not None:
            sent_at, timestamp = self._last_sent
            rtp_now = (
                timestamp + round((now - sent_at) * self.clock_rate)
            ) & 0xFFFFFFFF
            counts = (self.packets_sent, self.octets_sent)
            first = SenderReport(
                self.ssrc, ntp_from_unix(now), rtp_now, *counts, blocks
            )
        else:
            first = ReceiverReport(self.ssrc, blocks)
        sdes = SourceDescription((SDESChunk(self.ssrc, ((CNAME, self.cname),)),))
        return [first, sdes]

    def bye(self, now: float, reason: bytes = b"") -> list[RTCPPacket]:
        """The compound packet that ends our participation (RFC 3550 §6.3.7)."""
        return [*self.report(now), Bye((self.ssrc,), reason)]

    def quality(self) -> QualityReport:
        """The quality of the session so far (all sources heard, summed)."""
        expected = sum(s.expected for s in self.sources.values())
        received = sum(s.received for s in self.sources.values())
        lost = max(0, expected - received)
        current = self._current
        remote = self.remote
        ms = 1000 / self.clock_rate
        return QualityReport(
            packets_sent=self.packets_sent,
            packets_received=received,
            packets_lost=lost,
            loss_percent=100 * lost / expected if expected else 0.0,
            jitter_ms=current.jitter * ms if current is not None else 0.0,
            rtt_ms=self.rtt * 1000 if self.rtt is not None else None,
            remote_loss_percent=remote.fraction_lost * 100 / 256 if remote else None,
            remote_jitter_ms=remote.jitter * ms if remote else None,
        )
