"""
Call detail records: the subscriber of call events that writes each ended
call's records to the store, and the journal that keeps them from being
lost when pbx dies with calls up.

An ``answered`` call gets journal entries in the store (one per leg, see
:class:`~pbx.records.LiveCallEntry`); every ``touch_interval`` seconds the
entries of this node are touched, and the transaction that stores a call's
records removes its entries.  At the next start, :meth:`CDRWriter.recover`
turns whatever entries are left into ``INTERRUPTED`` records ending at the
last touch.

When the parties of a call up change (``transferred``, ``parked``,
``unparked``), the records of those that left are stored at once and the
call's entries are replaced by those of the parties in it now, in one
transaction: a crash then leaves the right records, each with the call's
linked id.  At the end, only the records not stored yet are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attrs import define, evolve, field

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.events import CallEvent
from pbx.interfaces import IStore
from pbx.records import CallRecord, LiveCallEntry

#: Seconds between touches of the live calls' journal entries: an
#: interrupted call's record may end up to this much before the crash.
TOUCH_INTERVAL = 30.0


@define(eq=False)
class CDRWriter:
    """
    Writes call records and keeps the journal of live calls.

    Subscribe it to :attr:`KINDS`.

    :ivar node: this pbx's name in the journal (several pbx may share a
        database; each recovers only its own calls).
    """

    #: The call events it takes.
    KINDS = ("answered", "transferred", "parked", "unparked", "ended")

    store: IStore
    clock: IReactorTime
    node: str = ""
    touch_interval: float = TOUCH_INTERVAL
    #: Keys of the answered calls not yet ended.
    _live: set[str] = field(factory=set)
    #: The records of live calls' departed parties, stored already.
    _stored: dict[str, list[CallRecord]] = field(factory=dict)
    _writing: set[Deferred[Any]] = field(factory=set)
    _toucher: LoopingCall | None = None
    log = Logger()

    def __call__(self, event: CallEvent) -> None:
        """
        Journal an answered call, journal a live call's parties again when
        they change, store an ended call's records and drop its entries.
        """
        records = event.detail.get("records", ())
        if event.kind == "answered":
            self._live.add(event.call_id)
            now = self.clock.seconds()
            entries = [LiveCallEntry.of(self.node, event.call_id, r, now) for r in records]
            self._track(self.store.journal_calls(entries), "journalling an answered call")
        elif event.kind == "ended":
            self._live.discard(event.call_id)
            stored = self._stored.pop(event.call_id, [])
            records = [r for r in records if r not in stored]
            self._track(self.store.finish_call(self.node, event.call_id, records), "writing a CDR")
        elif event.call_id in self._live and "records" in event.detail:
            self._moved(event.call_id, records, event.detail.get("departed", ()))

    def _moved(self, call: str, records: Sequence[CallRecord], departed: Sequence[CallRecord]) -> None:
        """A live call's parties changed: store the departed's records, journal those in it now."""
        stored = self._stored.setdefault(call, [])
        new = [r for r in departed if r not in stored]
        stored.extend(new)
        now = self.clock.seconds()
        live = [
            evolve(LiveCallEntry.of(self.node, call, r, now), touched=now)
            for r in records
            if r not in departed
        ]
        self._track(self.store.finish_call(self.node, call, new, live), "journalling a transferred call")

    def _track(self, d: Deferred[Any], what: str) -> None:
        self._writing.add(d)

        def done(result: object) -> None:
            self._writing.discard(d)
            if isinstance(result, Failure):
                self.log.failure("{what} failed", result, what=what)

        d.addBoth(done)

    async def recover(self) -> int:
        """
        Turn the journal entries a previous run left into ``INTERRUPTED``
        records; call before taking calls.

        :returns: how many records were written.
        """
        records = await self.store.recover_calls(self.node)
        if records:
            self.log.warn("records of calls the last stop interrupted: {count}", count=len(records))
        return len(records)

    def start(self) -> None:
        """Touch the live calls' entries every ``touch_interval`` seconds on the injected clock."""
        self._toucher = LoopingCall(self._touch)
        self._toucher.clock = self.clock
        self._toucher.start(self.touch_interval, now=False)

    def stop(self) -> None:
        """Stop touching."""
        if self._toucher is not None and self._toucher.running:
            self._toucher.stop()
        self._toucher = None

    def _touch(self) -> None:
        if not self._live:
            return
        try:
            # One statement touches every live call of this node.
            self._track(self.store.touch_calls(self.node, self.clock.seconds()), "touching live calls")
        except Exception:
            self.log.failure("touching live calls failed")

    def flush(self) -> Deferred[Any]:
        """Fires when every write handed to the store so far has finished."""
        return DeferredList(list(self._writing))
