"""
Group commit: writes from many callers share one transaction.

A write that is acknowledged (a ``200`` to a REGISTER, an API answer after
an audit event) must be committed first, and a commit costs a disk flush.
:class:`GroupCommit` runs the first write at once; writes that arrive while
that transaction is committing wait and then go together in the next one,
so under load one flush serves many callers and when idle nobody waits for
a timer.  Each caller's Deferred fires once its own statements are
committed, in the order they were submitted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

#: One statement: SQL text (markers filled) and its parameters.
Statement = tuple[str, Sequence[object]]
#: Runs statements in one transaction; fires with one result per statement.
Transaction = Callable[[Sequence[Statement]], Deferred[list[int]]]


@define(eq=False)
class _Unit:
    """One caller's statements: all in the same transaction."""

    statements: Sequence[Statement]
    done: Deferred[list[int]]


@define(eq=False)
class GroupCommit:
    """
    A queue of writes committed in shared transactions, one at a time.

    :ivar max_batch: the most statements in one transaction (a caller's
        statements are never split).
    :ivar transactions: how many transactions ran (for tests and metrics).
    """

    _run: Transaction
    max_batch: int = 2000
    transactions: int = 0
    _waiting: deque[_Unit] = field(factory=deque)
    _committing: bool = False
    #: Units still to commit one by one after a shared transaction failed.
    _alone: int = 0
    log = Logger()

    def submit(self, statements: Sequence[Statement]) -> Deferred[list[int]]:
        """
        Commit ``statements`` together, with whatever else is waiting.

        :returns: Deferred firing with each statement's result once they are
            committed, or failing with the reason they are not.
        """
        unit = _Unit(statements, Deferred())
        self._waiting.append(unit)
        if not self._committing:
            self._commit()
        return unit.done

    def _take(self) -> list[_Unit]:
        batch: list[_Unit] = []
        size = 0
        while self._waiting:
            unit = self._waiting[0]
            if batch and size + len(unit.statements) > self.max_batch:
                break
            batch.append(self._waiting.popleft())
            size += len(unit.statements)
        return batch

    def _commit(self) -> None:
        batch = self._take()
        self._committing = True
        self.transactions += 1
        statements = [s for unit in batch for s in unit.statements]

        def committed(results: list[int]) -> None:
            at = 0
            for unit in batch:
                n = len(unit.statements)
                unit.done.callback(results[at:at + n])
                at += n
            self._next()

        def failed(failure: Failure) -> None:
            if len(batch) == 1:
                batch[0].done.errback(failure)
                self._next()
                return
            # One caller's bad statement must not fail the others: each
            # caller's statements are tried again in a transaction of their own.
            self.log.info("a shared transaction of {n} writes failed ({reason}); retrying each",
                          n=len(batch), reason=failure.getErrorMessage())
            self._waiting.extendleft(reversed(batch))
            self._alone = len(batch)
            self._commit_alone()

        self._run(statements).addCallbacks(committed, failed)

    def _commit_alone(self) -> None:
        """Commit the first waiting unit by itself (after a shared transaction failed)."""
        unit = self._waiting.popleft()
        self.transactions += 1

        def finished(result: list[int] | Failure) -> None:
            if isinstance(result, Failure):
                unit.done.errback(result)
            else:
                unit.done.callback(result)
            self._alone -= 1
            if self._alone > 0:
                self._commit_alone()
            else:
                self._next()

        self._run(unit.statements).addBoth(finished)

    def _next(self) -> None:
        self._committing = False
        if self._waiting:
            self._commit()
