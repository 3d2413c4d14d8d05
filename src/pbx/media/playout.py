"""
Music on hold played once per class and codec, heard by every listener.

A :class:`Playout` plays one :class:`~pbx.media.music.MusicClass` in one
codec: each 20 ms tick of the shared :class:`~pbx.media.media_clock.MediaClock`
it cuts one frame of the class's track, encodes it once, and hands the
same payload to each of its sinks.  A sink is one listener: a callable
that puts its own RTP header on the payload and sends it
(:class:`pbx.media.relay.RelayFeed`).  A thousand held callers on one
class and codec therefore cost one encoder; each costs a header and a
``sendto``.

A playout ticks only while it has a sink; :class:`HoldMusic` makes one
per (class, codec) on demand and keeps it, so a class keeps its place in
the tune between callers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from attrs import define, field

from twisted.logger import Logger

from pbx.interfaces import ICodec
from pbx.media.media_clock import MediaClock
from pbx.media.music import PCM, MusicClass

__all__ = ["DEFAULT_CLASS", "HoldMusic", "Playout", "Sink"]

#: The class of an extension the configuration names no class for.
DEFAULT_CLASS = "default"
#: Most frames a late tick sends at once to catch up with the clock.
MAX_BURST = 5

Sink = Callable[[bytes], object]
"""One listener: takes each encoded frame (the RTP payload)."""


@define(eq=False)
class Playout:
    """
    One class in one codec: one encoder, one frame each tick, to every sink.

    :ivar timestamp_step: RTP clock ticks per frame (``clock_rate * ptime``).
    """

    music: MusicClass
    codec: ICodec
    clock: MediaClock
    timestamp_step: int = field(init=False)
    frames_played: int = field(init=False, default=0)
    _sinks: dict[int, Sink] = field(init=False, factory=dict)
    _next_key: int = field(init=False, default=0)
    _encoder: object = field(init=False, default=None)
    _track: PCM = field(init=False)
    _frame: int = field(init=False)
    _position: int = field(init=False, default=0)
    _stop: Callable[[], None] | None = field(init=False, default=None)
    _epoch: float | None = field(init=False, default=None)
    _frames: int = field(init=False, default=0)

    log = Logger()

    def __attrs_post_init__(self) -> None:
        ptime = self.clock.ptime
        self._frame = round(self.codec.sample_rate * ptime)
        self.timestamp_step = round(self.codec.clock_rate * ptime)
        track = self.music.pcm(self.codec.sample_rate)
        short = -len(track) % self._frame
        if short:  # whole frames: the last one padded with silence
            track = np.concatenate([track, np.zeros(short, np.int16)])
        self._track = track

    @property
    def listeners(self) -> int:
        """How many sinks hear this playout."""
        return len(self._sinks)

    def add(self, sink: Sink) -> Callable[[], None]:
        """
        Send every frame from the next tick on to ``sink``.

        :returns: a function that removes the sink (calling it again does nothing).
        """
        key = self._next_key
        self._next_key += 1
        self._sinks[key] = sink
        if self._stop is None:
            if self._encoder is None:
                self._encoder = self.codec.new_encoder()
            self._stop = self.clock.add(self._tick)
            # The first frame is due one ptime from now.
            self._epoch, self._frames = self.clock.seconds() + self.clock.ptime, 0

        def remove() -> None:
            if (
                self._sinks.pop(key, None) is not None
                and not self._sinks
                and self._stop is not None
            ):
                stop, self._stop, self._epoch = self._stop, None, None
                stop()

        return remove

    def next_frame(self) -> PCM:
        """The next 20 ms of the track, from the start again after its end."""
        start = self._position
        end = start + self._frame
        self._position = 0 if end >= len(self._track) else end
        return self._track[start:end]

    def _tick(self, _: int) -> None:
        # Frames follow the clock, not the count of ticks: a reactor that
        # was late (a busy machine) gets the frames it owes, up to
        # MAX_BURST at once; after a longer stall the music goes on from
        # where it stopped.
        assert self._epoch is not None
        due = round((self.clock.seconds() - self._epoch) / self.clock.ptime) + 1
        owed = due - self._frames
        if owed > MAX_BURST:
            self._frames, owed = due - MAX_BURST, MAX_BURST
        for _ in range(owed):
            self._frames += 1
            self._play()

    def _play(self) -> None:
        payload = self._encoder.encode(self.next_frame())  # type: ignore[attr-defined]
        self.frames_played += 1
        for sink in list(self._sinks.values()):
            sink(payload)


@define(eq=False)
class HoldMusic:
    """
    The music classes and who hears which: one :class:`Playout` per class
    and codec in use.

    :param classes: the loaded classes by name; ``default`` is always there.
    :param extensions: the class of each extension that has its own.
    :param codecs: our codecs by lower-case name.
    :param clock: the 20 ms clock every playout ticks on.
    """

    classes: Mapping[str, MusicClass]
    extensions: Mapping[str, str]
    codecs: Mapping[str, ICodec]
    clock: MediaClock
    _playouts: dict[tuple[str, str], Playout] = field(init=False, factory=dict)

    def class_for(self, extension: str, line: str = "") -> str:
        """
        The class the other party hears when ``extension`` holds: the
        class of the outside line the call runs over (``line``: a DID's, a
        route's or a trunk's, :mod:`pbx.trunks.moh`) when it has one, else
        the extension's own, else the default.
        """
        for name in (line, self.extensions.get(extension, "")):
            if name and name in self.classes:
                return name
        return DEFAULT_CLASS

    def playout(self, class_name: str, codec: str) -> Playout | None:
        """
        The playout of ``class_name`` in the codec named ``codec`` (any
        case), made the first time; None when we have no such codec or class.
        """
        key = (class_name, codec.lower())
        playout = self._playouts.get(key)
        if playout is None:
            music, ours = self.classes.get(class_name), self.codecs.get(key[1])
            if music is None or ours is None:
                return None
            playout = self._playouts[key] = Playout(music, ours, self.clock)
        return playout

    def listeners(self) -> dict[str, int]:
        """Listeners by ``class/codec``, for the operator."""
        return {f"{c}/{k}": p.listeners for (c, k), p in self._playouts.items()}
