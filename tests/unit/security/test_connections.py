"""Tests for :mod:`pbx.security.connections`."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pbx.security.connections import ConnectionCaps, Refusal, ThrottledLog


class ConnectionCapsTests(SynchronousTestCase):
    """Counting connections in total and per source."""

    def test_per_source_first(self) -> None:
        """A source at its share is refused as per-source even when the total is also reached."""
        caps = ConnectionCaps(max_total=3, max_per_source=2)
        caps.add("192.0.2.1")
        self.assertIsNone(caps.refusal("192.0.2.1"))
        caps.add("192.0.2.1")
        self.assertEqual(caps.refusal("192.0.2.1"), Refusal.PER_SOURCE)
        self.assertIsNone(caps.refusal("192.0.2.2"))
        caps.add("192.0.2.2")
        self.assertEqual(caps.refusal("192.0.2.3"), Refusal.TOTAL)
        self.assertEqual(caps.refusal("192.0.2.1"), Refusal.PER_SOURCE)
        self.assertEqual((caps.total, caps.open_from("192.0.2.1")), (3, 2))

    def test_remove_frees_slots(self) -> None:
        """A closed connection frees its slot and its source's, and an emptied source is forgotten."""
        caps = ConnectionCaps(max_total=1, max_per_source=1)
        caps.add("192.0.2.1")
        caps.remove("192.0.2.1")
        self.assertIsNone(caps.refusal("192.0.2.9"))
        self.assertEqual((caps.total, caps.open_from("192.0.2.1")), (0, 0))
        self.assertEqual(caps._by_source, {})

    def test_remove_never_negative(self) -> None:
        """Removing more than was added leaves the counts at zero."""
        caps = ConnectionCaps(max_total=1, max_per_source=1)
        caps.remove("192.0.2.1")
        self.assertEqual(caps.total, 0)
        self.assertIsNone(caps.refusal("192.0.2.1"))


class ThrottledLogTests(SynchronousTestCase):
    """At most one line per interval per kind, carrying the count."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []
        self.throttled = ThrottledLog(self.clock, Logger(observer=self.events.append), interval=60)

    def lines(self) -> list[str]:
        """The lines written so far."""
        return [formatEvent(e) for e in self.events]

    def test_one_line_per_interval(self) -> None:
        """The first event is written; the next ones within the interval are only counted, then reported together (999 + y + z)."""
        for _ in range(1000):
            self.throttled.event("refused", "refused {count} from {who}", who="x")
        self.assertEqual(self.lines(), ["refused 1 from x"])
        self.clock.advance(59)
        self.assertFalse(self.throttled.event("refused", "refused {count} from {who}", who="y"))
        self.clock.advance(1)
        self.assertTrue(self.throttled.event("refused", "refused {count} from {who}", who="z"))
        self.assertEqual(self.lines(), ["refused 1 from x", "refused 1001 from z"])
        self.assertEqual(self.events[-1]["log_level"].name, "warn")

    def test_level(self) -> None:
        """A kind may be logged at another level than warn."""
        self.throttled.event("framing", "lost {count}", level=LogLevel.info)
        self.assertEqual(self.events[-1]["log_level"], LogLevel.info)

    def test_kinds_are_separate(self) -> None:
        """Each kind has its own interval."""
        self.throttled.event("a", "a {count}")
        self.throttled.event("b", "b {count}")
        self.throttled.event("a", "a {count}")
        self.assertEqual(self.lines(), ["a 1", "b 1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
