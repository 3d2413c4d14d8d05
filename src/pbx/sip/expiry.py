"""
A mapping whose entries expire, driven by one timer.

Thousands of short-lived entries a second (completed transactions kept to
absorb retransmissions, RFC 3261 §17.2.2 Timer J; loop-detection memory,
§8.2.2.2) would otherwise cost one ``callLater`` each.  Here one timer is
armed at the earliest deadline; when it fires, everything due goes.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from attrs import define, field

from twisted.internet.interfaces import IDelayedCall, IReactorTime

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@define(eq=False)
class ExpiringMap(Generic[K, V]):
    """Key to value, each entry forgotten ``ttl`` seconds after it was set."""

    clock: IReactorTime
    _items: dict[Any, tuple[float, Any]] = field(factory=dict)
    _heap: list[tuple[float, int, Any]] = field(factory=list)
    _seq: int = 0
    _timer: IDelayedCall | None = None
    _timer_at: float = 0.0

    def set(self, key: K, value: V, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (0: not at all)."""
        if ttl <= 0:
            self._items.pop(key, None)
            return
        deadline = self.clock.seconds() + ttl
        self._items[key] = (deadline, value)
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, key))
        self._arm()

    def get(self, key: K) -> V | None:
        """The live value under ``key``, or None."""
        entry = self._items.get(key)
        if entry is None or entry[0] <= self.clock.seconds():
            return None
        return entry[1]  # type: ignore[no-any-return]

    def pop(self, key: K) -> V | None:
        """Remove and return the value under ``key`` (None if absent)."""
        entry = self._items.pop(key, None)
        return None if entry is None else entry[1]  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def _arm(self) -> None:
        if not self._heap:
            return
        first = self._heap[0][0]
        if self._timer is not None and self._timer.active():
            if self._timer_at <= first:
                return
            self._timer.cancel()
        self._timer_at = first
        self._timer = self.clock.callLater(max(0.0, first - self.clock.seconds()), self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        heap, items = self._heap, self._items
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            entry = items.get(key)
            if entry is not None and entry[0] <= now:
                del items[key]
        self._arm()

    def clear(self) -> None:
        """Forget everything and stop the timer."""
        self._items.clear()
        self._heap.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
