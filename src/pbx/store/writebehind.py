"""
Write-behind for registration bindings.

A phone refreshes its registration every few minutes; thousands of phones
mean thousands of small writes a second.  The registrar answers from memory
and hands each change to a :class:`BindingWriter`, which coalesces changes to
the same binding and writes them in one transaction per batch, shortly after
(``delay``) or at once when a batch is full.  :meth:`BindingWriter.flush` at
shutdown writes whatever is pending, so a clean restart loses nothing; a
crash loses at most the last ``delay`` seconds of refreshes, which phones
repeat on their own.
"""

from __future__ import annotations

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.interfaces import IStore
from pbx.records import Binding


@define(eq=False)
class BindingWriter:
    """
    Coalescing, batching writer of binding changes.

    :ivar delay: seconds a change may wait before it is written.
    :ivar max_batch: a batch this large is written at once.
    """

    store: IStore
    clock: IReactorTime
    delay: float = 0.05
    max_batch: int = 2000
    retry_delay: float = 1.0
    _pending: dict[tuple[str, str], Binding | None] = field(factory=dict)
    _timer: IDelayedCall | None = None
    _writing: Deferred[None] | None = None
    written: int = 0
    log = Logger()

    def put(self, binding: Binding) -> None:
        """Queue an insert or replace."""
        self._pending[(binding.aor, binding.contact)] = binding
        self._schedule()

    def delete(self, aor: str, contact: str) -> None:
        """Queue a delete."""
        self._pending[(aor, contact)] = None
        self._schedule()

    @property
    def pending(self) -> int:
        """Changes not yet handed to the store."""
        return len(self._pending)

    def _schedule(self) -> None:
        if len(self._pending) >= self.max_batch and self._writing is None:
            self._write()
        elif self._timer is None and self._writing is None:
            self._timer = self.clock.callLater(self.delay, self._write)

    def _write(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if not self._pending or self._writing is not None:
            return
        batch, self._pending = self._pending, {}
        puts = [b for b in batch.values() if b is not None]
        deletes = [k for k, b in batch.items() if b is None]
        d: Deferred[None] = Deferred()
        self._writing = d

        def done(result: object) -> None:
            self._writing = None
            self.written += len(batch)
            if self._pending:
                self._schedule()
            d.callback(None)

        def failed(failure: Failure) -> None:
            # Keep the batch for the next attempt, unless newer changes to
            # the same bindings arrived meanwhile; retry after a pause.
            self.log.failure("writing {n} binding change(s) failed; will retry", failure, n=len(batch))
            for key, value in batch.items():
                self._pending.setdefault(key, value)
            self._writing = None
            if self._timer is None:
                self._timer = self.clock.callLater(self.retry_delay, self._write)
            d.callback(None)

        self.store.write_bindings(puts, deletes).addCallbacks(done, failed)

    def flush(self) -> Deferred[None]:
        """Write everything pending now; fires when the store has it."""
        return Deferred.fromCoroutine(self._flush())

    async def _flush(self) -> None:
        for _ in range(3):  # bounded: a failing store must not hang shutdown
            if self._writing is not None:
                await self._writing
            if not self._pending:
                break
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            self._write()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
