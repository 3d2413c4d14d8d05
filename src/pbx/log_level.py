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
"""

from __future__ import annotations

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


def filter_observers(publisher: LogPublisher, level: LogLevel) -> Callable[[], None]:
    """
    Let only events of ``level`` and above reach the observers ``publisher`` holds now.

    Observers added later are not filtered.

    :returns: what puts the observers back as they were (an observer removed
        meanwhile stays removed).
    """
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    # LogPublisher has no public list of its observers: twistd's is only
    # reachable there.
    originals: list[ILogObserver] = list(publisher._observers)
    wrapped = []
    for observer in originals:
        filtering = FilteringLogObserver(observer, [AlwaysShown(), predicate])
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
