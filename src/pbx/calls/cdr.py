"""Call detail records: the subscriber of call events that writes each ended call's records to the store."""

from __future__ import annotations

from attrs import define

from twisted.logger import Logger

from pbx.calls.events import CallEvent
from pbx.interfaces import IStore


@define(eq=False)
class CDRWriter:
    """Writes the records an ``ended`` event carries (subscribe it to ``ended`` alone)."""

    store: IStore
    log = Logger()

    def __call__(self, event: CallEvent) -> None:
        """Store the records of an ended call; other events are not records."""
        if event.kind != "ended":
            return
        for record in event.detail.get("records", ()):
            d = self.store.add_call_record(record)
            d.addErrback(lambda f: self.log.failure("writing a CDR failed", f))
