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

from collections.abc import Callable

from attrs import define, field

from twisted.logger import Logger

from pbx.media.leg_audio import CallMediaTap, LegFeed, LegInput, NoAudio, leg_codec
from pbx.media.media_clock import MediaClock
from pbx.media.mix import Member, Mix

__all__ = ["CallMediaTap", "LegInput", "Monitor", "NoAudio", "fed_legs"]


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
