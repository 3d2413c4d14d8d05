"""
What a relayed leg hears instead of the other leg while it is fed (music on
hold, announcements, a supervisor's whisper): :class:`RelayFeed`, one
listener of a shared source (:class:`~pbx.media.playout.Playout`) that
puts an RTP header on each frame and sends it from the leg's relay socket.
See :meth:`pbx.media.relay.RelaySession.feed`.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["WAIT_FRAMES", "FedEndpoint", "RelayFeed"]


class FedEndpoint(Protocol):
    """What a feed needs of the leg's RTP socket (a :class:`pbx.media.relay_endpoint.RelayEndpoint`)."""

    latched: tuple[str, int] | None
    remote: tuple[str, int] | None
    closed: bool
    send: Callable[[bytes, tuple[str, int]], Any]

_RTP_HEADER = struct.Struct("!BBHII")
#: Frames a feed holds back waiting for the other leg's stream to continue
#: (see :class:`RelayFeed`) before it starts a stream of its own.
WAIT_FRAMES = 3


class RelayFeed:
    """
    One listener of a shared source: puts an RTP header on each payload and
    sends it from the leg's RTP socket to the leg's phone.

    The header continues the stream the phone has been receiving from the
    relay (RFC 3550 §5.1, §8.2): the first frame waits (up to
    :data:`WAIT_FRAMES` frames) for the other leg's next packet, which the
    relay drops while this leg is fed (:meth:`observe`), and goes out in its
    place, under its SSRC, sequence number and timestamp: the next number
    after the last packet relayed.  From then on the feed keeps its own pace,
    one number and one frame of timestamp per frame, as the other leg keeps
    its own (both are real time), so when the leg is unfed the other leg's
    packets carry on about where the feed stopped.  Following the other
    leg's numbering during the feed would turn every burst of scheduling
    jitter into lost packets and a shifted prompt; where the two ends drift
    apart, the receiver sees a short loss (numbers skipped forward) or drops
    a packet or two as late (numbers repeated).  A feed that sees no packet
    in time, or is told not to follow (the other leg is silent, or its
    timestamps are rescaled by transcoding), sends a stream of its own:
    random SSRC, sequence and timestamp (§5.1).

    The per-listener work of music on hold: one header pack, one ``sendto``.
    The first packet has the marker bit (a new talkspurt, RFC 3551 §4.1).
    """

    __slots__ = ("_anchored", "_endpoint", "_marker", "_payload_type", "_step", "_waiting",
                 "send_errors", "sent", "seq", "ssrc", "timestamp")

    def __init__(self, endpoint: FedEndpoint, payload_type: int, timestamp_step: int,
                 *, follow: bool = True) -> None:
        """
        :param endpoint: the RTP socket of the leg that listens.
        :param payload_type: the leg's payload type for the source's codec.
        :param timestamp_step: RTP clock ticks per frame.
        :param follow: continue the other leg's stream (see above); False: a stream of its own.
        """
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} out of range")
        self._endpoint = endpoint
        self._payload_type = payload_type
        self._marker = 0x80
        self._step = timestamp_step
        # RFC 3550 §5.1: random initial sequence number and timestamp.
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self._anchored = not follow
        self._waiting = WAIT_FRAMES if follow else 0
        self.sent = 0
        self.send_errors = 0

    def observe(self, data: bytes) -> bool:
        """
        One packet of the other leg (dropped by the relay while this leg is
        fed): the stream to continue, if the feed has not started yet.

        :returns: whether the feed has its numbering (nothing more to observe).
        """
        if self._anchored:
            return True
        # RTP version 2 only; RFC 5761 §4: payload types 72-76 are RTCP on a muxed port.
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= (data[1] & 0x7F) <= 76:
            return False
        _, _, self.seq, self.timestamp, self.ssrc = _RTP_HEADER.unpack_from(data)
        self._anchored = True
        return True

    def __call__(self, payload: bytes) -> None:
        """Send one frame's ``payload`` to the leg's phone (dropped while it has no address)."""
        endpoint = self._endpoint
        dest = endpoint.latched or endpoint.remote
        if dest is None or endpoint.closed:
            return
        if not self._anchored:
            if self._waiting > 0:
                self._waiting -= 1
                return
            self._anchored = True  # the other leg is silent: our own stream
        header = _RTP_HEADER.pack(0x80, self._marker | self._payload_type, self.seq, self.timestamp, self.ssrc)
        self._marker = 0
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self._step) & 0xFFFFFFFF
        try:
            endpoint.send(header + payload, dest)
        except OSError:
            self.send_errors += 1
            return
        self.sent += 1
