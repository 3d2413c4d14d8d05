"""
Call events: every call's life, published to whoever subscribes.

A call publishes ``created`` when it is set up, ``ringing`` at the first
provisional response from a callee's phone, ``answered`` and ``bridged``
when two parties are connected, ``held``/``resumed`` when a party holds,
``transferred`` when it moves, ``parked``/``unparked`` as it waits in a
park slot (:mod:`pbx.calls.park`), and ``ended`` with its call detail records.
Call detail records are one subscriber (:mod:`pbx.calls.cdr`); queues, the
operator console, recording and webhooks are others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import define, field, frozen

from twisted.logger import Logger

KINDS = ("created", "ringing", "answered", "bridged", "held", "resumed", "transferred", "ended",
         "parked", "unparked")


@frozen
class CallEvent:
    """
    One moment in a call's life.

    :ivar kind: one of :data:`KINDS`.
    :ivar call_id: the call's key (its caller's Call-ID, or the first
        INVITE's for a call pbx placed).
    :ivar caller: who calls.
    :ivar callee: who is called.
    :ivar time: the clock's time of the event.
    :ivar leg: ``"a"`` (the caller's side), ``"b"`` (a callee's side) or ``""``.
    :ivar detail: what else the event says: ``application``, ``reason``,
        ``records`` (for ``ended``: the :class:`~pbx.records.CallRecord`
        list; for ``answered``, and for ``transferred``, ``parked`` and
        ``unparked`` of a call its parties moved in: the records the call
        would have if it ended then, which the journal of live calls keeps,
        with ``departed``, those of the parties that left) ...
    """

    kind: str
    call_id: str
    caller: str
    callee: str
    time: float
    leg: str = ""
    detail: Mapping[str, Any] = field(factory=dict)


Subscriber = Callable[[CallEvent], object]


@define(eq=False)
class CallEvents:
    """The subscribers of call events; a subscriber that raises is logged and keeps its place."""

    _subscribers: list[tuple[Subscriber, frozenset[str]]] = field(factory=list)
    _wanted: frozenset[str] = frozenset()
    log = Logger()

    def subscribe(self, subscriber: Subscriber, kinds: Iterable[str] = KINDS) -> Callable[[], None]:
        """
        Call ``subscriber(event)`` for every event of ``kinds`` (default:
        all) from now on.

        :returns: what unsubscribes it.
        :raises ValueError: for a kind that is not one of :data:`KINDS`.
        """
        wanted = frozenset(kinds)
        unknown = sorted(wanted - frozenset(KINDS))
        if unknown:
            raise ValueError(f"no call event {unknown[0]!r}")
        entry = (subscriber, wanted)
        self._subscribers.append(entry)
        self._wanted |= wanted

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
                self._wanted = frozenset().union(*(kinds for _, kinds in self._subscribers))

        return unsubscribe

    def wants(self, kind: str) -> bool:
        """Whether any subscriber takes events of ``kind`` (a call makes none nobody takes)."""
        return kind in self._wanted

    def announce(self, kind: str, call: Any, time: float, leg: str = "", **detail: Any) -> None:
        """Publish ``call``'s event of ``kind``, made only when someone takes that kind."""
        if kind in self._wanted:
            self.publish(CallEvent(kind, call.call_id, call.caller, call.callee, time, leg, detail))

    def publish(self, event: CallEvent) -> None:
        """Hand ``event`` to every subscriber of its kind, in the order they subscribed."""
        for subscriber, kinds in list(self._subscribers):
            if event.kind not in kinds:
                continue
            try:
                subscriber(event)
            except Exception:
                self.log.failure("call event subscriber {subscriber!r} failed on {kind}",
                                 subscriber=subscriber, kind=event.kind)
