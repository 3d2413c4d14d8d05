"""
SIP transports: Twisted protocols that turn datagrams and streams into
``(bytes, Peer)`` for the core, and a :class:`Transports` table that sends
messages back out (RFC 3261 §18).

The protocols do no SIP work: UDP hands each datagram up; TCP and TLS frame
by Content-Length (§18.3), answer CRLF keep-alive pings (RFC 5626 §3.5.1)
and reap idle connections.  How many streams phones may open, for how long,
and what they may make us hold is bounded by :mod:`pbx.sip.connections`.
Nothing raised below the core escapes ``datagramReceived`` or
``dataReceived``.

A connection a phone opened is its flow (RFC 5626 §3): the phone's port
there is ephemeral, so requests to it go on that connection or fail; pbx
never dials that address.  Connections pbx opened to a listening address
are used again for later requests to the same address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import Protocol as Interface

from attrs import define, field

from zope.interface import implementer

from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime
from twisted.internet.protocol import (
    DatagramProtocol,
    Factory,
    Protocol,
    connectionDone,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.sip.connections import StreamGuard
from pbx.sip.message import KeepAlive, Request, Response, SIPParseError, StreamFramer
from pbx.sip.transaction import Peer


class Receiver(Interface):
    """Takes one message's bytes: from ``peer``, on a stream or not, after ``waited`` seconds queued."""

    def __call__(self, data: bytes, peer: Peer, stream: bool, waited: float | None = None) -> None:
        """One message (``waited``: seconds in the UDP receive queue; None: unknown)."""

#: RFC 3261 §18.1.1: a request within 200 bytes of the path MTU (1500) goes
#: over a congestion-controlled transport.
UDP_MAX_REQUEST = 1300
#: Most addresses remembered as taking such requests over UDP only.
MAX_UDP_ONLY = 1024


class SIPDatagramProtocol(DatagramProtocol):
    """One UDP listener."""

    log = Logger()

    def __init__(self, receive: Receiver) -> None:
        self._receive = receive

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802 - twisted API
        """One datagram, its wait in the receive queue unknown."""
        self.datagram_waited(data, addr, None)

    def datagram_waited(self, data: bytes, addr: Any, waited: float | None) -> None:
        """
        Hand one datagram up with the seconds it waited to be read
        (:class:`pbx.sip.udp_port.TimedPort`); keep-alive padding is dropped.
        """
        try:
            if not data.strip(b"\r\n\x00 "):
                return  # keep-alive padding some phones send over UDP
            self._receive(data, Peer("udp", addr[0], addr[1]), False, waited)
        except Exception:
            self.log.failure("UDP datagram from {addr} dropped", addr=addr)


@implementer(IHandshakeListener)
class SIPStreamProtocol(Protocol):
    """
    One TCP or TLS connection, in either direction.

    An inbound one is counted by the transports' :class:`StreamGuard`: it
    has a short time to deliver its first complete message, then a long
    idle timeout renewed by any byte (keep-alives included); the bytes of an
    unfinished message it makes us hold come out of a shared budget.  What
    we write waits in the transport's buffer: past its size (64 KB) we read
    nothing more from the peer until the buffer drains, so a peer that
    sends requests without reading the answers cannot grow it further.
    """

    log = Logger()

    def __init__(self, transports: Transports, kind: str, inbound: bool = True) -> None:
        self._transports = transports
        self._guard = transports.guard
        self._kind = kind
        self._inbound = inbound
        self._framer = StreamFramer(self._guard.limits.max_message)
        self._timer: IDelayedCall | None = None
        # Connections pbx opened need no proof: they were opened to send.
        self._proven = not inbound
        self._closing = False
        self._producing = False
        self.peer: Peer | None = None

    def connectionMade(self) -> None:  # noqa: N802 - twisted API
        """Register the connection so responses and requests can use it."""
        address: Any = self._stream.getPeer()
        self.peer = Peer(self._kind, address.host, address.port, flow=self._inbound)
        if self._inbound:
            self._guard.opened(self, address.host)
        # We produce answers to what we read: when the peer stops reading
        # them and the write buffer fills, we stop reading its requests.
        # Over TLS only once the handshake is done: until then the TLS layer
        # pauses its producer while it holds what we wrote (a connection we
        # opened to send), and pausing our reading then would stop the
        # handshake itself.
        if self._kind != "tls":
            self._produce()
        self._transports.connection_made(self.peer, self)
        self._arm()

    def handshakeCompleted(self) -> None:  # noqa: N802 - twisted API
        """The TLS handshake is done: from now on, a peer that does not read stops our reading."""
        if not self._closing:
            self._produce()

    def _produce(self) -> None:
        self._stream.registerProducer(self, True)
        self._producing = True

    def pauseProducing(self) -> None:  # noqa: N802 - twisted API
        """The peer is not reading what we write: stop reading from it until it does."""
        self._stream.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802 - twisted API
        """What we wrote has drained: read again."""
        if not self._closing:
            self._stream.resumeProducing()

    def stopProducing(self) -> None:  # noqa: N802 - twisted API
        """The connection is going; connectionLost does the rest."""

    def _arm(self) -> None:
        """(Re)start the timer: the first-message one until proven, then the idle one."""
        limits = self._guard.limits
        delay = limits.idle_timeout if self._proven else limits.first_message_timeout
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = self._transports.clock.callLater(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._proven:
            self.log.debug("closing idle {peer}", peer=str(self.peer))
            self._close(abort=False)
        else:
            assert self.peer is not None
            self._guard.timed_out(self.peer.host)
            self._close(abort=True)

    def evict(self) -> None:
        """Close at once to make room for a new connection (see :class:`StreamGuard`)."""
        self.log.debug("evicting {peer}: no complete message yet", peer=str(self.peer))
        self._close(abort=True)

    def drop(self) -> None:
        """Close at once, discarding what waits to be written (its source was banned)."""
        self._close(abort=True)

    def _close(self, *, abort: bool) -> None:
        """
        Close the connection: gracefully (what was written still goes out),
        or, for connections that never proved themselves or asked for too
        much, at once.  It stops counting against the limits right away.
        """
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        self._guard.release(self)
        # TLS waits for a registered producer to go before it shuts down.
        if self._producing:
            self._stream.unregisterProducer()
            self._producing = False
        if abort:
            self._stream.abortConnection()
        else:
            self._stream.loseConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - twisted API
        """Frame the stream; pass complete messages up."""
        if self._closing:
            return  # bytes already in flight when we closed
        if self._proven:
            self._arm()  # only a proven connection earns more time by sending
        try:
            items = self._framer.feed(data)
        except SIPParseError as e:
            # RFC 3261 §18.3: framing is lost; the connection must close.
            assert self.peer is not None
            self._guard.framing_lost(self.peer.host, e.reason)
            self._close(abort=False)
            return
        for item in items:
            if item is KeepAlive.PING:
                self._stream.write(b"\r\n")  # RFC 5626 §3.5.1 pong
            elif item is KeepAlive.PONG:
                continue
            else:
                if not self._proven:
                    self._proven = True
                    self._guard.proven(self)
                    self._arm()
                try:
                    assert self.peer is not None
                    self._transports.receive(item, self.peer, True)  # type: ignore[arg-type]
                except Exception:
                    self.log.failure("message from {peer} dropped", peer=str(self.peer))
        if not self._closing and not self._guard.hold(self, self._framer.buffered):
            self._close(abort=True)

    def send(self, data: bytes) -> None:
        """Write one message."""
        self._stream.write(data)

    @property
    def _stream(self) -> Any:
        """The connected transport (set from connectionMade on)."""
        assert self.transport is not None
        return self.transport

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 - twisted API
        """Forget the connection, its timer and what it held."""
        self._closing = True
        self._cancel_timer()
        self._guard.lost(self)
        if self.peer is not None:
            self.log.debug("connection {peer} closed", peer=str(self.peer))
            self._transports.connection_lost(self.peer, self)


class SIPStreamFactory(Factory):
    """
    Makes :class:`SIPStreamProtocol` for one TCP or TLS listener, or for
    one connection pbx opens (``inbound=False``).  An inbound connection the
    transports' guard does not admit is closed as soon as it is accepted.
    """

    noisy = False

    def __init__(self, transports: Transports, kind: str, inbound: bool = True) -> None:
        self._transports = transports
        self._kind = kind
        self._inbound = inbound

    def buildProtocol(self, addr: Any) -> SIPStreamProtocol | None:  # noqa: N802 - twisted API
        """A protocol for one connection, or None to refuse it."""
        if self._inbound and not self._transports.guard.admit(addr.host):
            return None
        return SIPStreamProtocol(self._transports, self._kind, self._inbound)


@define(eq=False)
class Transports:
    """
    Every open SIP socket, and the one place messages are sent from.

    :ivar receive: the core's entry point for ``(data, peer, stream)``.
    :ivar clock: for idle timers.
    :ivar guard: admits and bounds inbound streams; replace it (before the
        listeners open) to change the limits.
    :ivar connect: opens an outgoing stream to a peer (``(peer, factory)``);
        unset means requests to stream peers without a connection fail.
    :ivar unreachable: told of a peer no connection could be opened to
        (the transaction layer ends what waited for it).
    """

    receive: Receiver
    clock: IReactorTime
    udp: Any = None  # the UDP port messages go out of
    connect: Callable[[Peer, Factory], Any] | None = None
    unreachable: Callable[[Peer], Any] | None = None
    _streams: dict[Peer, SIPStreamProtocol] = field(factory=dict)
    _pending: dict[Peer, list[bytes]] = field(factory=dict)
    #: Of those, the requests bound for UDP that were moved to TCP for their size.
    _moved: dict[Peer, list[bytes]] = field(factory=dict)
    #: (host, port) where TCP could not be opened for such a request: later ones go over UDP.
    _udp_only: set[tuple[str, int]] = field(factory=set)
    #: RFC 5923 aliases: a phone's sent-by address -> its connection, and back.
    _aliases: dict[Peer, Peer] = field(factory=dict)
    _aliased: dict[Peer, set[Peer]] = field(factory=dict)
    guard: StreamGuard = field(init=False)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.guard = StreamGuard(self.clock)

    def connection_made(self, peer: Peer, protocol: SIPStreamProtocol) -> None:
        """A stream is up; flush anything queued for it."""
        self._streams[peer] = protocol
        self._moved.pop(peer, None)
        for data in self._pending.pop(peer, []):
            protocol.send(data)

    def connection_lost(self, peer: Peer, protocol: SIPStreamProtocol) -> None:
        """A stream went away, and the aliases of it."""
        if self._streams.get(peer) is protocol:
            del self._streams[peer]
            for alias in self._aliased.pop(peer, ()):
                if self._aliases.get(alias) == peer:
                    del self._aliases[alias]

    def alias(self, address: Peer, connection: Peer) -> None:
        """
        RFC 5923 §5: requests to ``address`` may go on the open stream to
        ``connection`` (a Via with ``alias`` came on it).
        """
        if connection in self._streams and address != connection:
            self._aliases[address] = connection
            self._aliased.setdefault(connection, set()).add(address)

    def connected(self, peer: Peer) -> bool:
        """Whether a stream to ``peer`` (or one aliased to it) is open."""
        return self._stream(peer) is not None

    def _stream(self, peer: Peer) -> SIPStreamProtocol | None:
        stream = self._streams.get(peer)
        if stream is None and (connection := self._aliases.get(peer)) is not None:
            stream = self._streams.get(connection)
        return stream

    def connect_failed(self, peer: Peer) -> None:
        """
        An outgoing stream could not be opened: what waited for it is
        dropped, except requests moved from UDP for their size, which go
        over UDP after all (RFC 3261 §18.1.1), as later ones to that
        address do.
        """
        dropped = self._pending.pop(peer, [])
        moved = self._moved.pop(peer, [])
        if moved and self.udp is not None:
            if len(self._udp_only) >= MAX_UDP_ONLY:
                self._udp_only.clear()
            self._udp_only.add((peer.host, peer.port))
            for data in moved:
                self.udp.write(data, (peer.host, peer.port))
            self.log.info("could not connect to {peer}; {n} request(s) sent over UDP instead", peer=str(peer),
                          n=len(moved))
            dropped = [data for data in dropped if data not in moved]
            if not dropped:
                return
        self.log.info("could not connect to {peer}; {n} message(s) dropped", peer=str(peer), n=len(dropped))
        if self.unreachable is not None:
            self.unreachable(peer)

    def drop_source(self, host: str) -> int:
        """
        Close at once every stream with ``host``, either way it was opened:
        its source was banned, so nothing it sends will be read.

        :returns: how many were closed.
        """
        streams = [stream for peer, stream in self._streams.items() if peer.host == host]
        for stream in streams:
            stream.drop()
        self._pending = {peer: queued for peer, queued in self._pending.items() if peer.host != host}
        return len(streams)

    @property
    def connections(self) -> int:
        """How many streams are open."""
        return len(self._streams)

    def send(self, message: Request | Response, peer: Peer) -> bool:
        """
        Send one message to ``peer``.

        Responses on streams go back on the connection the request came in
        on (§18.2.2).  Requests to a stream peer go on its open connection
        (or one aliased to it); with none, a new one is opened, except to a
        flow's address (see the module docstring).

        :returns: False when it could not be sent (no connection, no socket).
        """
        return self.send_bytes(message.to_bytes(), peer, request=isinstance(message, Request))

    def send_bytes(self, data: bytes, peer: Peer, *, request: bool = False) -> bool:
        """Send one serialised message; see :meth:`send`."""
        moved = False
        if peer.transport == "udp":
            if (request and len(data) > UDP_MAX_REQUEST and self.connect is not None
                    and (peer.host, peer.port) not in self._udp_only):
                # §18.1.1: too big for UDP; the Via should then name TCP,
                # which is the caller's job when it builds the request.
                peer, moved = Peer("tcp", peer.host, peer.port), True
            elif self.udp is None:
                return False
            else:
                self.udp.write(data, (peer.host, peer.port))
                return True
        stream = self._stream(peer)
        if stream is not None:
            stream.send(data)
            return True
        if not request or self.connect is None or peer.flow:
            # RFC 5626 §5.3: a flow that is gone is not re-opened by us
            # (nothing listens on its port); the phone registers again.
            self.log.info("no connection to {peer}; {kind} dropped", peer=str(peer),
                          kind="request" if request else "response")
            return False
        self._pending.setdefault(peer, []).append(data)
        if moved:
            self._moved.setdefault(peer, []).append(data)
        if len(self._pending[peer]) == 1:
            self.connect(peer, SIPStreamFactory(self, peer.transport, inbound=False))
        return True
