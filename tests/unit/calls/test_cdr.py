"""Tests for :mod:`pbx.calls.cdr`: call records and the journal of live calls."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.cdr import TOUCH_INTERVAL, CDRWriter
from pbx.calls.events import CallEvent, CallEvents
from pbx.records import DISPOSITIONS, CallRecord
from pbx.testing import MemoryStore

NODE = "host:/var/lib/pbx"


def legs(start: float, answer: float, end: float, disposition: str = "ANSWERED") -> list[CallRecord]:
    """The records of a two-leg call."""
    return [
        CallRecord("c1", "1001", "1002", start, end, answer, disposition, codecs="PCMU", leg="a"),
        CallRecord("c1-b", "1001", "1002", start + 0.1, end, answer, disposition, codecs="PCMU", leg="b"),
    ]


class JournalTests(SynchronousTestCase):
    """An answered call is journalled, touched while it lasts and dropped when its records are written."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = MemoryStore()
        self.events = CallEvents()
        self.writer = CDRWriter(self.store, self.clock, NODE)
        self.events.subscribe(self.writer, kinds=CDRWriter.KINDS)
        self.writer.start()

    def tearDown(self) -> None:
        self.writer.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def publish(self, kind: str, records: list[CallRecord]) -> None:
        """Publish one event of call c1 carrying ``records``."""
        self.events.publish(CallEvent(kind, "c1", "1001", "1002", self.clock.seconds(), "b", {"records": records}))

    def touched(self) -> list[float]:
        """The touch times of the journal's entries, by leg."""
        return [e.touched for _, e in sorted(self.store.live_calls.items())]

    def test_answered_call_is_journalled(self) -> None:
        """At the answer, each leg gets an entry of this node, touched at the answer."""
        self.clock.advance(4)
        self.publish("answered", legs(1000, 1004, 1004))
        entries = sorted(self.store.live_calls.values(), key=lambda e: e.leg)
        self.assertEqual([(e.node, e.call, e.leg, e.call_id, e.answer, e.touched) for e in entries],
                         [(NODE, "c1", "a", "c1", 1004, 1004), (NODE, "c1", "b", "c1-b", 1004, 1004)])
        self.assertEqual(self.store.calls, [])

    def test_touched_every_interval(self) -> None:
        """While the call lasts, its entries are touched every TOUCH_INTERVAL seconds of the clock."""
        self.publish("answered", legs(1000, 1000, 1000))
        self.clock.advance(TOUCH_INTERVAL - 1)
        self.assertEqual(self.touched(), [1000, 1000])
        self.clock.advance(1)
        self.assertEqual(self.touched(), [1000 + TOUCH_INTERVAL] * 2)
        self.clock.advance(TOUCH_INTERVAL)
        self.assertEqual(self.touched(), [1000 + 2 * TOUCH_INTERVAL] * 2)

    def test_ended_call_written_and_dropped(self) -> None:
        """At the end the records are stored and the entries are gone; touching then stops writing."""
        self.publish("answered", legs(1000, 1000, 1000))
        self.clock.advance(45)
        self.publish("ended", legs(1000, 1000, 1045))
        self.assertEqual(self.store.live_calls, {})
        self.assertEqual([(r.leg, r.disposition, r.end) for r in self.store.calls],
                         [("a", "ANSWERED", 1045), ("b", "ANSWERED", 1045)])
        touches: list[float] = []
        self.store.touch_calls = lambda node, now: touches.append(now)  # type: ignore[assignment,method-assign,func-returns-value]
        self.clock.advance(2 * TOUCH_INTERVAL)
        self.assertEqual(touches, [])

    def test_unanswered_call_only_written(self) -> None:
        """A call that ends without an answer has its records stored and never had an entry."""
        self.publish("ended", legs(1000, 1000, 1010, "NO ANSWER"))
        self.assertEqual(len(self.store.calls), 2)
        self.assertEqual(self.store.live_calls, {})

    def test_restart_recovers_interrupted_call(self) -> None:
        """After a crash, a new writer turns the entries into INTERRUPTED records ending at the last touch."""
        self.publish("answered", legs(1000, 1003, 1003))
        for _ in range(7):  # 70 s, then the crash: no "ended"
            self.clock.advance(10)
        restarted = CDRWriter(self.store, self.clock, NODE)
        count = self.successResultOf(Deferred.fromCoroutine(restarted.recover()))
        self.assertEqual(count, 2)
        self.assertEqual(
            [(r.call_id, r.leg, r.disposition, r.start, r.answer, r.end, r.hangup_side) for r in self.store.calls],
            [("c1", "a", "INTERRUPTED", 1000, 1003, 1000 + 2 * TOUCH_INTERVAL, "pbx"),
             ("c1-b", "b", "INTERRUPTED", 1000.1, 1003, 1000 + 2 * TOUCH_INTERVAL, "pbx")],
        )
        self.assertEqual(self.store.live_calls, {})
        self.assertIn("INTERRUPTED", DISPOSITIONS)

    def test_recovery_leaves_other_nodes(self) -> None:
        """A writer of another node sharing the store recovers nothing of this node's live call."""
        self.publish("answered", legs(1000, 1000, 1000))
        other = CDRWriter(self.store, self.clock, "other:/srv/pbx")
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(other.recover())), 0)
        self.assertEqual(len(self.store.live_calls), 2)

    def test_transfer_rejournals(self) -> None:
        """
        A ``transferred`` event stores the departed party's record at once
        and replaces the call's entries by the parties in it now, touched
        now; the end stores only the records not stored yet.
        """
        self.publish("answered", legs(1000, 1000, 1000))
        self.clock.advance(10)
        left = CallRecord("c1-b", "1001", "1002", 1000.1, 1010, 1000, hangup_side="b",
                          hangup_cause="transferred to 1003", leg="b", linked_id="c1")
        now = [legs(1000, 1000, 1010)[0],
               CallRecord("c1-c", "1001", "1003", 1008, 1010, 1010, leg="b", linked_id="c1")]
        self.events.publish(CallEvent("transferred", "c1", "1001", "1003", 1010, "b",
                                      {"records": [*now, left], "departed": (left,)}))
        self.assertEqual(self.store.calls, [left])
        self.assertEqual(
            sorted((e.leg, e.call_id, e.callee, e.answer, e.touched, e.linked_id)
                   for e in self.store.live_calls.values()),
            [("a", "c1", "1002", 1000, 1010, "c1"), ("b", "c1-c", "1003", 1010, 1010, "c1")],
        )
        self.clock.advance(20)
        ended = [CallRecord("c1", "1001", "1003", 1000, 1030, 1000), *now[1:], left]
        self.publish("ended", ended)
        self.assertEqual([r.call_id for r in self.store.calls], ["c1-b", "c1", "c1-c"])
        self.assertEqual(self.store.live_calls, {})

    def test_move_of_unjournalled_call_ignored(self) -> None:
        """A ``parked`` event of a call the writer never saw answered writes nothing."""
        self.events.publish(CallEvent("parked", "c9", "1001", "1002", 1000, "a",
                                      {"records": legs(1000, 1000, 1000), "departed": ()}))
        self.assertEqual((self.store.calls, self.store.live_calls), ([], {}))

    def test_failed_write_logged(self) -> None:
        """A store that fails a write is logged; the writer carries on."""
        self.store.finish_call = lambda *a: Deferred.fromCoroutine(_fail())  # type: ignore[method-assign]
        self.publish("ended", legs(1000, 1000, 1010))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.successResultOf(self.writer.flush())


async def _fail() -> None:
    raise OSError("disk full")
