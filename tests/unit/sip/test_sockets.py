"""
Tests for :mod:`pbx.sip.sockets`: listener services, our addresses, outgoing
stream connections.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import ListenSpec, TLSConfig
from pbx.errors import ListenError
from pbx.sip import sockets
from pbx.sip.connections import StreamGuard, StreamLimits
from pbx.sip.sockets import (
    LocalAddresses,
    RefusingTLSFactory,
    ServerTLS,
    SIPListener,
    StreamConnector,
)
from pbx.sip.transaction import Peer
from pbx.sip.transport import SIPStreamFactory, Transports
from pbx.testing import FakeUDPReactor


class BusyUDPReactor(FakeUDPReactor):
    """A reactor whose UDP ports are all taken."""

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:  # type: ignore[override]  # noqa: N802, N803
        """Fail as a busy port does."""
        raise CannotListenError(interface, port, OSError("Address already in use"))


def transports(reactor: Any) -> Transports:
    """Transports that record what the listeners hand up."""
    received: list[tuple[bytes, Peer, bool]] = []
    return Transports(lambda data, peer, stream: received.append((data, peer, stream)), reactor)


def named(addresses: LocalAddresses, transport: str) -> tuple[str, str, int]:
    """What ``addresses`` names us as on ``transport``: (transport, host, port)."""
    address = addresses.local_address(transport)
    return address.transport, address.host, address.port


def tls(state_dir: str = "unused") -> ServerTLS:
    """A self-signed TLS context source keeping its certificate in ``state_dir``."""
    return ServerTLS(TLSConfig(), state_dir, "pbx.test")


class CountingTLS(ServerTLS):
    """A ServerTLS that records every context it hands out."""

    made: list[Any]

    def context(self) -> Any:
        """The context, recorded."""
        if not hasattr(self, "made"):
            self.made = []
        self.made.append(super().context())
        return self.made[-1]


class SIPListenerTests(SynchronousTestCase):
    """One ``sip.listen`` entry as a service."""

    def test_udp_listens_when_started(self) -> None:
        """Starting a UDP listener binds its port, makes it the outgoing UDP socket and names it."""
        reactor = FakeUDPReactor()
        table, addresses = transports(reactor), LocalAddresses()
        listener = SIPListener(ListenSpec("udp", 5060, "127.0.0.1"), reactor, table, addresses, tls())
        self.assertEqual(reactor.udpPorts, {})
        listener.startService()
        port = reactor.udpPorts[5060]
        self.assertIs(table.udp, port)
        self.assertEqual(listener.address, "sip:udp:127.0.0.1:5060")
        self.assertEqual(named(addresses, "udp"), ("udp", "127.0.0.1", 5060))
        self.assertTrue(listener.running)

    def test_stop_closes_port(self) -> None:
        """Stopping the listener stops listening on its port."""
        reactor = FakeUDPReactor()
        listener = SIPListener(ListenSpec("udp", 5060), reactor, transports(reactor), LocalAddresses(), tls())
        listener.startService()
        self.successResultOf(listener.stopService())
        self.assertFalse(reactor.udpPorts[5060].listening)
        self.assertFalse(listener.running)

    def test_busy_port_is_listen_error(self) -> None:
        """A port that cannot be bound raises ListenError naming the listener; stopping is then harmless."""
        reactor = BusyUDPReactor()
        listener = SIPListener(ListenSpec("udp", 5060), reactor, transports(reactor), LocalAddresses(), tls())
        error = self.assertRaises(ListenError, listener.startService)
        self.assertTrue(str(error).startswith("sip.listen udp:5060: "), str(error))
        self.assertFalse(listener.running)
        self.successResultOf(listener.stopService())

    def test_tcp_listens_with_stream_factory(self) -> None:
        """A TCP listener serves SIP streams on its port and interface."""
        reactor = MemoryReactorClock()
        listener = SIPListener(ListenSpec("tcp", 5060, "127.0.0.1"), reactor, transports(reactor),
                               LocalAddresses("pbx.example.com"), tls())  # fmt: skip
        listener.startService()
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (5060, "127.0.0.1"))
        self.assertIsInstance(factory, SIPStreamFactory)

    def test_tls_listeners_share_one_context(self) -> None:
        """Two TLS listeners use one context, made when the first one opens, over refusing TLS factories."""
        reactor = MemoryReactorClock()
        table, addresses = transports(reactor), LocalAddresses()
        source = CountingTLS(TLSConfig(), self.mktemp(), "pbx.test")
        for port in (5061, 5062):
            SIPListener(ListenSpec("tls", port), reactor, table, addresses, source).startService()
        [first, second] = reactor.tcpServers
        self.assertEqual([first[0], second[0]], [5061, 5062])
        for factory in (first[1], second[1]):
            self.assertIsInstance(factory, RefusingTLSFactory)
            self.assertIsInstance(factory.wrappedFactory, SIPStreamFactory)
        self.assertEqual(len(source.made), 2)
        self.assertIs(source.made[0], source.made[1])

    def test_tls_refusal_makes_no_tls_state(self) -> None:
        """A TLS connection the guard refuses gets no protocol at all (Twisted closes the socket)."""
        reactor = MemoryReactorClock()
        table = transports(reactor)
        table.guard = StreamGuard(reactor, StreamLimits(max_total=1, max_per_source=1))
        SIPListener(ListenSpec("tls", 5061), reactor, table, LocalAddresses(), tls(self.mktemp())).startService()
        [(_, factory, _, _)] = reactor.tcpServers
        first = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
        self.assertIsNotNone(first)
        first.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 40000)))
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40001)))
        self.assertEqual(table.guard.open, 1)
        first.connectionLost(Failure(ConnectionError("closed")))
        self.assertEqual(table.guard.open, 0)


class LocalAddressesTests(SynchronousTestCase):
    """How we name ourselves in Via and Contact."""

    def test_advertise_wins(self) -> None:
        """A configured advertise address replaces the bound one."""
        addresses = LocalAddresses("pbx.example.com")
        addresses.add("udp", "10.0.0.5", 5060)
        self.assertEqual(named(addresses, "udp"), ("udp", "pbx.example.com", 5060))

    def test_wildcard_is_this_host(self) -> None:
        """A socket bound to every address is named by this host's address."""
        self.patch(sockets, "host_address", lambda: "192.0.2.7")
        addresses = LocalAddresses()
        addresses.add("udp", "0.0.0.0", 5060)
        self.assertEqual(addresses.local_address("udp").host, "192.0.2.7")

    def test_first_listener_per_transport(self) -> None:
        """The first listener of a transport names us there; a missing transport borrows another's."""
        addresses = LocalAddresses()
        addresses.add("udp", "127.0.0.1", 5060)
        addresses.add("udp", "127.0.0.2", 5070)
        self.assertEqual(named(addresses, "udp"), ("udp", "127.0.0.1", 5060))
        self.assertEqual(named(addresses, "tls"), ("udp", "127.0.0.1", 5060))


class StreamConnectorTests(SynchronousTestCase):
    """Outgoing TCP and TLS connections for requests."""

    def test_tcp_and_tls(self) -> None:
        """A TCP peer is reached with connectTCP, a TLS peer with connectSSL."""
        reactor = MemoryReactorClock()
        connector = StreamConnector(reactor, transports(reactor))
        factory = SIPStreamFactory(connector.transports, "tcp")
        connector.connect(Peer("tcp", "192.0.2.1", 5060), factory)
        connector.connect(Peer("tls", "192.0.2.1", 5061), factory)
        self.assertEqual([(c[0], c[1]) for c in reactor.tcpClients], [("192.0.2.1", 5060)])
        self.assertEqual([(c[0], c[1]) for c in reactor.sslClients], [("192.0.2.1", 5061)])

    def test_failed_connection_drops_queue(self) -> None:
        """A connection that fails drops what waited for it, so the next request connects again."""
        reactor = MemoryReactorClock()
        table = transports(reactor)
        table.connect = StreamConnector(reactor, table).connect
        peer = Peer("tcp", "192.0.2.1", 5060)
        table.send_bytes(b"OPTIONS", peer, request=True)
        table.send_bytes(b"OPTIONS", peer, request=True)
        self.assertEqual(len(reactor.tcpClients), 1)
        factory = reactor.tcpClients[0][2]
        factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
        table.send_bytes(b"OPTIONS", peer, request=True)
        self.assertEqual(len(reactor.tcpClients), 2)
