"""
The ``log.level`` setting applied to twistd's log.

twistd makes its log observer (a file, stdout or syslog, from ``--logfile``
and ``--syslog``) after ``makeService`` and hands it to the global log
publisher; a plugin gets no hook to choose what reaches it.  So once the
PBX starts, every observer the publisher holds is put behind a
:class:`~twisted.logger.FilteringLogObserver` whose
:class:`~twisted.logger.LogLevelFilterPredicate` drops events below the
configured level, and taken back out when the PBX stops.  An event logged
with ``always_shown=True`` (the generated secrets, ``pbx ready``) passes
whatever the level.

Above ``debug``, Twisted's own two lines for every media socket
("RelayEndpoint starting on 10000", "(UDP Port 10000 Closed)": eight per
relayed call, four sockets each opened and closed) are dropped too
(:class:`QuietMediaPorts`): they say nothing an operator acts on, and at
hundreds of calls a second they are most of the log and a share of the
CPU.  A media port that cannot be bound is still logged, by pbx.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    PredicateResult,
)


def level_named(name: str) -> LogLevel:
    """
    The log level of a validated ``log.level`` value.

    :param name: ``debug``, ``info``, ``warn`` or ``error``.
    :raises InvalidLogLevelError: for any other name.
    """
    return LogLevel.levelWithName(name)


@implementer(ILogFilterPredicate)
class AlwaysShown:
    """Lets events marked ``always_shown`` through; leaves the rest to the level."""

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        return PredicateResult.yes if event.get("always_shown") else PredicateResult.maybe


#: Twisted's line for a UDP socket opened or closed (``udp.Port``, legacy log).
_SOCKET_LINE = re.compile(r"\(UDP Port (\d+) Closed\)|\S+ starting on (\d+)")


@implementer(ILogFilterPredicate)
class QuietMediaPorts:
    """
    Drops Twisted's lines for UDP sockets opened and closed on the media
    ports ``low``-``high`` (the ``rtp:`` range); every other line passes.
    """

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        text = event.get("log_text") if event.get("log_namespace") == "log_legacy" else None
        if isinstance(text, str):
            found = _SOCKET_LINE.fullmatch(text)
            if found is not None and self.low <= int(found.group(1) or found.group(2)) <= self.high:
                return PredicateResult.no
        return PredicateResult.maybe


def filter_observers(
    publisher: LogPublisher, level: LogLevel, media_ports: tuple[int, int] | None = None
) -> Callable[[], None]:
    """
    Let only events of ``level`` and above reach the observers ``publisher`` holds now.

    Observers added later are not filtered.

    :param media_ports: the media port range whose sockets' opening and
        closing lines are dropped above ``debug``.

    :returns: what puts the observers back as they were (an observer removed
        meanwhile stays removed).
    """
    predicates: list[ILogFilterPredicate] = [AlwaysShown()]
    if media_ports is not None and level > LogLevel.debug:
        predicates.append(QuietMediaPorts(*media_ports))
    predicates.append(LogLevelFilterPredicate(defaultLogLevel=level))
    # LogPublisher has no public list of its observers: twistd's is only
    # reachable there.
    originals: list[ILogObserver] = list(publisher._observers)
    wrapped = []
    for observer in originals:
        filtering = FilteringLogObserver(observer, predicates)
        publisher.removeObserver(observer)
        publisher.addObserver(filtering)
        wrapped.append((observer, filtering))

    def unfilter() -> None:
        for observer, filtering in wrapped:
            if filtering in publisher._observers:
                publisher.removeObserver(filtering)
                publisher.addObserver(observer)
        wrapped.clear()

    return unfilter
