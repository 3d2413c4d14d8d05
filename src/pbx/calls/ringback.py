"""
Ringback for a transferee while a blind transfer's target rings.

The transferor has left; the transferee's side of the relay session stays
as it is, and pbx writes RTP into it itself: a ringback tone in the codec
the transferee already receives (G.711, its payload type), from the relay
socket the transferee already receives from, to the address the relay
sends to.  The relay's hot path is untouched; when the target answers,
its packets follow on the same socket (a new SSRC, which RFC 3550 §8.2
tells receivers to expect).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pbx.media import g711
from pbx.media.channel import tone_samples
from pbx.media.relay_endpoint import RelayEndpoint
from pbx.media.rtp import RTPSender

#: Samples in one 20 ms packet at 8 kHz.
FRAME = 160
#: One whole ringback cadence (2 s on, 4 s off), looped.
ROUND = 6.0
_ENCODERS = {"pcmu": g711.ulaw_encode, "pcma": g711.alaw_encode}


def ringback_frames(codec: str) -> list[bytes] | None:
    """One cadence of ringback encoded in ``codec`` (PCMU or PCMA), 20 ms a frame; None for another codec."""
    encode = _ENCODERS.get(codec.lower())
    if encode is None:
        return None
    samples = tone_samples("ringback", ROUND, 8000)
    return [encode(samples[i : i + FRAME]) for i in range(0, len(samples), FRAME)]


class Ringback:
    """
    Plays ringback into one relay socket until stopped.

    :param clock: paces the packets (every 20 ms).
    :param endpoint: the transferee's RTP socket of the relay session.
    :param frames: encoded frames (:func:`ringback_frames`).
    :param payload_type: the transferee's payload type for that codec.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: RelayEndpoint,
        frames: list[bytes],
        payload_type: int,
    ) -> None:
        self._endpoint = endpoint
        self._frames = frames
        self._next = 0
        self._sender = RTPSender(payload_type)
        self._clock = clock
        # The loop calls back into us: it exists only while playing, so a
        # stopped ringback is no reference cycle left to the garbage collector.
        self._loop: LoopingCall | None = None
        #: Packets written so far.
        self.sent = 0

    def start(self) -> None:
        """Begin at once."""
        if self._loop is None:
            self._loop = LoopingCall(self._send)
            self._loop.clock = self._clock
            self._loop.start(FRAME / 8000, now=True)

    def stop(self) -> None:
        """Stop (the target answered, or the transfer ended)."""
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    @property
    def running(self) -> bool:
        """Whether packets are still being written."""
        return self._loop is not None and bool(self._loop.running)

    def _send(self) -> None:
        try:
            frame = self._frames[self._next]
            self._next = (self._next + 1) % len(self._frames)
            packet = self._sender.next_packet(frame, FRAME).to_bytes()
            dest: Any = self._endpoint.dest
            if dest is None or self._endpoint.closed:
                return
            self._endpoint.send(packet, dest)
            self.sent += 1
        except OSError:
            pass  # as the relay does: a full send buffer drops the packet
        except Exception:
            self.log.failure("ringback failed")
            self.stop()
