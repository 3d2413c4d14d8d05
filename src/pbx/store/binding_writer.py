"""
Group commit of registration bindings.

A registration that got its ``200`` must survive a crash, so the registrar
waits for the binding to be committed before it answers.  Committing each
REGISTER alone would cost a disk flush per phone; instead a
:class:`BindingWriter` gathers the changes that arrive together (within
``delay`` of the first, and all those that arrive while a batch is
committing), coalesces changes to the same binding, and
writes them in one transaction.  Every change's Deferred fires when the
batch holding it has committed, so the ``200`` goes out then.
"""

from __future__ import annotations

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.interfaces import IStore
from pbx.records import Binding

#: Seconds the first change of a batch waits for others.  Without it nearly
#: every REGISTER would be a transaction of its own when pbx is not busy;
#: with it a phone's 200 comes this much later and the transactions (thread
#: hand-overs, disk flushes) stay few.
BATCH_DELAY = 0.01


@define(eq=False)
class BindingWriter:
    """
    Coalescing, batching writer of binding changes; one batch commits at a time.

    :ivar delay: seconds the first change of a batch waits for others.
    :ivar max_batch: a batch this large is written at once.
    :ivar retry_delay: seconds before a batch that failed is tried again.
    """

    store: IStore
    clock: IReactorTime
    delay: float = BATCH_DELAY
    max_batch: int = 2000
    retry_delay: float = 1.0
    _pending: dict[tuple[str, str], Binding | None] = field(factory=dict)
    #: Told when the pending changes are committed (or failed).
    _waiters: list[Deferred[None]] = field(factory=list)
    _timer: IDelayedCall | None = None
    _writing: Deferred[None] | None = None
    written: int = 0
    batches: int = 0
    log = Logger()

    def put(self, binding: Binding) -> Deferred[None]:
        """Queue an insert or replace; the Deferred fires once it is committed."""
        self._pending[(binding.aor, binding.contact)] = binding
        return self._wait()

    def delete(self, aor: str, contact: str) -> Deferred[None]:
        """Queue a delete; the Deferred fires once it is committed."""
        self._pending[(aor, contact)] = None
        return self._wait()

    @property
    def pending(self) -> int:
        """Changes not yet handed to the store."""
        return len(self._pending)

    def _wait(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        self._schedule()
        return d

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
        waiters, self._waiters = self._waiters, []
        puts = [b for b in batch.values() if b is not None]
        deletes = [k for k, b in batch.items() if b is None]
        d: Deferred[None] = Deferred()
        self._writing = d
        self.batches += 1

        def done(result: object) -> None:
            self._writing = None
            self.written += len(batch)
            # Changes that came while this batch committed form the next one.
            if self._pending:
                self._schedule()
            for waiter in waiters:
                waiter.callback(None)
            d.callback(None)

        def failed(failure: Failure) -> None:
            # Whoever waits is told (a REGISTER is then refused, not
            # acknowledged); the changes stay queued, unless newer changes
            # to the same bindings arrived meanwhile, and are tried again
            # after a pause so that the store ends up as memory says.
            self.log.failure("writing {n} binding change(s) failed; will retry", failure, n=len(batch))
            for key, value in batch.items():
                self._pending.setdefault(key, value)
            self._writing = None
            if self._timer is None:
                self._timer = self.clock.callLater(self.retry_delay, self._write)
            for waiter in waiters:
                waiter.errback(failure)
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
