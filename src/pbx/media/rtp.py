"""
RTP packets (RFC 3550 §5.1) and the sending side of an RTP stream.

:func:`parse_rtp` turns a datagram into an :class:`RTPPacket` and raises
:class:`ValueError` for anything that is not a valid RTP packet;
:meth:`RTPPacket.to_bytes` is its inverse.  :class:`RTPSender` numbers the
packets of one outgoing stream.

This module is pure: no Twisted, no clock, no sockets.
"""

from __future__ import annotations

import random
import struct

from attrs import frozen

__all__ = [
    "RTP_VERSION",
    "RTPExtension",
    "RTPPacket",
    "RTPSender",
    "looks_like_rtcp",
    "parse_rtp",
    "seq_delta",
    "ts_delta",
]

RTP_VERSION = 2
_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_EXT_HEADER = struct.Struct("!HH")  # profile-defined 16 bits, length in 32-bit words
HEADER_SIZE = _HEADER.size


def seq_delta(a: int, b: int) -> int:
    """``a - b`` for 16-bit sequence numbers, in -32768..32767 (wraparound-aware)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_delta(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, as a signed value (wraparound-aware)."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def looks_like_rtcp(data: bytes) -> bool:
    """
    Whether a datagram on an RTP socket is RTCP (RTCP-mux, RFC 5761 §4).

    RTCP packet types 192-223 would be RTP payload types 64-95 with the
    marker bit set, which RFC 5761 §4 forbids RTP to use.
    """
    return len(data) > 1 and 192 <= data[1] <= 223


@frozen
class RTPExtension:
    """A header extension (RFC 3550 §5.3.1): kept, but not interpreted."""

    profile: int
    """The 16 bits "defined by profile" (0xBEDE: RFC 8285 one-byte headers)."""
    data: bytes
    """The extension body; a multiple of 4 bytes long."""


@frozen
class RTPPacket:
    """One RTP packet (RFC 3550 §5.1)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RTPExtension | None = None
    padding: int = 0
    """Padding octets after the payload, the count octet included (0: no padding)."""

    def to_bytes(self) -> bytes:
        """
        The packet on the wire.

        :raises ValueError: a field does not fit its header field.
        """
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} out of range 0-127")
        if len(self.csrcs) > 15:
            raise ValueError("an RTP packet carries at most 15 CSRCs")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding {self.padding} out of range 0-255")
        b0 = RTP_VERSION << 6 | len(self.csrcs)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        try:
            parts = [
                _HEADER.pack(
                    b0,
                    self.marker << 7 | self.payload_type,
                    self.sequence,
                    self.timestamp,
                    self.ssrc,
                )
            ]
            if self.csrcs:
                parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
            ext = self.extension
            if ext is not None:
                words, rest = divmod(len(ext.data), 4)
                if rest:
                    raise ValueError(
                        "RTP header extension is not a multiple of 4 bytes"
                    )
                parts += [_EXT_HEADER.pack(ext.profile, words), ext.data]
        except struct.error as e:
            raise ValueError(f"RTP header field out of range: {e}") from None
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def parse_rtp(data: bytes) -> RTPPacket:
    """
    Parse one RTP packet.

    The header extension, if any, is skipped over (kept in
    :attr:`RTPPacket.extension`) and padding is removed from the payload.

    :raises ValueError: the datagram is not a valid RTP packet (RFC 3550 §A.1).
    """
    size = len(data)
    if size < HEADER_SIZE:
        raise ValueError(f"RTP packet of {size} bytes is shorter than its header")
    b0, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise ValueError(f"RTP version {b0 >> 6}, not 2")
    count = b0 & 0x0F
    offset = HEADER_SIZE + 4 * count
    if offset > size:
        raise ValueError(f"RTP packet too short for {count} CSRCs")
    csrcs = struct.unpack_from(f"!{count}I", data, HEADER_SIZE) if count else ()
    extension = None
    if b0 & 0x10:  # RFC 3550 §5.3.1
        if offset + 4 > size:
            raise ValueError("RTP packet too short for its header extension")
        profile, words = _EXT_HEADER.unpack_from(data, offset)
        end = offset + 4 + 4 * words
        if end > size:
            raise ValueError("RTP header extension longer than the packet")
        extension = RTPExtension(profile, bytes(data[offset + 4 : end]))
        offset = end
    end, padding = size, 0
    if b0 & 0x20:  # RFC 3550 §5.1: the last octet counts the padding, itself included
        padding = data[-1]
        if padding == 0 or offset + padding > size:
            raise ValueError(f"RTP padding count {padding} is invalid")
        end -= padding
    return RTPPacket(
        b1 & 0x7F,
        sequence,
        timestamp,
        ssrc,
        bytes(data[offset:end]),
        bool(b1 & 0x80),
        csrcs,
        extension,
        padding,
    )


class RTPSender:
    """
    The numbering of one outgoing RTP stream.

    The SSRC and the first sequence number and timestamp are random
    (RFC 3550 §5.1, §8.1).  Every packet takes the next sequence number; the
    media timestamp advances by the samples each packet carries.  The first
    packet of a talkspurt (the first packet of the stream, or the first
    after :meth:`advance`) has the marker bit set (RFC 3551 §4.1).

    Telephone events (RFC 4733 §2.3.1) use their own clock: every packet of
    one event carries the media timestamp of the moment the event began,
    while sequence numbers keep counting.

    :ivar ssrc: the synchronization source identifier of the stream.
    :ivar sequence: the sequence number of the next packet.
    :ivar timestamp: the media timestamp of the next audio packet.
    :ivar packets_sent: packets numbered so far.
    :ivar octets_sent: payload octets in them (RFC 3550 §6.4.1 "sender's octet count").
    """

    def __init__(
        self,
        payload_type: int,
        *,
        rng: random.Random | None = None,
        ssrc: int | None = None,
    ) -> None:
        """
        :param payload_type: the payload type of audio packets.
        :param rng: randomness for the initial values; ``SystemRandom`` unless given.
        :param ssrc: a fixed SSRC instead of a random one.
        """
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} out of range 0-127")
        rng = rng if rng is not None else random.SystemRandom()
        self.payload_type = payload_type
        self.ssrc = rng.getrandbits(32) if ssrc is None else ssrc
        self.sequence = rng.getrandbits(16)
        self.timestamp = rng.getrandbits(32)
        self.packets_sent = 0
        self.octets_sent = 0
        self._talkspurt = True
        self._event_timestamp: int | None = None

    def _number(
        self, pt: int, timestamp: int, payload: bytes, marker: bool
    ) -> RTPPacket:
        packet = RTPPacket(pt, self.sequence, timestamp, self.ssrc, payload, marker)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return packet

    def next_packet(
        self, payload: bytes, samples: int, marker: bool = False, pt: int | None = None
    ) -> RTPPacket:
        """
        The next audio packet; the media timestamp then advances by ``samples``.

        :param payload: the encoded media.
        :param samples: RTP clock ticks the payload lasts (160 for 20 ms at 8 kHz).
        :param marker: set the marker bit even if this is not a talkspurt's first packet.
        :param pt: the payload type, if not the stream's (e.g. comfort noise).
        """
        packet = self._number(
            self.payload_type if pt is None else pt,
            self.timestamp,
            payload,
            marker or self._talkspurt,
        )
        self._talkspurt = False
        self._event_timestamp = None
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        return packet

    def advance(self, samples: int) -> None:
        """
        Let ``samples`` of media time pass without sending (silence
        suppression, a DTMF event replacing audio): the next audio packet
        starts a new talkspurt.
        """
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self._talkspurt = True

    def next_event_packet(
        self, payload: bytes, *, pt: int, start: bool = False
    ) -> RTPPacket:
        """
        The next telephone-event packet (RFC 4733).

        :param payload: the event payload (event, E bit, volume, duration).
        :param pt: the negotiated telephone-event payload type.
        :param start: this is the first packet of a new event: it takes the
            current media timestamp and the marker bit (RFC 4733 §2.5.1.2).
            Without it, the packet belongs to the current event (its updates
            and its three end packets share one timestamp).
        """
        event_ts = self._event_timestamp
        marker = start or event_ts is None
        if marker:
            event_ts = self._event_timestamp = self.timestamp
        assert event_ts is not None
        return self._number(pt, event_ts, payload, marker)
