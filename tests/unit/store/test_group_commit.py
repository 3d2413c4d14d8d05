"""Tests for :mod:`pbx.store.group_commit`."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pbx.store.group_commit import GroupCommit, Statement


def statement(n: int) -> Statement:
    """A statement whose result the fake transaction makes ``n``."""
    return (f"S{n}", (n,))


class GroupCommitTests(SynchronousTestCase):
    """Writes that arrive while a transaction commits share the next one; each caller learns of its own."""

    def setUp(self) -> None:
        self.transactions: list[tuple[list[str], Deferred[list[int]]]] = []
        self.group = GroupCommit(self.transaction, max_batch=4)

    def transaction(self, statements: Sequence[Statement]) -> Deferred[list[int]]:
        """A transaction that commits (or fails) when the test says so."""
        d: Deferred[list[int]] = Deferred()
        self.transactions.append(([sql for sql, _ in statements], d))
        return d

    def commit(self, index: int) -> None:
        """Commit transaction ``index``: each statement's result is its number."""
        sqls, d = self.transactions[index]
        d.callback([int(sql[1:]) for sql in sqls])

    def test_first_write_goes_at_once(self) -> None:
        """With nothing committing, a write starts its transaction at once and fires at its commit."""
        d = self.group.submit([statement(1)])
        self.assertEqual([t[0] for t in self.transactions], [["S1"]])
        self.assertNoResult(d)
        self.commit(0)
        self.assertEqual(self.successResultOf(d), [1])

    def test_writes_during_a_commit_share_the_next(self) -> None:
        """Writes submitted during a commit go together, in order, in one transaction after it."""
        first = self.group.submit([statement(1)])
        second = self.group.submit([statement(2), statement(3)])
        third = self.group.submit([statement(4)])
        self.assertEqual(len(self.transactions), 1)
        self.commit(0)
        self.successResultOf(first)
        self.assertEqual(self.transactions[1][0], ["S2", "S3", "S4"])
        self.assertNoResult(second)
        self.commit(1)
        self.assertEqual((self.successResultOf(second), self.successResultOf(third)), ([2, 3], [4]))
        self.assertEqual(self.group.transactions, 2)

    def test_batch_size_bounded_without_splitting_a_caller(self) -> None:
        """A transaction holds at most max_batch statements, and never part of one caller's."""
        self.group.submit([statement(0)])
        ds = [self.group.submit([statement(1), statement(2), statement(3)]),
              self.group.submit([statement(4), statement(5)])]
        self.commit(0)
        self.assertEqual(self.transactions[1][0], ["S1", "S2", "S3"])
        self.commit(1)
        self.assertEqual(self.transactions[2][0], ["S4", "S5"])
        self.commit(2)
        self.assertEqual([self.successResultOf(d) for d in ds], [[1, 2, 3], [4, 5]])

    def test_failed_shared_transaction_retries_each(self) -> None:
        """When a shared transaction fails, each caller's writes are tried alone: only the bad one fails."""
        self.group.submit([statement(0)])
        good = self.group.submit([statement(1)])
        bad = self.group.submit([statement(2)])
        later = self.group.submit([statement(3)])
        self.commit(0)
        self.transactions[1][1].errback(ValueError("no such table"))
        self.assertEqual(self.transactions[2][0], ["S1"])
        self.commit(2)
        self.assertEqual(self.successResultOf(good), [1])
        self.assertEqual(self.transactions[3][0], ["S2"])
        self.transactions[3][1].errback(ValueError("no such table"))
        self.failureResultOf(bad, ValueError)
        self.assertEqual(self.transactions[4][0], ["S3"])
        self.assertNoResult(later)
        self.commit(4)
        self.assertEqual(self.successResultOf(later), [3])

    def test_lone_failure_reported(self) -> None:
        """A transaction of one caller's writes that fails fails that caller, and the queue moves on."""
        d = self.group.submit([statement(1)])
        after = self.group.submit([statement(2)])
        self.transactions[0][1].errback(OSError("disk full"))
        self.failureResultOf(d, OSError)
        self.commit(1)
        self.assertEqual(self.successResultOf(after), [2])
