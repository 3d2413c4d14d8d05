"""
Caps on concurrent connections, in total and per source address, shared by
the SIP stream listeners and the HTTP API; and a log that says a refusal
happened without writing one line per refused connection.

A connection over a cap is refused by accepting it and closing it at once
(the factory's ``buildProtocol`` returns None, so Twisted closes the socket
before any transport or protocol object exists).  Pausing the listening
port instead would hold every waiting client in the kernel's backlog, the
good with the bad, and could not tell one source from another: the source
is only known once the connection is accepted.

Pure bookkeeping: time comes from the injected clock when an event is
counted; nothing is scheduled.
"""

from __future__ import annotations

import enum
from typing import Any

from attrs import define, field

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

__all__ = ["ConnectionCaps", "Refusal", "ThrottledLog"]


class Refusal(enum.Enum):
    """Why a connection is refused."""

    #: Its source address has its share open.
    PER_SOURCE = "per-source"
    #: Every slot is taken.
    TOTAL = "total"


@define(eq=False)
class ConnectionCaps:
    """
    Counts open connections in total and per source address.

    :ivar max_total: connections open at once, from anywhere.
    :ivar max_per_source: connections open at once from one address.
    """

    max_total: int
    max_per_source: int
    _by_source: dict[str, int] = field(factory=dict, init=False)
    _total: int = field(default=0, init=False)

    @property
    def total(self) -> int:
        """How many connections are open."""
        return self._total

    def open_from(self, source: str) -> int:
        """How many connections from ``source`` are open."""
        return self._by_source.get(source, 0)

    def refusal(self, source: str) -> Refusal | None:
        """Why a new connection from ``source`` must be refused, or None."""
        if self._by_source.get(source, 0) >= self.max_per_source:
            return Refusal.PER_SOURCE
        if self._total >= self.max_total:
            return Refusal.TOTAL
        return None

    def add(self, source: str) -> None:
        """Count a connection from ``source`` as open."""
        self._by_source[source] = self._by_source.get(source, 0) + 1
        self._total += 1

    def remove(self, source: str) -> None:
        """Count a connection from ``source`` as gone."""
        left = self._by_source.get(source, 0) - 1
        if left > 0:
            self._by_source[source] = left
        else:
            self._by_source.pop(source, None)
        self._total = max(0, self._total - 1)


@define(eq=False)
class ThrottledLog:
    """
    One line (a warning unless told otherwise) per ``interval`` for each kind of event, saying how many
    such events it stands for; the events between two lines are counted,
    not written.  A flood of refused connections thus costs a line a
    minute, not a line a connection.

    :ivar clock: source of time (``seconds()``).
    :ivar log: where the lines go.
    :ivar interval: seconds between two lines of one kind.
    """

    clock: IReactorTime
    log: Logger
    interval: float = 60.0
    _last: dict[str, float] = field(factory=dict, init=False)
    _counts: dict[str, int] = field(factory=dict, init=False)

    def event(self, kind: str, format: str, *, level: LogLevel = LogLevel.warn, **fields: Any) -> bool:
        """
        Count one event of ``kind``; write ``format`` at ``level`` if no line
        of that kind was written in the last ``interval`` seconds.
        ``format`` may use ``{count}``: the events since the last line of the
        kind, this one included.

        :returns: whether a line was written.
        """
        now = self.clock.seconds()
        self._counts[kind] = self._counts.get(kind, 0) + 1
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            return False
        self._last[kind] = now
        self.log.emit(level, format, count=self._counts.pop(kind), **fields)
        return True
