"""
One conference's media: N channels joined to one :class:`~pbx.media.mixer.Mixer`.

A :class:`Mix` has no timer of its own.  Its members are channels, and
every channel already ticks on the shared 20 ms media clock
(:mod:`pbx.media.media_clock`), one after another.  On its tick a joined
channel puts the caller's decoded frame into the mix (:meth:`Member.put`,
resampled to the mix's rate) and takes the frame it sends
(:meth:`Member.take`: what everyone else said, resampled back to its own
rate).

The mix is computed once per round, not once per member: a member that
asks for its frame and has already been served since the last computation
starts a new round, and the new mix is made from the latest input of each
member (silence for one that put nothing since the last round).  So a
round costs one :meth:`Mixer.mix` whatever the number of members, and as
long as every member ticks once per ptime each one hears each other's
frame exactly once, at most one tick late.  Members that stop ticking (a
channel whose prompt has priority, a phone gone quiet) neither stall the
rounds nor get a frame twice.  When the reactor runs late the media clock
ticks every channel once per ptime missed, all of them in turn each time,
so a late tick is a few ordinary rounds.  A channel ticked several times
in a row (by a timer of its own) makes each of those ticks a round of its
own: what the others said in them is lost (a short dropout) rather than
repeated, and each costs a whole mix.

Pure media: nothing here knows about RTP, SIP or Twisted; the channel
(:meth:`pbx.media.channel.Channel.join`) is the only caller of
:meth:`Mix.add`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np
from attrs import define, field

from pbx.media.mixer import Mixer
from pbx.media.resample import Resampler

__all__ = ["Member", "Mix"]

#: The mix rates: narrowband (G.711), or wideband when a G.722 or Opus
#: participant would otherwise lose its upper band.
RATES = (8000, 16000)

Convert = Callable[[np.ndarray], np.ndarray]


@define(eq=False)
class Member:
    """
    One participant's place in a :class:`Mix`: its two rate converters and
    the two calls of its tick.

    :ivar mix: the mix it belongs to.
    :ivar key: who it is (the channel); mute and gain are set by key.
    """

    mix: Mix
    key: Hashable
    _to_mix: Convert | None
    _from_mix: Convert | None

    def put(self, pcm: np.ndarray) -> None:
        """
        The caller's frame of this tick, at the member's own rate.

        :param pcm: int16 samples; a frame of another length than 20 ms is
            padded or cut.
        """
        if self._to_mix is not None:
            pcm = self._to_mix(pcm)
        n = self.mix.samples_per_frame
        if len(pcm) != n:
            pcm = np.pad(pcm[:n], (0, n - len(pcm[:n])))
        self.mix._inputs[self.key] = pcm

    def take(self) -> np.ndarray | None:
        """
        The frame this member hears this tick, at its own rate: the sum of
        every other member, or None before the first round it is part of.
        """
        frame = self.mix._take(self.key)
        if frame is not None and self._from_mix is not None:
            frame = self._from_mix(frame)
        return frame

    def remove(self) -> None:
        """Leave the mix: from now on this member is neither mixed nor served."""
        self.mix._remove(self.key)


@define(eq=False)
class Mix:
    """
    The media of one conference.

    :param sample_rate: 8000, or 16000 for wideband participants (G.722,
        Opus); each member is resampled to and from it.
    """

    sample_rate: int = 8000
    _mixer: Mixer = field(init=False)
    _members: dict[Hashable, Member] = field(init=False, factory=dict)
    _inputs: dict[Hashable, np.ndarray] = field(init=False, factory=dict)
    # What each member hears this round, and who has been given it.
    _heard: dict[Hashable, np.ndarray] | None = field(init=False, default=None)
    _served: set[Hashable] = field(init=False, factory=set)
    # Who hears the whole mix each round (a room's recording): key -> callback.
    _listeners: dict[Hashable, Callable[[np.ndarray], None]] = field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.sample_rate not in RATES:
            raise ValueError(f"a mix runs at {RATES}, not {self.sample_rate!r}")
        self._mixer = Mixer(sample_rate=self.sample_rate)

    @property
    def samples_per_frame(self) -> int:
        """Samples in one 20 ms frame at the mix's rate."""
        return self._mixer.samples_per_frame

    @property
    def members(self) -> tuple[Hashable, ...]:
        """The members' keys (channels), in the order they joined."""
        return tuple(k for k in self._mixer.participants if k not in self._listeners)

    def __len__(self) -> int:
        """The number of members."""
        return len(self._mixer) - len(self._listeners)

    def listen(self, key: Hashable, hear: Callable[[np.ndarray], None]) -> None:
        """
        Hand ``hear`` the whole mix (every unmuted member) of each round from
        now on, at the mix's rate: what a recording of the room writes.  A
        listener is not a member: it says nothing and is not counted.

        :param key: who listens, unique among members and listeners.
        :raises ValueError: if ``key`` is a member or a listener already.
        """
        self._mixer.add(key)
        self._listeners[key] = hear

    def unlisten(self, key: Hashable) -> None:
        """Stop handing ``key`` the mix (nothing if it was not listening)."""
        if self._listeners.pop(key, None) is not None:
            self._mixer.remove(key)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` (a channel) is a member."""
        return key in self._members

    def add(self, key: Hashable, rate: int) -> Member:
        """
        A new member, mixed from its first :meth:`Member.put` on.
        :meth:`pbx.media.channel.Channel.join` calls this.

        :param key: who it is (the channel), unique in this mix.
        :param rate: the member's PCM sample rate.
        :raises ValueError: if ``key`` is a member already.
        """
        self._mixer.add(key)
        mix_rate = self.sample_rate
        # Resampler keeps filter state across frames: one per direction.
        to_mix = None if rate == mix_rate else Resampler(rate, mix_rate)
        from_mix = None if rate == mix_rate else Resampler(mix_rate, rate)
        member = Member(self, key, to_mix, from_mix)
        self._members[key] = member
        return member

    def set_muted(self, key: Hashable, muted: bool) -> None:
        """
        Mute or unmute a member: muted, it still hears everyone else.

        :raises KeyError: if ``key`` is not a member.
        """
        self._mixer.set_muted(key, muted)

    def is_muted(self, key: Hashable) -> bool:
        """
        Whether a member is muted.

        :raises KeyError: if ``key`` is not a member.
        """
        return self._mixer.is_muted(key)

    def set_gain(self, key: Hashable, gain: float) -> None:
        """
        Scale what a member contributes (1.0 leaves it unchanged).

        :raises KeyError: if ``key`` is not a member.
        :raises ValueError: if the gain is outside 0 to :data:`pbx.media.mixer.MAX_GAIN`.
        """
        self._mixer.set_gain(key, gain)

    def gain(self, key: Hashable) -> float:
        """
        A member's gain.

        :raises KeyError: if ``key`` is not a member.
        """
        return self._mixer.gain(key)

    def _take(self, key: Hashable) -> np.ndarray | None:
        heard = self._heard
        if heard is None or key in self._served:
            inputs, self._inputs = self._inputs, {}
            heard = self._heard = self._mixer.mix(inputs)
            self._served.clear()
            # A listener puts nothing: what it "hears" is everyone.
            for listener, hear in list(self._listeners.items()):
                frame = heard.pop(listener, None)
                if frame is not None:
                    hear(frame)
        self._served.add(key)
        return heard.get(key)

    def _remove(self, key: Hashable) -> None:
        if self._members.pop(key, None) is None:
            return
        self._mixer.remove(key)
        self._inputs.pop(key, None)
        self._served.discard(key)
        if self._heard is not None:
            self._heard.pop(key, None)
