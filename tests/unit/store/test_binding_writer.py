"""Tests for the group commit of registration bindings."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.records import Binding
from pbx.store.binding_writer import BATCH_DELAY, BindingWriter
from pbx.testing import MemoryStore


class CountingStore(MemoryStore):
    """A MemoryStore that counts batches and can be told to fail."""

    batches: int = 0
    failing: bool = False

    def write_bindings(self, puts: list[Binding], deletes: list[tuple[str, str]]) -> Deferred[None]:
        """Count, maybe fail, else apply."""
        self.batches += 1
        if self.failing:
            return fail(OSError("disk full"))
        return super().write_bindings(puts, deletes)


def b(aor: str, contact: str, cseq: int = 1) -> Binding:
    """A binding."""
    return Binding(aor, contact, 1000.0, cseq=cseq)


class BindingWriterTests(SynchronousTestCase):
    """Changes are coalesced, batched, written after the delay, flushed on demand."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = CountingStore()
        self.writer = BindingWriter(self.store, self.clock, delay=0.05, max_batch=3)

    def test_delay_and_coalesce(self) -> None:
        """Two changes to one binding become one write, after the delay."""
        self.writer.put(b("100", "sip:a", 1))
        self.writer.put(b("100", "sip:a", 2))
        self.assertEqual(self.store.bindings, {})
        self.clock.advance(0.05)
        self.assertEqual(self.store.batches, 1)
        self.assertEqual(self.store.bindings[("100", "sip:a")].cseq, 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_delete_after_put(self) -> None:
        """A delete queued after a put of the same binding wins."""
        self.store.bindings[("100", "sip:a")] = b("100", "sip:a")
        self.writer.put(b("100", "sip:a", 5))
        self.writer.delete("100", "sip:a")
        self.clock.advance(1)
        self.assertEqual(self.store.bindings, {})

    def test_full_batch_written_at_once(self) -> None:
        """Reaching max_batch writes without waiting for the delay."""
        for i in range(3):
            self.writer.put(b("100", f"sip:{i}"))
        self.assertEqual(len(self.store.bindings), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flush(self) -> None:
        """flush() writes everything pending at once and leaves no timer."""
        self.writer.put(b("100", "sip:a"))
        self.successResultOf(self.writer.flush())
        self.assertEqual(list(self.store.bindings), [("100", "sip:a")])
        self.assertEqual(self.writer.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failure_keeps_changes(self) -> None:
        """A failed batch is kept and written once the store works again."""
        self.store.failing = True
        d = self.writer.put(b("100", "sip:a"))
        self.clock.advance(0.05)
        self.failureResultOf(d, OSError)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.writer.pending, 1)
        self.store.failing = False
        self.clock.advance(1.0)
        self.assertEqual(list(self.store.bindings), [("100", "sip:a")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failure_does_not_undo_newer_change(self) -> None:
        """A change made while a failing batch was out is not overwritten by the retry."""
        self.store.failing = True
        pending: list[Any] = []
        original = self.store.write_bindings

        def slow(puts: list[Binding], deletes: list[tuple[str, str]]) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            pending.append((d, puts, deletes))
            return d

        self.store.write_bindings = slow  # type: ignore[method-assign]
        first = self.writer.put(b("100", "sip:a", 1))
        self.clock.advance(0.05)
        self.writer.put(b("100", "sip:a", 2))
        d, _, _ = pending.pop()
        d.errback(OSError("disk full"))
        self.failureResultOf(first, OSError)
        self.flushLoggedErrors(OSError)
        self.store.write_bindings = original  # type: ignore[method-assign]
        self.store.failing = False
        self.clock.advance(1.0)
        self.assertEqual(self.store.bindings[("100", "sip:a")].cseq, 2)


class GroupCommitOrderTests(SynchronousTestCase):
    """A change's Deferred fires only once the batch holding it is committed."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.commits: list[Deferred[None]] = []
        self.writer = BindingWriter(self.store, self.clock)
        self.store.write_bindings = self.slow  # type: ignore[method-assign]
        self.batches: list[tuple[list[Binding], list[tuple[str, str]]]] = []

    def slow(self, puts: list[Binding], deletes: list[tuple[str, str]]) -> Deferred[None]:
        """A write_bindings that commits when the test says so."""
        d: Deferred[None] = Deferred()
        self.batches.append((puts, deletes))
        self.commits.append(d)
        return d

    def test_not_acknowledged_before_commit(self) -> None:
        """put()'s Deferred has no result while the transaction is open, and fires at its commit."""
        d = self.writer.put(b("100", "sip:a"))
        self.clock.advance(BATCH_DELAY)
        self.assertEqual(len(self.commits), 1)
        self.assertNoResult(d)
        self.commits[0].callback(None)
        self.assertIsNone(self.successResultOf(d))

    def test_changes_of_one_turn_share_a_transaction(self) -> None:
        """Changes queued within the batch delay go in one transaction, and all fire at its commit."""
        ds = [self.writer.put(b(str(100 + i), "sip:a")) for i in range(5)]
        ds.append(self.writer.delete("200", "sip:gone"))
        self.clock.advance(BATCH_DELAY)
        self.assertEqual(len(self.batches), 1)
        self.assertEqual((len(self.batches[0][0]), self.batches[0][1]), (5, [("200", "sip:gone")]))
        for d in ds:
            self.assertNoResult(d)
        self.commits[0].callback(None)
        self.assertEqual([self.successResultOf(d) for d in ds], [None] * 6)

    def test_changes_during_a_commit_form_the_next_batch(self) -> None:
        """What arrives while a batch commits waits for it, then commits together, after it."""
        first = self.writer.put(b("100", "sip:a"))
        self.clock.advance(BATCH_DELAY)
        later = [self.writer.put(b("101", "sip:a")), self.writer.put(b("102", "sip:a"))]
        self.clock.advance(1)
        self.assertEqual(len(self.commits), 1)  # one transaction at a time
        self.commits[0].callback(None)
        self.successResultOf(first)
        for d in later:
            self.assertNoResult(d)
        self.clock.advance(BATCH_DELAY)
        self.assertEqual([p.aor for p in self.batches[1][0]], ["101", "102"])
        self.commits[1].callback(None)
        self.assertEqual([self.successResultOf(d) for d in later], [None, None])
        self.assertEqual(self.clock.getDelayedCalls(), [])
