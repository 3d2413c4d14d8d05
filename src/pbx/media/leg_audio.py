"""
One relayed party's audio, as pbx hears and speaks to it without touching
the relay path: what supervision (:mod:`pbx.features.supervision.monitor`)
and in-call conferences (:mod:`pbx.calls.huddle`) are built from.

A :class:`LegInput` takes each RTP packet a leg sends from the relay's tap
(after it was relayed), decodes it and queues a few frames.  A
:class:`LegFeed` is the source a fed leg hears (:meth:`RelaySession.feed
<pbx.media.relay.RelaySession.feed>`, as music on hold is): each frame
handed to it is encoded in the leg's codec and sent from the leg's own
relay port.  :class:`CallMediaTap` is what both need of a live call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from attrs import define, field

from pbx.interfaces import ICodec
from pbx.media.rtp import looks_like_rtcp, parse_rtp

__all__ = ["FRAMES_PER_SECOND", "CallMediaTap", "LegFeed", "LegInput", "NoAudio", "leg_codec"]

#: Payload types that carry no audio to decode (RFC 4733 events, RFC 3389 comfort noise).
_NOT_AUDIO = frozenset({"telephone-event", "cn"})
#: Frames a leg may have waiting before the oldest is dropped: a phone whose
#: clock runs a little fast must not be heard ever later.
MAX_QUEUED = 4
FRAMES_PER_SECOND = 50


class NoAudio(Exception):
    """A leg of the call offered no codec pbx can decode: pbx cannot hear it or speak to it."""


class CallMediaTap(Protocol):
    """What hearing and feeding a live call's legs needs (:class:`pbx.calls.tap.CallTap`)."""

    codecs: Mapping[str, ICodec]

    def listen(
        self, leg: str, listener: Callable[[bytes], object]
    ) -> Callable[[], None]:
        """Hand each RTP packet ``leg`` sends to ``listener`` (beside a recording); returns the remover."""

    def payload_types(self, leg: str) -> dict[int, tuple[str, int]]:
        """``{pt: (lower-case encoding, clock rate)}`` of what ``leg`` sends."""

    def feed(self, leg: str, source: Any, payload_type: int) -> None:
        """``leg`` hears ``source`` instead of the other leg."""

    def unfeed(self, leg: str) -> None:
        """``leg`` hears the other leg again."""


def leg_codec(tap: CallMediaTap, leg: str) -> tuple[int, ICodec]:
    """
    The payload type and codec ``leg`` sends audio in: the first audio
    codec of its SDP that pbx can decode (an answer lists the one in use first).

    :raises NoAudio: there is none.
    """
    for pt, (encoding, _rate) in tap.payload_types(leg).items():
        codec = tap.codecs.get(encoding)
        if encoding not in _NOT_AUDIO and codec is not None:
            return pt, codec
    raise NoAudio(leg)


@define(eq=False)
class LegInput:
    """
    One party's audio as the relay passes it: decoded, queued a few frames deep.

    Packets of another payload type than the leg's codec (events, comfort
    noise) are skipped; so is anything that does not parse as RTP.
    """

    payload_type: int
    codec: ICodec
    _decoder: Any = field(init=False)
    _queue: deque[np.ndarray] = field(init=False, factory=deque)
    dropped: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._decoder = self.codec.new_decoder()

    def packet(self, data: bytes) -> None:
        """One datagram the leg sent (the relay's tap)."""
        if looks_like_rtcp(data):  # RFC 5761 §4: RTCP multiplexed on the RTP port
            return
        try:
            packet = parse_rtp(data)
        except ValueError:
            return
        if packet.payload_type != self.payload_type:
            return
        try:
            pcm = np.asarray(self._decoder.decode(packet.payload), dtype=np.int16)
        except ValueError:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(pcm)

    def pop(self) -> np.ndarray | None:
        """The oldest frame waiting, or None."""
        return self._queue.popleft() if self._queue else None


@define(eq=False)
class LegFeed:
    """
    What a fed leg hears: each tick the mix's frame for the leg, encoded in
    its codec and handed to the relay's :class:`~pbx.media.relay.RelayFeed`.

    It is the ``source`` of :meth:`pbx.media.relay.RelaySession.feed`.
    """

    codec: ICodec
    _encoder: Any = field(init=False)
    _sink: Callable[[bytes], object] | None = field(init=False, default=None)
    sent: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._encoder = self.codec.new_encoder()

    @property
    def timestamp_step(self) -> int:
        """RTP clock ticks per 20 ms frame."""
        return int(self.codec.clock_rate) // FRAMES_PER_SECOND

    @property
    def attached(self) -> bool:
        """Whether the relay still sends this feed to the leg (music on hold replaces it)."""
        return self._sink is not None

    def add(self, sink: Callable[[bytes], object]) -> Callable[[], None]:
        """The relay's feed of the leg starts listening; returns what stops it."""
        self._sink = sink

        def remove() -> None:
            if self._sink is sink:
                self._sink = None

        return remove

    def send(self, pcm: np.ndarray | None) -> None:
        """Encode one frame (silence for None) and send it to the leg."""
        sink = self._sink
        if sink is None:
            return
        n = int(self.codec.sample_rate) // FRAMES_PER_SECOND
        if pcm is None:
            pcm = np.zeros(n, dtype=np.int16)
        elif len(pcm) != n:
            pcm = np.pad(pcm[:n], (0, n - len(pcm[:n])))
        sink(self._encoder.encode(pcm))
        self.sent += 1
