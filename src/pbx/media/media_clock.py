"""
One 20 ms timer for every RTP endpoint that plays out media.

Each terminated call (an application's, a voicemail deposit's) needs a
tick every ptime: take a frame from the jitter buffer, send one.  A Twisted
``LoopingCall`` per call costs about 10 µs a tick in scheduling alone
(``callLater``, the timer heap, the call's bookkeeping), twice the media
work of a G.711 channel whose keys come as RFC 4733 events.  A
:class:`MediaClock` runs one ``LoopingCall`` and ticks its subscribers in
turn, so that cost is paid once per tick instead of once per call.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["MediaClock", "stop_counted"]

Tick = Callable[[int], object]


def stop_counted(loop: LoopingCall) -> None:
    """
    Stop a ``LoopingCall.withCount`` loop and let go of its function:
    that function refers to the loop itself, a reference cycle that would
    otherwise wait for the garbage collector (whose pauses stall the
    reactor) instead of being freed with the loop.
    """
    if loop.running:
        loop.stop()
    loop.f = _stopped


def _stopped() -> None:
    """What a stopped loop would call: nothing."""


class MediaClock:
    """
    Ticks every subscriber each ``ptime`` seconds, in the order they
    subscribed; when the reactor was late, once per ptime elapsed (the
    count passed is always 1).  The timer runs only while someone is
    subscribed.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, ptime: float = 0.02) -> None:
        """
        :param clock: the time source (the reactor, or a ``task.Clock`` in tests).
        :param ptime: seconds between ticks.
        """
        self._clock = clock
        self._ptime = ptime
        self._ticks: dict[int, Tick] = {}
        self._ids = count()
        self._loop: LoopingCall | None = None

    @property
    def ptime(self) -> float:
        """Seconds between ticks."""
        return self._ptime

    def seconds(self) -> float:
        """The time now, on the clock the ticks run on."""
        return self._clock.seconds()

    @property
    def subscribers(self) -> int:
        """How many ticks are subscribed."""
        return len(self._ticks)

    def add(self, tick: Tick) -> Callable[[], None]:
        """
        Call ``tick(count)`` every ptime from the next tick on.

        :returns: a function that ends the subscription (calling it again does nothing).
        """
        key = next(self._ids)
        self._ticks[key] = tick
        if self._loop is None:
            self._loop = LoopingCall.withCount(self._tick)
            self._loop.clock = self._clock
            self._loop.start(self._ptime, now=False)

        def remove() -> None:
            if self._ticks.pop(key, None) is not None and not self._ticks and self._loop is not None:
                loop, self._loop = self._loop, None
                stop_counted(loop)

        return remove

    def _tick(self, elapsed: int) -> None:
        # Late by several ptimes, every subscriber is ticked once per ptime
        # elapsed, all of them in turn each time, rather than each one
        # `elapsed` times in a row: the members of an N-party mix
        # (pbx.media.mix) then share one round per ptime.  Ticked in a row,
        # each member's second tick starts a round of its own, and a late
        # tick costs a big room one whole mix per member, which makes it
        # later still.
        ticks = self._ticks
        for _ in range(elapsed):
            for key in list(ticks):
                tick = ticks.get(key)
                if tick is None:
                    continue  # removed by an earlier subscriber's tick
                try:
                    tick(1)
                except Exception:
                    self.log.failure("media tick failed")
