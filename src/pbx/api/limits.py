"""
Bounds on the API's HTTP connections, so that neither many idle clients
nor slow ones can take the descriptors the rest of the PBX needs:

- :class:`LimitedFactory` wraps the :class:`~twisted.web.server.Site` and
  refuses connections beyond a cap per source address (closed as soon as
  accepted; see :mod:`pbx.security.connections`); at the total cap the
  oldest connection that is waiting for a request head is closed to make
  room, as SIP does (:mod:`pbx.sip.connections`), so idle clients cannot
  lock an administrator out;
- :class:`HeaderTimedChannel` closes a connection whose request head
  (request line and headers) has not arrived within ``header_timeout``
  seconds, however slowly it trickles in; the Site's own ``timeOut`` closes
  connections that stay silent.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocolFactory,
    IReactorTime,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from pbx.security.connections import ConnectionCaps, Refusal, ThrottledLog

__all__ = ["HeaderTimedChannel", "LimitedFactory"]


def _source(addr: IAddress | None) -> str:
    """The address a connection comes from (its host for TCP)."""
    if isinstance(addr, IPv4Address | IPv6Address):
        return addr.host
    return str(addr)


class LimitedFactory(WrappingFactory):
    """
    Wraps an HTTP factory with caps on its connections.

    :param wrapped: the Site.
    :param caps: the caps, and the count of what is open.
    :param clock: for the throttled log of refusals.
    """

    noisy = False
    log = Logger()

    def __init__(self, wrapped: IProtocolFactory, caps: ConnectionCaps, clock: IReactorTime) -> None:
        super().__init__(wrapped)
        self.caps = caps
        self._throttled = ThrottledLog(clock, self.log)
        #: Open connections and where from, oldest first.
        self._sources: dict[ProtocolWrapper, str] = {}
        #: Connections closed to make room whose descriptors are not freed yet.
        self._evicted: set[ProtocolWrapper] = set()

    def buildProtocol(self, addr: IAddress | None) -> Any:  # noqa: N802 - twisted API
        """The wrapped protocol, or None (the socket is closed) over a cap."""
        source = _source(addr)
        refusal = self.caps.refusal(source)
        if refusal is Refusal.TOTAL and self._evict():
            refusal = self.caps.refusal(source)
        if refusal is not None:
            per_source = refusal is Refusal.PER_SOURCE
            self._throttled.event(
                refusal.value,
                "API connections refused: {limit} open ({where}, api.connections.{key}); {count} refused",
                limit=self.caps.max_per_source if per_source else self.caps.max_total,
                where=f"from {source}" if per_source else "in total",
                key="max_per_source" if per_source else "max_total",
            )
            return None
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        protocol = self.protocol(self, inner)
        self.caps.add(source)
        self._sources[protocol] = source
        return protocol

    def _evict(self) -> bool:
        """
        Close the oldest connection waiting for a request head, unless too
        many closed ones still hold their descriptors (an eighth of the cap,
        8 at least).

        :returns: whether one was closed.
        """
        if len(self._evicted) >= max(8, self.caps.max_total // 8):
            return False
        for wrapper, source in self._sources.items():
            channel = wrapper.wrappedProtocol
            if isinstance(channel, HeaderTimedChannel) and channel.awaiting_head:
                del self._sources[wrapper]
                self.caps.remove(source)
                self._evicted.add(wrapper)
                self._throttled.event(
                    "evicted",
                    "API connections: all {limit} slots taken (api.connections.max_total); {count} idle"
                    " connection(s) closed to make room",
                    limit=self.caps.max_total,
                )
                wrapper.transport.abortConnection()  # type: ignore[union-attr]
                return True
        return False

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:  # noqa: N802 - twisted API
        """A connection closed: it no longer counts."""
        super().unregisterProtocol(p)
        self._evicted.discard(p)
        source = self._sources.pop(p, None)
        if source is not None:
            self.caps.remove(source)


class HeaderTimedChannel(HTTPChannel):
    """
    An HTTP channel that gives each request ``header_timeout`` seconds to
    send its head: from the connection's start, then from the end of each
    response on a persistent connection.
    """

    header_timeout: float = 20.0
    _head_call: IDelayedCall | None = None
    _head_log = Logger()

    def connectionMade(self) -> None:  # noqa: N802 - twisted API
        """Start the clock for the first request's head."""
        super().connectionMade()
        self._await_head()

    @property
    def awaiting_head(self) -> bool:
        """Whether the connection is idle or sending a request head (not being served)."""
        return self._head_call is not None and self._head_call.active()

    def _await_head(self) -> None:
        self._cancel_head()
        self._head_call = self.callLater(self.header_timeout, self._head_too_slow)

    def _cancel_head(self) -> None:
        if self._head_call is not None and self._head_call.active():
            self._head_call.cancel()
        self._head_call = None

    def _head_too_slow(self) -> None:
        self._head_call = None
        self._head_log.debug("closing {peer}: no request head within {timeout:g} s",
                             peer=str(self.transport.getPeer()) if self.transport else "?",
                             timeout=self.header_timeout)
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def allHeadersReceived(self) -> None:  # noqa: N802 - twisted API
        """The head is complete: its clock stops."""
        self._cancel_head()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:  # noqa: N802 - twisted API
        """The response is out: the next request's head is timed from now."""
        if self.persistent:
            # Before the base class, which may parse a pipelined head at once.
            self._await_head()
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 - twisted API
        """Stop the clock."""
        self._cancel_head()
        super().connectionLost(reason)
