"""
Relayed parties that talk through pbx rather than straight through the
relay: a three-way call made by keys, a consultation while the other party
waits (:mod:`pbx.calls.consult`).

A :class:`Huddle` holds *places*, each one leg of a relay session (a
:class:`~pbx.media.leg_audio.CallMediaTap` and a leg name).  Places may be
on different sessions: that is how a party pbx dialled on a session of its
own meets the two parties of a call.  A place either

- *talks*: what the leg sends is decoded (:class:`~pbx.media.leg_audio.LegInput`
  on the relay's listener) into one :class:`~pbx.media.mix.Mix`, and the
  leg is fed (:class:`~pbx.media.leg_audio.LegFeed`) the sum of every
  other talking place, in its own codec, from its own relay port; or
- *hears a tone* (ringback while the third party rings, busy when it
  cannot be reached), or silence, fed the same way; what it says goes
  nowhere.

A leg with no place is untouched: the relay carries it as before, or music
on hold feeds it.  Leaving puts a leg back exactly as it was (unfed,
unlistened).  The huddle ticks on the shared 20 ms
:class:`~pbx.media.media_clock.MediaClock`, as supervision's monitor does
(:mod:`pbx.features.supervision.monitor`, the same building blocks).

The mix runs at 16 kHz so a wideband party (G.722) keeps its upper band;
narrowband places are resampled to it and back (a few hundred samples a
tick for each of three parties).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np
from attrs import define, field

from twisted.logger import Logger

from pbx.interfaces import ICodec
from pbx.media.channel import TONES, tone_samples
from pbx.media.leg_audio import (
    FRAMES_PER_SECOND,
    CallMediaTap,
    LegFeed,
    LegInput,
    leg_codec,
)
from pbx.media.media_clock import MediaClock
from pbx.media.mix import Member, Mix

__all__ = ["Huddle"]

#: The mix's rate (see the module docstring).
MIX_RATE = 16000


def tone_frames(kind: str | None, rate: int) -> list[np.ndarray]:
    """One cadence of tone ``kind`` (see :data:`pbx.media.channel.TONES`) in 20 ms frames; None: one silent frame."""
    n = rate // FRAMES_PER_SECOND
    if kind is None:
        return [np.zeros(n, dtype=np.int16)]
    _freqs, on, off = TONES[kind]
    samples = tone_samples(kind, on + off, rate)
    return [samples[i : i + n] for i in range(0, len(samples) - n + 1, n)]


@define(eq=False)
class _Place:
    """One leg in the huddle: what it is fed, and, while it talks, what it says."""

    tap: CallMediaTap
    leg: str
    payload_type: int
    codec: ICodec
    feed: LegFeed
    #: While talking: its decoded input, its place in the mix, and what stops the listening.
    heard: LegInput | None = None
    member: Member | None = None
    unlisten: Callable[[], None] | None = None
    #: While not talking: the tone's frames, looped.
    tone: list[np.ndarray] = field(factory=list)
    next_frame: int = 0

    def send_tone(self) -> None:
        frame = self.tone[self.next_frame]
        self.next_frame = (self.next_frame + 1) % len(self.tone)
        self.feed.send(frame)


@define(eq=False)
class Huddle:
    """
    Relayed legs mixed or toned by pbx (see the module docstring).

    :ivar clock: ticks every place each 20 ms while there is one.
    """

    clock: MediaClock
    mix: Mix = field(init=False, factory=lambda: Mix(sample_rate=MIX_RATE))
    _places: dict[Hashable, _Place] = field(init=False, factory=dict)
    _stop_ticking: Callable[[], None] | None = field(init=False, default=None)
    log = Logger()

    @property
    def talking(self) -> frozenset[Hashable]:
        """The keys of the places that talk."""
        return frozenset(k for k, p in self._places.items() if p.member is not None)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a place."""
        return key in self._places

    def talk(self, key: Hashable, tap: CallMediaTap, leg: str) -> None:
        """
        ``leg`` of ``tap`` talks with the other talking places from now on.

        :raises pbx.media.leg_audio.NoAudio: pbx cannot decode the leg's codec.
        """
        place = self._place(key, tap, leg)
        if place.member is not None:
            return
        place.heard = LegInput(place.payload_type, place.codec)
        place.member = self.mix.add(key, int(place.codec.sample_rate))
        place.unlisten = tap.listen(leg, place.heard.packet)

    def tone(self, key: Hashable, tap: CallMediaTap, leg: str, kind: str | None) -> None:
        """
        ``leg`` of ``tap`` hears tone ``kind`` (``ringback``, ``busy``,
        ``congestion``; None: silence) and nobody hears it.

        :raises pbx.media.leg_audio.NoAudio: pbx cannot encode the leg's codec.
        """
        place = self._place(key, tap, leg)
        self._mute(place)
        place.tone = tone_frames(kind, int(place.codec.sample_rate))
        place.next_frame = 0

    def leave(self, key: Hashable) -> None:
        """``key``'s leg is as it was before it had a place (nothing if it has none)."""
        place = self._places.pop(key, None)
        if place is None:
            return
        self._mute(place)
        if place.feed.attached:  # a feed replaced meanwhile (music on hold) is not ours to end
            place.tap.unfeed(place.leg)
        if not self._places and self._stop_ticking is not None:
            stop, self._stop_ticking = self._stop_ticking, None
            stop()

    def stop(self) -> None:
        """Every leg leaves; the ticks stop."""
        for key in list(self._places):
            self.leave(key)

    def _place(self, key: Hashable, tap: CallMediaTap, leg: str) -> _Place:
        place = self._places.get(key)
        if place is not None:
            return place
        payload_type, codec = leg_codec(tap, leg)
        feed = LegFeed(codec)
        place = self._places[key] = _Place(tap, leg, payload_type, codec, feed)
        tap.feed(leg, feed, payload_type)
        if self._stop_ticking is None:
            self._stop_ticking = self.clock.add(self._tick)
        return place

    @staticmethod
    def _mute(place: _Place) -> None:
        """The place stops talking (its input is no longer mixed nor listened to)."""
        if place.unlisten is not None:
            place.unlisten()
        if place.member is not None:
            place.member.remove()
        place.heard = place.member = place.unlisten = None

    def _tick(self, _: int) -> None:
        places = list(self._places.values())
        for place in places:
            if place.heard is not None and place.member is not None:
                pcm = place.heard.pop()
                if pcm is not None:
                    place.member.put(pcm)
        for place in places:
            if place.member is not None:
                place.feed.send(place.member.take())
            elif place.tone:
                place.send_tone()
