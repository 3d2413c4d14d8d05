"""Tests for the write-behind of registration bindings."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.records import Binding
from pbx.store.writebehind import BindingWriter
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
        self.writer.put(b("100", "sip:a"))
        self.clock.advance(0.05)
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
        self.writer.put(b("100", "sip:a", 1))
        self.clock.advance(0.05)
        self.writer.put(b("100", "sip:a", 2))
        d, _, _ = pending.pop()
        d.errback(OSError("disk full"))
        self.flushLoggedErrors(OSError)
        self.store.write_bindings = original  # type: ignore[method-assign]
        self.store.failing = False
        self.clock.advance(1.0)
        self.assertEqual(self.store.bindings[("100", "sip:a")].cseq, 2)
