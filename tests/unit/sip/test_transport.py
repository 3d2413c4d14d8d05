"""Tests for :mod:`pbx.sip.transport` (RFC 3261 §18, RFC 5626 keep-alives)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.connections import StreamLimits
from pbx.sip.message import Request, Response, make_response, parse_message
from pbx.sip.transaction import Peer
from pbx.sip.transport import (
    UDP_MAX_REQUEST,
    SIPDatagramProtocol,
    SIPStreamFactory,
    SIPStreamProtocol,
    Transports,
)
from pbx.testing import FakeUDPPort, FakeUDPReactor

PHONE = Peer("tcp", "192.0.2.7", 5070)
IDLE_TIMEOUT = StreamLimits().idle_timeout


def options(
    branch: str = "z9hG4bK-tr1", padding: str = "", transport: str = "TCP"
) -> bytes:
    """The wire form of a small OPTIONS request, optionally padded with a header."""
    extra = f"X-Padding: {padding}\r\n" if padding else ""
    return (
        "OPTIONS sip:pbx.test SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 192.0.2.7:5070;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1001@pbx.test>;tag=a1\r\n"
        "To: <sip:pbx.test>\r\n"
        "Call-ID: tr-1@192.0.2.7\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"{extra}"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()


MESSAGE = (
    b"MESSAGE sip:1001@pbx.test SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.7:5070;branch=z9hG4bK-tr2\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1002@pbx.test>;tag=b2\r\n"
    b"To: <sip:1001@pbx.test>\r\n"
    b"Call-ID: tr-2@192.0.2.7\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 14\r\n"
    b"\r\n"
    b"Hello\r\n\r\nthere"
)


def parse_request(data: bytes) -> Request:
    """Parse a request."""
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


class Received:
    """A receiver that records what the transports hand up."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, Peer, bool]] = []
        self.waits: list[float | None] = []

    def __call__(self, data: bytes, peer: Peer, stream: bool, waited: float | None = None) -> None:
        """Record one message (and, apart, how long it waited)."""
        self.calls.append((data, peer, stream))
        self.waits.append(waited)


class Connector:
    """Stands in for ``reactor.connectTCP``: records each attempt."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Peer, Factory]] = []

    def __call__(self, peer: Peer, factory: Factory) -> None:
        """Record one connection attempt."""
        self.attempts.append((peer, factory))


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class _StreamTestCase(SynchronousTestCase):
    """A Transports table and helpers to open connections to it."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.received = Received()
        self.transports = Transports(self.received, self.clock)

    def connect(self, peer: Peer = PHONE) -> tuple[SIPStreamProtocol, StringTransport]:
        """Open a connection from ``peer`` through a SIPStreamFactory."""
        factory = SIPStreamFactory(self.transports, peer.transport)
        address = IPv4Address("TCP", peer.host, peer.port)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def close(self, protocol: SIPStreamProtocol) -> None:
        """Tell the protocol its connection is gone."""
        protocol.connectionLost(Failure(ConnectionError("closed")))


class StreamProtocolTests(_StreamTestCase):
    """SIPStreamProtocol: framing, keep-alives, idle reaping."""

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_odd_chunks(self) -> None:
        """Messages fed in 1, 7 and 13 byte chunks arrive whole, in order."""
        stream = options() + MESSAGE + options(branch="z9hG4bK-tr3")
        for size in (1, 7, 13):
            self.received.calls.clear()
            protocol, transport = self.connect()
            for chunk in _chunks(stream, size):
                protocol.dataReceived(chunk)
            self.assertEqual(
                self.received.calls,
                [
                    (options(), PHONE, True),
                    (MESSAGE, PHONE, True),
                    (options(branch="z9hG4bK-tr3"), PHONE, True),
                ],
            )
            self.assertFalse(transport.disconnecting)
            self.close(protocol)

    def test_body_with_blank_line(self) -> None:
        """A body containing CRLF CRLF is cut by Content-Length, not by the blank line."""
        protocol, _ = self.connect()
        protocol.dataReceived(MESSAGE)
        self.assertEqual(len(self.received.calls), 1)
        self.assertEqual(
            parse_message(self.received.calls[0][0], stream=True).body,
            b"Hello\r\n\r\nthere",
        )
        self.close(protocol)

    def test_ping_pong(self) -> None:
        """A CRLF CRLF ping gets one CRLF pong, and nothing goes up (RFC 5626 §3.5.1)."""
        protocol, transport = self.connect()
        for chunk in _chunks(b"\r\n\r\n", 1):
            protocol.dataReceived(chunk)
        self.assertEqual(transport.value(), b"\r\n")
        self.assertEqual(self.received.calls, [])
        self.close(protocol)

    def test_ping_between_messages(self) -> None:
        """A ping between two messages is answered and both messages arrive."""
        protocol, transport = self.connect()
        protocol.dataReceived(options() + b"\r\n\r\n" + MESSAGE)
        self.assertEqual(transport.value(), b"\r\n")
        self.assertEqual([c[0] for c in self.received.calls], [options(), MESSAGE])
        self.close(protocol)

    def test_pong_ignored(self) -> None:
        """A lone CRLF (the pong to our ping) is neither answered nor passed up."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"\r\n" + options())
        self.assertEqual(transport.value(), b"")
        self.assertEqual([c[0] for c in self.received.calls], [options()])
        self.close(protocol)

    def test_missing_content_length_closes(self) -> None:
        """A stream message without Content-Length closes the connection (§18.3)."""
        protocol, transport = self.connect()
        protocol.dataReceived(options().replace(b"Content-Length: 0\r\n", b""))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.received.calls, [])
        # Later bytes are not resynchronised on.
        protocol.dataReceived(options())
        self.assertEqual(self.received.calls, [])
        self.close(protocol)

    def test_too_large_closes(self) -> None:
        """A Content-Length beyond the maximum message size closes the connection."""
        protocol, transport = self.connect()
        protocol.dataReceived(
            options().replace(b"Content-Length: 0", b"Content-Length: 999999")
        )
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.received.calls, [])
        self.close(protocol)

    def test_idle_reaped(self) -> None:
        """A connection that carried a message and is then silent for the idle timeout is closed."""
        protocol, transport = self.connect()
        protocol.dataReceived(options())
        self.clock.advance(IDLE_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.close(protocol)
        self.assertEqual(self.transports.connections, 0)

    def test_data_defers_reaping(self) -> None:
        """Once a message came, any data, even a keep-alive, restarts the idle timer."""
        protocol, transport = self.connect()
        protocol.dataReceived(options())
        self.clock.advance(IDLE_TIMEOUT - 1)
        protocol.dataReceived(b"\r\n\r\n")
        self.clock.advance(IDLE_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.close(protocol)

    def test_connection_table(self) -> None:
        """connectionMade adds the peer to the table; connectionLost removes it and its timer."""
        self.assertEqual(self.transports.connections, 0)
        protocol, _ = self.connect()
        self.assertEqual(protocol.peer, PHONE)
        self.assertEqual(self.transports.connections, 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.close(protocol)
        self.assertEqual(self.transports.connections, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_old_connection_lost_keeps_new(self) -> None:
        """Losing a replaced connection does not remove its successor for the same peer."""
        old, _ = self.connect()
        new, new_transport = self.connect()
        self.close(old)
        self.assertEqual(self.transports.connections, 1)
        self.assertTrue(
            self.transports.send(make_response(parse_request(options()), 200), PHONE)
        )
        self.assertIn(b"SIP/2.0 200 OK", new_transport.value())
        self.close(new)
        self.assertEqual(self.transports.connections, 0)

    def test_tls_kind(self) -> None:
        """A TLS listener's connections are TLS peers."""
        protocol, _ = self.connect(Peer("tls", "192.0.2.7", 5071))
        protocol.dataReceived(options())
        self.assertEqual(self.received.calls[0][1], Peer("tls", "192.0.2.7", 5071))
        self.close(protocol)

    def test_receiver_error_logged(self) -> None:
        """A receiver that raises is logged; the connection stays open and keeps working."""
        calls: list[bytes] = []

        def receive(data: bytes, peer: Peer, stream: bool, waited: float | None = None) -> None:
            calls.append(data)
            raise ZeroDivisionError("core bug")

        self.transports.receive = receive
        protocol, transport = self.connect()
        protocol.dataReceived(options() + MESSAGE)
        self.assertEqual(calls, [options(), MESSAGE])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.assertFalse(transport.disconnecting)
        self.close(protocol)


class SendTests(_StreamTestCase):
    """Transports.send: choosing the socket or connection (§18.1.1, §18.2.2)."""

    def setUp(self) -> None:
        super().setUp()
        self.udp = FakeUDPPort(5060, None)
        self.transports.udp = self.udp
        self.connector = Connector()

    def test_udp_request(self) -> None:
        """A small request to a UDP peer goes out of the UDP port."""
        request = parse_request(options(transport="UDP"))
        self.assertTrue(self.transports.send(request, Peer("udp", "192.0.2.7", 5062)))
        self.assertEqual(self.udp.written, [(request.to_bytes(), ("192.0.2.7", 5062))])

    def test_udp_response(self) -> None:
        """A response to a UDP peer goes out of the UDP port."""
        response = make_response(parse_request(options(transport="UDP")), 404)
        self.assertTrue(self.transports.send(response, Peer("udp", "192.0.2.7", 5062)))
        self.assertEqual(self.udp.written, [(response.to_bytes(), ("192.0.2.7", 5062))])

    def test_no_udp_port(self) -> None:
        """Without a UDP port a UDP message cannot be sent."""
        self.transports.udp = None
        request = parse_request(options(transport="UDP"))
        self.assertFalse(self.transports.send(request, Peer("udp", "192.0.2.7", 5060)))

    def test_response_on_its_connection(self) -> None:
        """A response on a stream goes on the connection its request came in on."""
        protocol, transport = self.connect()
        other, other_transport = self.connect(Peer("tcp", "192.0.2.8", 5070))
        response = make_response(parse_request(options()), 200)
        self.assertTrue(self.transports.send(response, PHONE))
        self.assertEqual(transport.value(), response.to_bytes())
        self.assertEqual(other_transport.value(), b"")
        self.assertEqual(self.udp.written, [])
        self.close(protocol)
        self.close(other)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_response_without_connection_dropped(self) -> None:
        """A response for a stream that has gone is dropped, and no connection is opened."""
        self.transports.connect = self.connector
        response = make_response(parse_request(options()), 200)
        self.assertFalse(self.transports.send(response, PHONE))
        self.assertEqual(self.connector.attempts, [])
        self.assertEqual(self.udp.written, [])

    def test_request_without_connect(self) -> None:
        """A request to a stream peer with no connection and no connector fails."""
        self.assertFalse(self.transports.send(parse_request(options()), PHONE))

    def test_request_queues_and_connects(self) -> None:
        """A request to an unconnected stream peer is queued; one connection attempt is made."""
        self.transports.connect = self.connector
        first = parse_request(options())
        second = parse_request(MESSAGE)
        self.assertTrue(self.transports.send(first, PHONE))
        self.assertTrue(self.transports.send(second, PHONE))
        self.assertEqual(len(self.connector.attempts), 1)
        peer, factory = self.connector.attempts[0]
        self.assertEqual(peer, PHONE)
        self.assertIsInstance(factory, SIPStreamFactory)
        # The connection comes up: the queue is flushed in order.
        address = IPv4Address("TCP", PHONE.host, PHONE.port)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), first.to_bytes() + second.to_bytes())
        self.assertEqual(self.transports.connections, 1)
        # Further requests use the open connection.
        self.assertTrue(self.transports.send(first, PHONE))
        self.assertEqual(len(self.connector.attempts), 1)
        self.assertEqual(
            transport.value(), first.to_bytes() + second.to_bytes() + first.to_bytes()
        )
        self.close(protocol)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connect_failed_reported(self) -> None:
        """A connection that could not be opened is reported as an unreachable peer."""
        unreachable: list[Peer] = []
        self.transports.unreachable = unreachable.append
        self.transports.connect = self.connector
        self.transports.send(parse_request(options()), PHONE)
        self.transports.connect_failed(PHONE)
        self.assertEqual(unreachable, [PHONE])

    def test_connect_failed_drops_queue(self) -> None:
        """When the connection fails the queue is dropped; a later attempt starts afresh."""
        self.transports.connect = self.connector
        self.transports.send(parse_request(options()), PHONE)
        self.transports.connect_failed(PHONE)
        protocol, transport = self.connect()
        self.assertEqual(transport.value(), b"")
        self.close(protocol)
        self.transports.send(parse_request(MESSAGE), PHONE)
        self.assertEqual(len(self.connector.attempts), 2)

    def test_large_udp_request_switches_to_tcp(self) -> None:
        """A UDP request over 1300 bytes goes over TCP instead (§18.1.1)."""
        self.transports.connect = self.connector
        request = parse_request(options(transport="UDP", padding="x" * UDP_MAX_REQUEST))
        self.assertGreater(len(request.to_bytes()), UDP_MAX_REQUEST)
        self.assertTrue(self.transports.send(request, Peer("udp", "192.0.2.7", 5060)))
        self.assertEqual(self.udp.written, [])
        self.assertEqual(
            [p for p, _ in self.connector.attempts], [Peer("tcp", "192.0.2.7", 5060)]
        )

    def test_large_request_on_open_tcp(self) -> None:
        """A large UDP-bound request uses an open TCP connection to the same address."""
        self.transports.connect = self.connector
        protocol, transport = self.connect(Peer("tcp", "192.0.2.7", 5060))
        request = parse_request(options(transport="UDP", padding="x" * UDP_MAX_REQUEST))
        self.assertTrue(self.transports.send(request, Peer("udp", "192.0.2.7", 5060)))
        self.assertEqual(transport.value(), request.to_bytes())
        self.assertEqual(self.connector.attempts, [])
        self.close(protocol)

    def test_udp_request_at_limit(self) -> None:
        """A request of exactly 1300 bytes still goes over UDP."""
        self.transports.connect = self.connector
        base = len(options(transport="UDP", padding="x"))
        request = parse_request(
            options(transport="UDP", padding="x" * (UDP_MAX_REQUEST - base + 1))
        )
        self.assertEqual(len(request.to_bytes()), UDP_MAX_REQUEST)
        self.assertTrue(self.transports.send(request, Peer("udp", "192.0.2.7", 5060)))
        self.assertEqual(len(self.udp.written), 1)
        self.assertEqual(self.connector.attempts, [])

    def test_large_udp_request_without_connector(self) -> None:
        """With no way to open TCP, a large request is still sent over UDP."""
        request = parse_request(options(transport="UDP", padding="x" * UDP_MAX_REQUEST))
        self.assertTrue(self.transports.send(request, Peer("udp", "192.0.2.7", 5060)))
        self.assertEqual(len(self.udp.written), 1)

    def test_large_udp_response_stays_udp(self) -> None:
        """The size rule is for requests only: a large response goes over UDP."""
        self.transports.connect = self.connector
        request = parse_request(options(transport="UDP", padding="x" * UDP_MAX_REQUEST))
        response = make_response(request, 200)
        response.headers.add("X-Padding", "y" * UDP_MAX_REQUEST)
        self.assertTrue(self.transports.send(response, Peer("udp", "192.0.2.7", 5060)))
        self.assertEqual(len(self.udp.written), 1)
        self.assertEqual(self.connector.attempts, [])


class DatagramProtocolTests(SynchronousTestCase):
    """SIPDatagramProtocol: one datagram, one message."""

    def setUp(self) -> None:
        self.received = Received()
        self.protocol = SIPDatagramProtocol(self.received)
        self.reactor = FakeUDPReactor()
        self.port = self.reactor.listenUDP(5060, self.protocol)

    def test_datagram_passed_up(self) -> None:
        """A datagram goes up with its UDP peer, not as a stream."""
        data = options(transport="UDP")
        self.protocol.datagramReceived(data, ("192.0.2.7", 5062))
        self.assertEqual(
            self.received.calls, [(data, Peer("udp", "192.0.2.7", 5062), False)]
        )
        self.assertIs(self.protocol.transport, self.port)
        self.assertEqual(self.received.waits, [None])

    def test_wait_passed_up(self) -> None:
        """A datagram read with its wait in the receive queue (pbx.sip.udp_port) goes up with it."""
        data = options(transport="UDP")
        self.protocol.datagram_waited(data, ("192.0.2.7", 5062), 0.125)
        self.assertEqual(self.received.waits, [0.125])

    def test_keepalives_ignored(self) -> None:
        """Pure CRLF (and NUL or space padding) keep-alive datagrams are ignored."""
        for data in (b"\r\n", b"\r\n\r\n", b"\r\n\r\n\r\n\r\n", b"\x00", b" \r\n", b""):
            self.protocol.datagramReceived(data, ("192.0.2.7", 5062))
        self.assertEqual(self.received.calls, [])
        self.assertEqual(self.port.written, [])

    def test_receiver_error_logged(self) -> None:
        """A receiver that raises is logged and never escapes datagramReceived."""

        def receive(data: bytes, peer: Peer, stream: bool, waited: float | None = None) -> Any:
            raise ZeroDivisionError("core bug")

        protocol = SIPDatagramProtocol(receive)
        protocol.datagramReceived(options(transport="UDP"), ("192.0.2.7", 5062))
        protocol.datagramReceived(b"garbage", ("192.0.2.7", 5062))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_stop_listening(self) -> None:
        """The fake port can be stopped like a real one."""
        self.port.stopListening()
        self.assertFalse(self.port.listening)
        self.assertEqual(self.port.getHost().port, 5060)


class ResponseTypesTests(SynchronousTestCase):
    """Sanity checks on what the helpers build."""

    def test_helpers(self) -> None:
        """The test messages parse as requests and their responses as responses."""
        request = parse_request(options())
        self.assertEqual(request.method, "OPTIONS")
        self.assertIsInstance(
            parse_message(make_response(request, 200).to_bytes()), Response
        )
        self.assertEqual(parse_request(MESSAGE).body, b"Hello\r\n\r\nthere")


class FlowTests(SendTests):
    """Connections a phone opened are its flows (RFC 5626); RFC 5923 aliases reuse them."""

    def test_inbound_connection_is_a_flow(self) -> None:
        """A connection accepted from a phone is marked a flow; one pbx opened is not."""
        protocol, _ = self.connect()
        assert protocol.peer is not None
        self.assertTrue(protocol.peer.flow)
        self.transports.connect = self.connector
        self.transports.send(parse_request(options()), Peer("tcp", "192.0.2.9", 5060))
        [(peer, factory)] = self.connector.attempts
        outbound = factory.buildProtocol(IPv4Address("TCP", peer.host, peer.port))
        outbound.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", peer.host, peer.port)))
        assert outbound.peer is not None
        self.assertFalse(outbound.peer.flow)
        self.close(protocol)
        self.close(outbound)

    def test_request_goes_on_the_flow(self) -> None:
        """A request to a phone's flow goes on its connection, whether or not the Peer says flow."""
        protocol, transport = self.connect()
        self.transports.connect = self.connector
        request = parse_request(options())
        self.assertTrue(self.transports.send(request, Peer("tcp", PHONE.host, PHONE.port, flow=True)))
        self.assertTrue(self.transports.send(request, PHONE))
        self.assertEqual(transport.value(), request.to_bytes() * 2)
        self.assertEqual(self.connector.attempts, [])
        self.close(protocol)

    def test_flow_gone_never_dialled(self) -> None:
        """Once the phone's connection is gone, a request to its flow fails at once; its port is not dialled."""
        protocol, _ = self.connect()
        assert protocol.peer is not None
        flow = protocol.peer
        self.close(protocol)
        self.transports.connect = self.connector
        self.assertFalse(self.transports.connected(flow))
        self.assertFalse(self.transports.send(parse_request(options()), flow))
        self.assertEqual(self.connector.attempts, [])

    def test_alias(self) -> None:
        """After an alias, requests to the phone's sent-by address use its connection, until it closes (RFC 5923 §5)."""
        protocol, transport = self.connect()
        assert protocol.peer is not None
        listening = Peer("tcp", PHONE.host, 5060)
        self.transports.connect = self.connector
        self.assertFalse(self.transports.connected(listening))
        self.transports.alias(listening, protocol.peer)
        self.assertTrue(self.transports.connected(listening))
        request = parse_request(options())
        self.assertTrue(self.transports.send(request, listening))
        self.assertEqual(transport.value(), request.to_bytes())
        self.close(protocol)
        self.assertFalse(self.transports.connected(listening))
        self.transports.send(request, listening)
        self.assertEqual([p for p, _ in self.connector.attempts], [listening])

    def test_alias_needs_an_open_connection(self) -> None:
        """An alias to a connection that is not open is ignored."""
        listening = Peer("tcp", PHONE.host, 5060)
        self.transports.alias(listening, PHONE)
        self.assertFalse(self.transports.connected(listening))


class DropSourceTests(_StreamTestCase):
    """Transports.drop_source: a banned source's streams close at once."""

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_drops_only_that_source(self) -> None:
        """Every stream from the host is aborted, over TCP and TLS; another host's stays open."""
        tcp, tcp_transport = self.connect()
        tls, tls_transport = self.connect(Peer("tls", PHONE.host, 5071))
        other, other_transport = self.connect(Peer("tcp", "192.0.2.8", 5070))
        self.assertEqual(self.transports.drop_source(PHONE.host), 2)
        self.assertTrue(tcp_transport.disconnecting)
        self.assertTrue(tls_transport.disconnecting)
        self.assertFalse(other_transport.disconnecting)
        self.assertEqual(self.transports.guard.open, 1)
        tcp.dataReceived(options())
        self.assertEqual(self.received.calls, [])
        for protocol in (tcp, tls, other):
            self.close(protocol)
        self.assertEqual(self.transports.connections, 0)

    def test_drops_queued_requests(self) -> None:
        """Requests waiting for a connection to the host are dropped with it."""
        connector = Connector()
        self.transports.connect = connector
        target = Peer("tcp", PHONE.host, 5080)
        self.assertTrue(self.transports.send(parse_request(options()), target))
        self.assertEqual(self.transports.drop_source(PHONE.host), 0)
        [(_, factory)] = connector.attempts
        protocol = factory.buildProtocol(IPv4Address("TCP", target.host, target.port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", target.host, target.port))
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"")
        self.close(protocol)

    def test_unknown_host(self) -> None:
        """A host with no stream closes nothing."""
        protocol, transport = self.connect()
        self.assertEqual(self.transports.drop_source("198.51.100.1"), 0)
        self.assertFalse(transport.disconnecting)
        self.close(protocol)
