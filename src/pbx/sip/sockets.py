"""
The sockets of the SIP side: one listener service per ``sip.listen`` entry,
the addresses those listeners give us for Via and Contact, and the outgoing
TCP and TLS connections requests to phones need (RFC 3261 §18.1.1).

A listener feeds :class:`~pbx.sip.transport.Transports` and nothing else;
what runs above the core is wired elsewhere (:mod:`pbx.switch`).
"""

from __future__ import annotations

import socket
from typing import Any

from attrs import define, field

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ClientFactory, Factory
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from pbx.config import ListenSpec, TLSConfig
from pbx.errors import ListenError
from pbx.security.fips import approved_options
from pbx.sip.dialog import LocalAddress
from pbx.sip.tls import server_context
from pbx.sip.transaction import Peer
from pbx.sip.transport import SIPDatagramProtocol, SIPStreamFactory, Transports
from pbx.sip.udp_port import listen_timed

__all__ = [
    "UDP_RECEIVE_BUFFER",
    "LocalAddresses",
    "STREAM_BACKLOG",
    "RefusingTLSFactory",
    "SIPListener",
    "ServerTLS",
    "StreamConnector",
    "grow_receive_buffer",
    "host_address",
]

#: UDP receive buffer asked for (Linux doubles it, and caps it at twice
#: net.core.rmem_max): room for a burst of requests while the reactor is
#: busy.  It holds about 6,500 REGISTERs (Linux counts 1,280 octets for a
#: 600-octet datagram), 1.6 s of them at full speed.  New work that waited
#: too long in it is refused (:mod:`pbx.sip.overload`), so under a
#: sustained flood it drains rather than fills.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

#: Pending TCP and TLS connections the kernel queues for accept: phones
#: reconnect in bursts after an outage, and a short queue drops them (the
#: kernel caps it at net.core.somaxconn).  What is accepted is then held to
#: the limits of :mod:`pbx.sip.connections`.
STREAM_BACKLOG = 1024

_WILDCARDS = ("", "0.0.0.0", "::")


def host_address() -> str:
    """This host's address as its name resolves (no packet is sent)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def grow_receive_buffer(port: Any) -> None:
    """Ask for :data:`UDP_RECEIVE_BUFFER` on a UDP port's socket, if it has one."""
    sock = getattr(port, "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    except OSError:
        pass


@define(eq=False)
class LocalAddresses:
    """
    How we name ourselves on each transport (Via sent-by, Contact), learnt as
    the listeners open.

    :ivar advertise: the configured ``sip.advertise``; empty means the bound
        address, or this host's address for a wildcard bind.
    """

    advertise: str = ""
    _by_transport: dict[str, LocalAddress] = field(factory=dict)

    def add(self, transport: str, bound: str, port: int) -> None:
        """Record a listener; the first one on a transport names us there."""
        self._by_transport.setdefault(transport, LocalAddress(transport, self._advertised(bound), port))

    def local_address(self, transport: str) -> LocalAddress:
        """Our Via/Contact address on ``transport`` (another transport's if we lack it)."""
        address = self._by_transport.get(transport)
        if address is None:
            address = next(iter(self._by_transport.values()))
        return address

    def _advertised(self, bound: str) -> str:
        """The address to name in Via/Contact for a socket bound to ``bound``."""
        if self.advertise:
            return self.advertise
        if bound not in _WILDCARDS:
            return bound
        return host_address()


@define(eq=False)
class ServerTLS:
    """
    The TLS server context every ``tls`` listener shares, loaded (or
    generated, self-signed) when the first one opens.
    """

    config: TLSConfig
    state_dir: str
    hostname: str
    _context: CertificateOptions | None = None
    log = Logger()

    def context(self) -> CertificateOptions:
        """
        The context, made on first use.

        :raises pbx.sip.tls.TLSSetupError: naming the file that could not be used.
        """
        if self._context is None:
            context, print_, generated = server_context(self.config, self.state_dir, self.hostname)
            self.log.info(
                "TLS certificate {how}, SHA-256 fingerprint {fp}",
                how="generated (self-signed)" if generated else "loaded", fp=print_,
            )
            self._context = context
        return self._context


class SIPListener(Service):
    """
    One ``sip.listen`` entry: its socket opens when the service starts and
    closes when it stops.

    :ivar address: ``sip:<transport>:<host>:<port>`` once listening.
    """

    def __init__(
        self, spec: ListenSpec, reactor: Any, transports: Transports, addresses: LocalAddresses, tls: ServerTLS
    ) -> None:
        self._spec = spec
        self._reactor = reactor
        self._transports = transports
        self._addresses = addresses
        self._tls = tls
        self._port: IListeningPort | None = None
        self.address = ""

    def startService(self) -> None:  # noqa: N802 - twisted API
        """
        Open the socket.

        :raises ListenError: naming the listener and why it could not open.
        """
        try:
            port = self._listen()
        except Exception as e:
            raise ListenError(f"sip.listen {self._spec}: {e}") from e
        super().startService()
        self._port = port
        host: Any = port.getHost()
        self.address = f"sip:{self._spec.transport}:{host.host}:{host.port}"
        self._addresses.add(self._spec.transport, host.host, host.port)

    def _listen(self) -> IListeningPort:
        spec, transports = self._spec, self._transports
        if spec.transport == "udp":
            port = listen_timed(self._reactor, spec.port, SIPDatagramProtocol(transports.receive), spec.interface)
            grow_receive_buffer(port)
            if transports.udp is None:
                transports.udp = port
            return port
        if spec.transport == "tcp":
            return self._reactor.listenTCP(
                spec.port, SIPStreamFactory(transports, "tcp"), backlog=STREAM_BACKLOG, interface=spec.interface
            )
        # listenSSL would wrap the factory in a TLSMemoryBIOFactory, which
        # cannot refuse a connection; this one can, before any TLS state.
        factory = RefusingTLSFactory(
            self._tls.context(), False, SIPStreamFactory(transports, "tls"), clock=self._reactor
        )
        return self._reactor.listenTCP(spec.port, factory, backlog=STREAM_BACKLOG, interface=spec.interface)

    def stopService(self) -> Deferred[None]:  # noqa: N802 - twisted API
        """Close the socket (if it opened)."""
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        stopped = maybeDeferred(port.stopListening)
        return stopped.addCallback(lambda _: None)


class RefusingTLSFactory(TLSMemoryBIOFactory):
    """
    TLS over a factory whose ``buildProtocol`` may return None: the
    connection is then closed as soon as it is accepted, with no handshake.
    """

    noisy = False

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - twisted API
        """The TLS protocol around the inner one, or None if the inner factory refused."""
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return self.protocol(self, inner)


@define(eq=False)
class StreamConnector:
    """
    Opens outgoing TCP and TLS connections for requests to stream peers
    (:attr:`pbx.sip.transport.Transports.connect`).
    """

    reactor: Any
    transports: Transports
    #: TLS client connection creators (``optionsForClientTLS``) by
    #: ``(host, port)``: connections there verify the server's certificate
    #: (a carrier's); elsewhere none is verified (phones).
    verified: dict[tuple[str, int], Any] = field(factory=dict)
    #: FIPS mode: TLS 1.2+ with approved suites to phones too.
    approved_only: bool = False

    def connect(self, peer: Peer, factory: Factory) -> None:
        """Open a connection to ``peer``; a failure is reported to the transports."""
        failing = _Failing(factory, self.transports, peer)
        creator = self.verified.get((peer.host, peer.port)) if peer.transport == "tls" else None
        if creator is not None:
            self.reactor.connectTCP(peer.host, peer.port, TLSMemoryBIOFactory(creator, True, failing))
        elif peer.transport == "tls":
            # Phones present self-signed certificates; the connection is
            # encrypted but the phone is identified by its registration.
            options = CertificateOptions(**approved_options()) if self.approved_only else CertificateOptions()
            self.reactor.connectSSL(peer.host, peer.port, failing, options)
        else:
            self.reactor.connectTCP(peer.host, peer.port, failing)


class _Failing(ClientFactory):
    """A client factory that reports a failed connection to the transports."""

    noisy = False

    def __init__(self, inner: Factory, transports: Transports, peer: Peer) -> None:
        self._inner = inner
        self._transports = transports
        self._peer = peer

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - twisted API
        return self._inner.buildProtocol(addr)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:  # noqa: N802 - twisted API
        self._transports.connect_failed(self._peer)
