"""
A short-lived cache of extension records for the SIP hot path.

Every REGISTER and INVITE needs its extension's digest secrets; asking the
store each time costs a thread hop (SQLite) or a round trip (PostgreSQL).
Records are kept for ``ttl`` seconds and dropped at once when this process
changes them (the REST API calls :meth:`ExtensionCache.invalidate`), so
changes made by another node sharing the database show within ``ttl``.
Unknown numbers are cached too, so a scanner guessing extensions does not
turn every guess into a query.
"""

from __future__ import annotations

from attrs import define, field

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from pbx.interfaces import IStore
from pbx.records import ExtensionRecord


@define(eq=False)
class ExtensionCache:
    """Extension records by number, each kept for ``ttl`` seconds."""

    store: IStore
    clock: IReactorTime
    ttl: float = 5.0
    max_entries: int = 100_000
    _entries: dict[str, tuple[float, ExtensionRecord | None]] = field(factory=dict)
    hits: int = 0
    misses: int = 0

    def get(self, number: str) -> Deferred[ExtensionRecord | None]:
        """The record for ``number`` (or None), from memory when fresh."""
        now = self.clock.seconds()
        entry = self._entries.get(number)
        if entry is not None and entry[0] > now:
            self.hits += 1
            return succeed(entry[1])
        self.misses += 1

        def remember(record: ExtensionRecord | None) -> ExtensionRecord | None:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # bounded; refilled on demand
            self._entries[number] = (now + self.ttl, record)
            return record

        return self.store.get_extension(number).addCallback(remember)

    def invalidate(self, number: str | None = None) -> None:
        """Forget one number, or everything."""
        if number is None:
            self._entries.clear()
        else:
            self._entries.pop(number, None)
