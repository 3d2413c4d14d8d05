"""
Named timers on the injected clock: a transaction's (RFC 3261 §17 Timers
A-M) or a call's (``ring``, ``ok``, ``ack``, ``session``...).  Starting one
replaces any running timer of the same name, a timer that fires is
forgotten, and the owner's end stops them all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.internet.interfaces import IDelayedCall


@define(eq=False)
class NamedTimers:
    """Delayed calls on the injected ``clock``, one per name."""

    clock: Any
    _running: dict[str, IDelayedCall] = field(factory=dict)

    def start(self, name: str, delay: float, f: Callable[[], None]) -> None:
        """Call ``f`` in ``delay`` seconds, replacing the timer ``name`` if it runs."""
        self.stop(name)

        def fire() -> None:
            self._running.pop(name, None)
            f()

        self._running[name] = self.clock.callLater(delay, fire)

    def repeat(self, name: str, send: Callable[[], None], first: float, cap: float) -> None:
        """
        Call ``send`` after ``first`` seconds, then again at doubling
        intervals capped at ``cap``, until :meth:`stop` ``(name)``: how a
        2xx is resent until its ACK (RFC 3261 §13.3.1.4, T1 then up to T2).

        Each round is a partial, not a closure that names itself: such a
        closure is a reference cycle, and it would outlive the stopped timer
        until the garbage collector ran.
        """
        self.start(name, first, functools.partial(self._again, name, send, first, cap))

    def _again(self, name: str, send: Callable[[], None], interval: float, cap: float) -> None:
        send()
        following = min(2 * interval, cap)
        self.start(name, following, functools.partial(self._again, name, send, following, cap))

    def stop(self, name: str) -> None:
        """Stop the timer ``name``, if it runs."""
        call = self._running.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def stop_all(self) -> None:
        """Stop every timer."""
        for name in list(self._running):
            self.stop(name)

    def __contains__(self, name: object) -> bool:
        return name in self._running

    def __len__(self) -> int:
        return len(self._running)
