"""
Bounds on the TCP and TLS connections phones open to us: how many may be
open (in total and per source address), how long one may stay silent, and
how many bytes of unfinished messages they may make us hold.

A connection accepted from a phone is *unproven* until it has delivered one
complete SIP message (for TLS that includes finishing the handshake): until
then it gets :attr:`StreamLimits.first_message_timeout`, a few seconds, and
only half of the shared buffer budget.  Once proven, the long
:attr:`StreamLimits.idle_timeout` applies, renewed by every byte including
the CRLF keep-alives of RFC 5626 §3.5.1.

When every slot is taken, a new connection takes the slot of the oldest
unproven one (which is closed) rather than being refused: a phone sends its
request as soon as it connects, so it proves itself within a round trip,
while connections opened only to sit idle are the ones that go.  A source
at its own cap is refused outright, and so is a banned source
(:mod:`pbx.security.defence`).  An evicted connection's descriptor is
freed on the reactor's next turn, after the accepts in hand: at most an
eighth of ``max_total`` (16 at least) evictions are left in flight, so the
descriptors in use never pass the cap by more than that.

Connections pbx opened itself (to a phone's listening address) are not
counted: there are as many as there are registered phones that want them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from attrs import define, field, frozen

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from pbx.security.connections import ConnectionCaps, Refusal, ThrottledLog

__all__ = ["StreamGuard", "StreamLimits"]


@frozen
class StreamLimits:
    """
    The numbers a :class:`StreamGuard` enforces (``sip.connections``, with
    the caps derived from the descriptor limit; see
    :mod:`pbx.descriptors`).

    :ivar max_total: inbound connections open at once.
    :ivar max_per_source: inbound connections open at once from one address.
    :ivar first_message_timeout: seconds an unproven connection may stay open.
    :ivar idle_timeout: seconds a proven connection may stay silent.
    :ivar max_message: the largest message, in octets (RFC 3261 §18.3 framing).
    :ivar max_buffered: octets of unfinished messages held over all
        connections; unproven ones may take half of it.
    """

    max_total: int = 1000
    max_per_source: int = 250
    first_message_timeout: float = 20.0
    idle_timeout: float = 600.0
    max_message: int = 65536
    max_buffered: int = 16 * 1024 * 1024


class Evictable(Protocol):
    """A connection the guard can close to make room."""

    def evict(self) -> None:
        """Close at once (the guard has already stopped counting it)."""


@define(eq=False)
class _Member:
    """What the guard knows of one inbound connection."""

    source: str
    held: int = 0
    proven: bool = False


@define(eq=False)
class StreamGuard:
    """
    Admits inbound SIP connections and keeps count of them and of the bytes
    they hold; see the module docstring.

    :ivar clock: for the throttled log.
    :ivar limits: what is enforced.
    :ivar banned: whether a source address is banned (its connections are refused).
    """

    clock: IReactorTime
    limits: StreamLimits = StreamLimits()
    banned: Callable[[str], bool] = lambda source: False
    _caps: ConnectionCaps = field(init=False)
    _members: dict[Evictable, _Member] = field(factory=dict, init=False)
    #: Unproven connections, oldest first (dicts keep insertion order).
    _unproven: dict[Evictable, None] = field(factory=dict, init=False)
    #: Evicted connections whose descriptors are not closed yet.
    _evicted: set[Evictable] = field(factory=set, init=False)
    _buffered: int = field(default=0, init=False)
    _throttled: ThrottledLog = field(init=False)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._caps = ConnectionCaps(self.limits.max_total, self.limits.max_per_source)
        self._throttled = ThrottledLog(self.clock, self.log)

    @property
    def open(self) -> int:
        """Inbound connections counted as open."""
        return self._caps.total

    @property
    def buffered(self) -> int:
        """Octets of unfinished messages held over all connections."""
        return self._buffered

    def admit(self, source: str) -> bool:
        """
        Whether a connection from ``source`` may be accepted now: not if it
        is banned, nor over a cap; when the
        total is reached, the oldest unproven connection is closed to make
        room.  A refusal or an eviction is logged, throttled.
        """
        if self.banned(source):
            self._throttled.event(
                "banned", "SIP connections refused: {source} is banned; {count} refused", source=source,
            )
            return False
        refusal = self._caps.refusal(source)
        in_flight = max(16, self.limits.max_total // 8)
        if refusal is Refusal.TOTAL and self._unproven and len(self._evicted) < in_flight:
            oldest = next(iter(self._unproven))
            self._throttled.event(
                "evicted",
                "SIP connections: all {limit} slots taken; {count} connection(s) that had"
                " sent no complete message closed to make room (sip.connections.max_total)",
                limit=self.limits.max_total,
            )
            self.release(oldest)
            self._evicted.add(oldest)
            oldest.evict()
            refusal = self._caps.refusal(source)
        if refusal is None:
            return True
        if refusal is Refusal.PER_SOURCE:
            self._throttled.event(
                refusal.value,
                "SIP connections refused: {source} has {limit} open (sip.connections.max_per_source);"
                " {count} refused",
                source=source, limit=self.limits.max_per_source,
            )
        else:
            self._throttled.event(
                refusal.value,
                "SIP connections refused: all {limit} slots taken (sip.connections.max_total);"
                " {count} refused",
                limit=self.limits.max_total,
            )
        return False

    def opened(self, connection: Evictable, source: str) -> None:
        """Count an admitted connection as open and unproven."""
        self._caps.add(source)
        self._members[connection] = _Member(source)
        self._unproven[connection] = None

    def proven(self, connection: Evictable) -> None:
        """``connection`` delivered a complete message: it may no longer be evicted."""
        member = self._members.get(connection)
        if member is not None:
            member.proven = True
        self._unproven.pop(connection, None)

    def hold(self, connection: Evictable, size: int) -> bool:
        """
        Let ``connection`` hold ``size`` octets of an unfinished message.

        :returns: False when that would pass the budget (proven connections
            may fill it, unproven ones half of it): the caller closes the
            connection, and must then :meth:`release` it.
        """
        member = self._members.get(connection)
        if member is None:
            return True  # not counted (a connection pbx opened)
        total = self._buffered - member.held + size
        budget = self.limits.max_buffered if member.proven else self.limits.max_buffered // 2
        if size > member.held and total > budget:
            self._throttled.event(
                "buffered",
                "SIP connections closed: {budget} octets of unfinished messages held"
                " (sip.connections.max_buffered); {count} closed",
                budget=budget,
            )
            return False
        self._buffered = total
        member.held = size
        return True

    def release(self, connection: Evictable) -> None:
        """Stop counting ``connection`` (closed, or about to be); harmless twice."""
        member = self._members.pop(connection, None)
        if member is None:
            return
        self._unproven.pop(connection, None)
        self._buffered -= member.held
        self._caps.remove(member.source)

    def lost(self, connection: Evictable) -> None:
        """``connection`` is closed and its descriptor freed."""
        self._evicted.discard(connection)
        self.release(connection)

    def framing_lost(self, source: str, reason: str) -> None:
        """Log, throttled, that a connection from ``source`` was closed for a message that cannot be framed."""
        self._throttled.event(
            "framing",
            "SIP connections closed: framing lost (RFC 3261 §18.3); {count} closed, the last from {source}:"
            " {reason}",
            level=LogLevel.info, source=source, reason=reason,
        )

    def timed_out(self, source: str) -> None:
        """Log, throttled, that an unproven connection from ``source`` ran out of time."""
        self._throttled.event(
            "first-message",
            "SIP connections closed: no complete message within {timeout:g} s"
            " (sip.connections.first_message_timeout); {count} closed, the last from {source}",
            timeout=self.limits.first_message_timeout, source=source,
        )
