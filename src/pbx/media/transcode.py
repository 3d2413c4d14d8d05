"""
Transcoding RTP between two codecs, for calls whose legs share none.

The relay normally forwards packets untouched.  When the callee chose a
codec the caller did not offer, each direction gets an
:class:`RTPTranscoder`: the packet is parsed, its payload decoded,
resampled and encoded in the other codec, and a packet with the other
leg's payload type and clock is built.  Sequence numbers, SSRC and marker
pass through; telephone-events (RFC 4733) only change payload type.
"""

from __future__ import annotations

from attrs import define, field

from pbx.interfaces import ICodec
from pbx.media.resample import Transcoder
from pbx.media.rtp import RTPPacket, parse_rtp


@define(eq=False)
class RTPTranscoder:
    """
    One direction of a transcoded call: packets of ``source`` (payload type
    ``source_pt``) in, packets of ``destination`` (``destination_pt``) out.

    :ivar events: (incoming, outgoing) telephone-event payload types, or None
        to drop telephone-events.
    """

    source: ICodec
    source_pt: int
    destination: ICodec
    destination_pt: int
    events: tuple[int, int] | None = None
    _transcoder: Transcoder = field(init=False, repr=False)
    dropped: int = 0

    def __attrs_post_init__(self) -> None:
        self._transcoder = Transcoder(self.source, self.destination)

    def _timestamp(self, timestamp: int) -> int:
        """The timestamp on the destination clock (modular, so continuous)."""
        src, dst = self.source.clock_rate, self.destination.clock_rate
        if src == dst:
            return timestamp
        return (timestamp * dst // src) & 0xFFFFFFFF

    def __call__(self, data: bytes) -> bytes | None:
        """Turn one packet; None drops it (malformed, other payload, or buffering)."""
        try:
            packet = parse_rtp(data)
        except ValueError:
            self.dropped += 1
            return None
        pt = packet.payload_type
        if self.events is not None and pt == self.events[0]:
            payload = packet.payload
            out_pt = self.events[1]
        elif pt == self.source_pt:
            try:
                payload = self._transcoder(packet.payload)
            except ValueError:
                self.dropped += 1
                return None
            if not payload:
                return None
            out_pt = self.destination_pt
        else:
            self.dropped += 1  # comfort noise and anything not negotiated
            return None
        return RTPPacket(out_pt, packet.sequence, self._timestamp(packet.timestamp), packet.ssrc,
                         payload, packet.marker).to_bytes()
