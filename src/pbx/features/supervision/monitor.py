"""
The media of one supervised call: both parties' audio, taken from the
relay as it passes, mixed for the supervisor; and in whisper and barge the
supervisor's voice mixed into what a party hears.

The call's own relay path is not changed to listen: each leg's RTP is
handed to a :class:`LegInput` after it is relayed (the relay's tap), which
decodes it and queues a few frames.  The three voices meet in one
:class:`~pbx.media.mix.Mix`: the legs ``"a"`` and ``"b"`` put a frame each
tick of the monitor's :class:`~pbx.media.media_clock.MediaClock`, and the
supervisor's channel joins the mix like a conference member, so it hears
the sum of both parties.

To be heard, the supervisor's voice must reach a phone the relay serves.
A leg that should hear the supervisor is *fed* (:meth:`RelaySession.feed`,
as music on hold is): the other party's packets towards it are dropped,
and each tick it gets the mix's frame for its place instead (everyone but
itself: the other party and the supervisor), encoded in its own codec and
sent from its own relay port.  Whisper feeds the agent's leg; barge feeds
both.  Unfeeding restores the plain relay the moment the supervisor leaves
(or drops back to listening).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from attrs import define, field

from twisted.logger import Logger

from pbx.interfaces import ICodec
from pbx.media.media_clock import MediaClock
from pbx.media.mix import Member, Mix
from pbx.media.rtp import looks_like_rtcp, parse_rtp

__all__ = ["CallMediaTap", "LegInput", "Monitor", "NoAudio", "fed_legs"]

#: Payload types that carry no audio to decode (RFC 4733 events, RFC 3389 comfort noise).
_NOT_AUDIO = frozenset({"telephone-event", "cn"})
#: Frames a leg may have waiting before the oldest is dropped: a phone whose
#: clock runs a little fast must not make the supervisor hear it ever later.
MAX_QUEUED = 4
FRAMES_PER_SECOND = 50


class NoAudio(Exception):
    """A leg of the call offered no codec pbx can decode: it cannot be supervised."""


class CallMediaTap(Protocol):
    """What a monitor needs of a live call (:class:`pbx.calls.tap.CallTap`)."""

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


def fed_legs(mode: str, agent: str) -> frozenset[str]:
    """
    The legs that hear the mix (and so the supervisor) in ``mode``.

    :param agent: the supervised extension's leg, ``"a"`` or ``"b"``.
    """
    if mode == "whisper":
        return frozenset({agent})
    if mode == "barge":
        return frozenset({"a", "b"})
    return frozenset()


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


@define(eq=False)
class Monitor:
    """
    A supervisor on one call.  :meth:`start` taps both legs; the
    supervisor's channel then joins :attr:`mix`; :meth:`set_mode` feeds or
    unfeeds the legs; :meth:`stop` puts everything back as it was.

    :ivar tap: the call's media (:class:`pbx.calls.tap.CallTap`).
    :ivar agent: the supervised extension's leg, ``"a"`` or ``"b"``.
    :ivar clock: ticks the legs' frames into the mix and the feeds out.
    :ivar mode: ``listen``, ``whisper`` or ``barge``.
    """

    tap: CallMediaTap
    agent: str
    clock: MediaClock
    mode: str = "listen"
    mix: Mix = field(init=False)
    _inputs: dict[str, LegInput] = field(init=False, factory=dict)
    _members: dict[str, Member] = field(init=False, factory=dict)
    _feeds: dict[str, LegFeed] = field(init=False, factory=dict)
    _stop_ticking: Callable[[], None] | None = field(init=False, default=None)
    _on_stop: list[Callable[[], object]] = field(init=False, factory=list)
    _unlisten: list[Callable[[], None]] = field(init=False, factory=list)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        if self.agent not in ("a", "b"):
            raise ValueError(f"agent leg must be 'a' or 'b', not {self.agent!r}")
        codecs = {leg: leg_codec(self.tap, leg) for leg in ("a", "b")}
        wide = any(int(codec.sample_rate) > 8000 for _, codec in codecs.values())
        self.mix = Mix(sample_rate=16000 if wide else 8000)
        for leg, (pt, codec) in codecs.items():
            self._inputs[leg] = LegInput(pt, codec)
            self._members[leg] = self.mix.add(leg, int(codec.sample_rate))

    @property
    def running(self) -> bool:
        """Whether the legs are tapped (between :meth:`start` and :meth:`stop`)."""
        return self._stop_ticking is not None

    @property
    def fed(self) -> frozenset[str]:
        """The legs that hear the supervisor now."""
        return frozenset(self._feeds)

    def start(self) -> None:
        """Tap both legs and start ticking, in :attr:`mode`."""
        if self.running:
            return
        for leg, leg_input in self._inputs.items():
            self._unlisten.append(self.tap.listen(leg, leg_input.packet))
        self._stop_ticking = self.clock.add(self._tick)
        self._apply(fed_legs(self.mode, self.agent))

    def set_mode(self, mode: str) -> None:
        """Listen, whisper or barge from now on."""
        if mode not in ("listen", "whisper", "barge"):
            raise ValueError(f"unknown supervision mode {mode!r}")
        self.mode = mode
        if self.running:
            self._apply(fed_legs(mode, self.agent))

    def _apply(self, wanted: frozenset[str]) -> None:
        for leg in sorted(set(self._feeds) - wanted):
            # A feed replaced meanwhile (music on hold) is not ours to end.
            if self._feeds.pop(leg).attached:
                self.tap.unfeed(leg)
        for leg in sorted(wanted - set(self._feeds)):
            leg_input = self._inputs[leg]
            feed = self._feeds[leg] = LegFeed(leg_input.codec)
            self.tap.feed(leg, feed, leg_input.payload_type)

    def when_stopped(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once :meth:`stop` has run (the supervisor's phone is hung up)."""
        self._on_stop.append(callback)

    def stop(self) -> None:
        """Unfeed and untap both legs (the call is relayed exactly as before) and stop ticking."""
        stop, self._stop_ticking = self._stop_ticking, None
        if stop is None:
            return
        stop()
        self._apply(frozenset())
        unlisten, self._unlisten = self._unlisten, []
        for remove in unlisten:
            remove()
        for member in self._members.values():
            member.remove()
        callbacks, self._on_stop = self._on_stop, []
        for callback in callbacks:
            callback()

    def _tick(self, _: int) -> None:
        for leg, leg_input in self._inputs.items():
            pcm = leg_input.pop()
            if pcm is not None:
                self._members[leg].put(pcm)
        for leg, feed in self._feeds.items():
            feed.send(self._members[leg].take())
