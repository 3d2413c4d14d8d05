"""Tests for :mod:`pbx.media.media_clock`: one timer ticking every endpoint's playout."""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.media.endpoint import RTPEndpoint
from pbx.media.media_clock import MediaClock
from pbx.media.ports import PortAllocator
from pbx.testing import FakeUDPReactor


class MediaClockTests(SynchronousTestCase):
    """Subscribers are ticked in order every ptime, once per ptime elapsed."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.media = MediaClock(self.clock)
        self.ticks: list[tuple[str, int]] = []

    def tick(self, name: str) -> Callable[[int], None]:
        """A subscriber that notes its ticks under ``name``."""
        return lambda count: self.ticks.append((name, count))

    def test_ticks_in_order(self) -> None:
        """Two subscribers, one timer: each tick reaches both, first subscribed first."""
        self.media.add(self.tick("a"))
        self.media.add(self.tick("b"))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.02)
        self.clock.advance(0.02)
        self.assertEqual(self.ticks, [("a", 1), ("b", 1), ("a", 1), ("b", 1)])

    def test_late(self) -> None:
        """A late tick ticks every subscriber once per ptime passed, all of them in turn each time."""
        self.media.add(self.tick("a"))
        self.media.add(self.tick("b"))
        self.clock.advance(0.06)
        self.assertEqual(self.ticks, [("a", 1), ("b", 1)] * 3)

    def test_timer_only_while_subscribed(self) -> None:
        """The timer stops with the last subscription and starts again with the next; removing twice is harmless."""
        remove_a = self.media.add(self.tick("a"))
        remove_b = self.media.add(self.tick("b"))
        remove_a()
        self.clock.advance(0.02)
        self.assertEqual(self.ticks, [("b", 1)])
        remove_b()
        remove_b()
        self.assertEqual((self.media.subscribers, self.clock.getDelayedCalls()), (0, []))
        self.media.add(self.tick("c"))
        self.clock.advance(0.02)
        self.assertEqual(self.ticks[-1], ("c", 1))

    def test_removed_during_tick(self) -> None:
        """A subscriber removed by an earlier one's tick is not ticked; one that removes the last stops the timer."""
        removers: dict[str, object] = {}

        def first(count: int) -> None:
            self.ticks.append(("first", count))
            removers["second"]()  # type: ignore[operator]

        removers["first"] = self.media.add(first)
        removers["second"] = self.media.add(self.tick("second"))
        self.clock.advance(0.02)
        self.assertEqual(self.ticks, [("first", 1)])
        removers["first"]()  # type: ignore[operator]
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failure_contained(self) -> None:
        """A subscriber that raises is logged; the others are still ticked, and so is it next time."""

        def broken(count: int) -> None:
            raise RuntimeError("boom")

        self.media.add(broken)
        self.media.add(self.tick("b"))
        self.clock.advance(0.02)
        self.clock.advance(0.02)
        self.assertEqual(self.ticks, [("b", 1), ("b", 1)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class EndpointOnMediaClockTests(SynchronousTestCase):
    """An endpoint given a media clock plays out on it rather than on a timer of its own."""

    def test_subscribes_while_open(self) -> None:
        """listen() subscribes, ticks deliver frames, close() unsubscribes; three endpoints share one timer."""
        reactor = FakeUDPReactor()
        media = MediaClock(reactor)
        frames: list[object] = []
        endpoints = [
            RTPEndpoint(reactor, PortAllocator(20000, 20099, random.Random(1)), payload_type=0,
                        on_frame=frames.append, media_clock=media, rng=random.Random(2))
            for _ in range(3)
        ]
        for endpoint in endpoints:
            endpoint.listen()
        self.assertEqual(media.subscribers, 3)
        playout_timers = [c for c in reactor.getDelayedCalls() if c.getTime() == 0.02]
        self.assertEqual(len(playout_timers), 1)
        reactor.advance(0.02)
        self.assertEqual(len(frames), 3)
        for endpoint in endpoints:
            endpoint.close()
        self.assertEqual(media.subscribers, 0)
        reactor.advance(0.02)
        self.assertEqual(len(frames), 3)

    def test_other_ptime_keeps_own_timer(self) -> None:
        """An endpoint at another ptime than the clock's plays out on its own timer."""
        reactor = FakeUDPReactor()
        media = MediaClock(reactor)
        frames: list[object] = []
        endpoint = RTPEndpoint(reactor, PortAllocator(20000, 20099, random.Random(1)), payload_type=0,
                               ptime_ms=30, on_frame=frames.append, media_clock=media, rng=random.Random(2))
        endpoint.listen()
        self.assertEqual(media.subscribers, 0)
        reactor.advance(0.03)
        self.assertEqual(len(frames), 1)
        endpoint.close()
