"""
Tests for :mod:`pbx.sip.connections`: caps on the SIP streams phones open,
their first-message and idle timeouts, and the budget for unfinished
messages, through the stream protocol that enforces them.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.connections import StreamGuard, StreamLimits
from pbx.sip.transport import SIPStreamFactory, SIPStreamProtocol, Transports

LIMITS = StreamLimits(
    max_total=4, max_per_source=2, first_message_timeout=10.0, idle_timeout=600.0,
    max_message=4096, max_buffered=16384,
)

OPTIONS = (
    b"OPTIONS sip:pbx.test SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.7:5070;branch=z9hG4bK-c1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1001@pbx.test>;tag=a1\r\n"
    b"To: <sip:pbx.test>\r\n"
    b"Call-ID: c-1@192.0.2.7\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def unfinished(size: int) -> bytes:
    """The first ``size`` octets of a message whose head never ends."""
    head = b"OPTIONS sip:pbx.test SIP/2.0\r\nX-Padding: "
    return head + b"x" * (size - len(head))


class _GuardTestCase(SynchronousTestCase):
    """Transports guarded by :data:`LIMITS`, and connections to them."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.received: list[bytes] = []
        self.transports = Transports(lambda data, peer, stream: self.received.append(data), self.clock)
        self.transports.guard = StreamGuard(self.clock, LIMITS)
        self.guard = self.transports.guard
        self.factory = SIPStreamFactory(self.transports, "tcp")
        self.ports = iter(range(40000, 50000))
        self.warnings: list[str] = []

        def observe(event: dict[str, object]) -> None:
            if event.get("log_level") == LogLevel.warn and "SIP connections" in str(event.get("log_format")):
                self.warnings.append(str(event["log_format"]))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def connect(self, host: str = "192.0.2.7") -> tuple[SIPStreamProtocol | None, StringTransport]:
        """Offer a connection from ``host`` to the factory as a listening port would."""
        address = IPv4Address("TCP", host, next(self.ports))
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport

    def lose(self, protocol: SIPStreamProtocol | None) -> None:
        """Tell ``protocol`` its connection is gone (as the reactor does after a close)."""
        assert protocol is not None
        protocol.connectionLost(Failure(ConnectionError("closed")))

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CapTests(_GuardTestCase):
    """Caps in total and per source; the oldest unproven connection makes room."""

    def test_per_source_refused(self) -> None:
        """A source at max_per_source is refused (no protocol, so the socket is closed); others are not."""
        first, _ = self.connect()
        second, _ = self.connect()
        refused, _ = self.connect()
        self.assertIsNone(refused)
        other, _ = self.connect("192.0.2.8")
        self.assertIsNotNone(other)
        self.assertEqual(self.guard.open, 3)
        self.assertEqual(len(self.warnings), 1)
        for protocol in (first, second, other):
            self.lose(protocol)
        self.assertEqual(self.guard.open, 0)

    def test_banned_source_refused(self) -> None:
        """A banned source's connection is refused and logged; others are accepted."""
        self.guard.banned = lambda source: source == "192.0.2.66"
        refused, _ = self.connect("192.0.2.66")
        self.assertIsNone(refused)
        self.assertEqual(self.guard.open, 0)
        self.assertEqual(len(self.warnings), 1)
        self.assertIn("is banned", self.warnings[0])
        other, _ = self.connect()
        self.assertIsNotNone(other)
        self.lose(other)

    def test_oldest_unproven_evicted(self) -> None:
        """At max_total a new connection takes the slot of the oldest connection that sent no message."""
        proven, _ = self.connect("192.0.2.1")
        assert proven is not None
        proven.dataReceived(OPTIONS)
        opened = [self.connect(f"192.0.2.{n}") for n in (2, 3, 4)]
        newcomer, _ = self.connect("192.0.2.5")
        self.assertIsNotNone(newcomer)
        [(oldest, oldest_transport), *rest] = opened
        self.assertTrue(oldest_transport.disconnected)  # aborted, not flushed
        self.assertFalse(any(t.disconnecting for _, t in rest))
        self.assertEqual(self.guard.open, 4)
        self.lose(oldest)
        self.assertEqual(self.guard.open, 4)
        for protocol in [proven, newcomer] + [p for p, _ in rest]:
            self.lose(protocol)
        self.assertEqual(self.guard.open, 0)

    def test_proven_never_evicted(self) -> None:
        """When every open connection has sent a message, a new one is refused."""
        protocols = [self.connect(f"192.0.2.{n}")[0] for n in range(1, 5)]
        for protocol in protocols:
            assert protocol is not None
            protocol.dataReceived(OPTIONS)
        refused, _ = self.connect("192.0.2.9")
        self.assertIsNone(refused)
        self.assertEqual(len(self.received), 4)
        self.assertEqual(len(self.warnings), 1)
        for protocol in protocols:
            self.lose(protocol)

    def test_evictions_in_flight_bounded(self) -> None:
        """Evicted connections count until their descriptors are freed beyond a bound: then newcomers are refused."""
        limits = StreamLimits(max_total=16, max_per_source=64)
        self.transports.guard = self.guard = StreamGuard(self.clock, limits)
        held = [self.connect()[0] for _ in range(16)]
        newcomers = [self.connect()[0] for _ in range(16)]  # each evicts one held
        self.assertNotIn(None, newcomers)
        self.assertIsNone(self.connect()[0])  # 16 evictions wait for connectionLost
        self.lose(held[0])
        self.assertIsNotNone(last := self.connect()[0])
        for protocol in held[1:] + newcomers + [last]:
            self.lose(protocol)
        self.assertEqual(self.guard.open, 0)

    def test_connections_we_open_are_not_counted(self) -> None:
        """An outbound connection (to a phone's listening address) neither counts nor is refused."""
        outbound = SIPStreamFactory(self.transports, "tcp", inbound=False)
        protocols = [outbound.buildProtocol(IPv4Address("TCP", "192.0.2.7", 5060)) for _ in range(3)]
        for protocol in protocols:
            assert protocol is not None
            protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 5060)))
        self.assertEqual(self.guard.open, 0)
        self.clock.advance(LIMITS.first_message_timeout)
        self.assertEqual(len(self.clock.getDelayedCalls()), 3)  # idle timers only
        for protocol in protocols:
            self.lose(protocol)


class TimeoutTests(_GuardTestCase):
    """The first-message timeout, then the idle timeout."""

    def test_silent_connection_closed(self) -> None:
        """A connection with no complete message is aborted after first_message_timeout, with one line."""
        protocol, transport = self.connect()
        self.clock.advance(LIMITS.first_message_timeout - 0.5)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.5)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.guard.open, 0)  # the slot is free at once
        self.assertEqual(len(self.warnings), 1)
        self.lose(protocol)

    def test_trickle_does_not_extend(self) -> None:
        """Bytes that never make a message, keep-alives included, do not extend the first-message time."""
        protocol, transport = self.connect()
        assert protocol is not None
        for _ in range(8):
            protocol.dataReceived(b"\r\n\r\n")
            self.clock.advance(1)
        self.assertEqual(transport.value(), b"\r\n" * 8)  # pings are still answered (RFC 5626 §3.5.1)
        protocol.dataReceived(b"OPTIONS sip:pbx.test SIP/2.0\r\n")
        self.clock.advance(1)
        protocol.dataReceived(b"Via: SIP/2.0/TCP 192.0.2.7\r\n")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnected)
        self.lose(protocol)

    def test_message_earns_idle_timeout(self) -> None:
        """Once a complete message came, the connection stays until idle_timeout of silence."""
        protocol, transport = self.connect()
        assert protocol is not None
        for chunk in (OPTIONS[:7], OPTIONS[7:60], OPTIONS[60:]):
            protocol.dataReceived(chunk)
        self.assertEqual(self.received, [OPTIONS])
        self.clock.advance(LIMITS.idle_timeout - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)  # closed gracefully
        self.lose(protocol)

    def test_keepalive_keeps_alive(self) -> None:
        """CRLF keep-alives on a proven connection renew the idle timeout for as long as they come (RFC 5626 §3.5.1)."""
        protocol, transport = self.connect()
        assert protocol is not None
        protocol.dataReceived(OPTIONS)
        for _ in range(10):
            self.clock.advance(LIMITS.idle_timeout - 1)
            protocol.dataReceived(b"\r\n\r\n")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"\r\n" * 10)
        self.lose(protocol)
        self.assertEqual(self.guard.open, 0)


class BufferTests(_GuardTestCase):
    """The budget for unfinished messages."""

    def test_held_bytes_counted_and_released(self) -> None:
        """An unfinished message's octets count while held and are released when it completes or the connection goes."""
        protocol, _ = self.connect()
        assert protocol is not None
        protocol.dataReceived(OPTIONS[:100])
        self.assertEqual(self.guard.buffered, 100)
        protocol.dataReceived(OPTIONS[100:])
        self.assertEqual(self.guard.buffered, 0)
        protocol.dataReceived(unfinished(300))
        self.assertEqual(self.guard.buffered, 300)
        self.lose(protocol)
        self.assertEqual(self.guard.buffered, 0)

    def test_unproven_share_is_half(self) -> None:
        """Unproven connections together may hold half of max_buffered; the one that would pass it is aborted."""
        first, _ = self.connect("192.0.2.1")
        second, second_transport = self.connect("192.0.2.2")
        assert first is not None and second is not None
        first.dataReceived(unfinished(4000))
        second.dataReceived(unfinished(4000))
        self.assertEqual(self.guard.buffered, 8000)
        third, third_transport = self.connect("192.0.2.3")
        assert third is not None
        third.dataReceived(unfinished(1000))
        self.assertTrue(third_transport.disconnected)
        self.assertEqual(self.guard.buffered, 8000)
        self.assertEqual(self.guard.open, 2)
        self.assertEqual(len(self.warnings), 1)
        third.dataReceived(b"more")  # bytes in flight after the close are ignored
        self.assertEqual(self.guard.buffered, 8000)
        for protocol in (first, second, third):
            self.lose(protocol)
        self.assertEqual(self.guard.buffered, 0)

    def test_proven_may_use_all(self) -> None:
        """A connection that sent a message may still be held beyond the unproven half, up to max_buffered."""
        filler, _ = self.connect("192.0.2.1")
        assert filler is not None
        filler.dataReceived(unfinished(4000))
        filler2, _ = self.connect("192.0.2.2")
        assert filler2 is not None
        filler2.dataReceived(unfinished(4000))
        phone, transport = self.connect("192.0.2.3")
        assert phone is not None
        phone.dataReceived(OPTIONS + unfinished(4000))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.guard.buffered, 12000)
        for protocol in (filler, filler2, phone):
            self.lose(protocol)

    def test_framing_lost_logged_throttled(self) -> None:
        """Connections closed for lost framing (RFC 3261 §18.3) make one info line a minute, not one each."""
        lines: list[str] = []

        def observe(event: dict[str, object]) -> None:
            if event.get("log_level") == LogLevel.info and "framing lost" in str(event.get("log_format")):
                lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            protocol, transport = self.connect(host)
            assert protocol is not None
            protocol.dataReceived(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
            self.assertTrue(transport.disconnecting)
            self.lose(protocol)
        self.assertEqual(len(lines), 1)
        self.assertIn("the last from 192.0.2.1: Missing Content-Length", lines[0])
        self.assertEqual(self.guard.open, 0)

    def test_message_over_max_closes(self) -> None:
        """A message longer than max_message closes its connection (RFC 3261 §18.3 framing is lost)."""
        protocol, transport = self.connect()
        assert protocol is not None
        protocol.dataReceived(unfinished(LIMITS.max_message + 1))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.guard.buffered, 0)
        self.assertEqual(self.guard.open, 0)
        self.lose(protocol)


class BackpressureTests(_GuardTestCase):
    """A peer that does not read what we write stops being read."""

    def test_reading_paused_while_writes_wait(self) -> None:
        """The protocol is its transport's streaming producer: pausing it pauses reading, resuming resumes it."""
        protocol, transport = self.connect()
        assert protocol is not None
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        protocol.stopProducing()
        self.lose(protocol)

    def test_tls_produces_after_the_handshake(self) -> None:
        """
        Over TLS the protocol becomes its transport's producer only once the
        handshake is done: the TLS layer pauses its producer while it holds
        writes made before (a connection pbx opened to send), and pausing our
        reading then would stop the handshake.
        """
        factory = SIPStreamFactory(self.transports, "tls", inbound=False)
        address = IPv4Address("TCP", "192.0.2.9", 5061)
        protocol = factory.buildProtocol(address)
        assert protocol is not None
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.assertIsNone(transport.producer)
        protocol.handshakeCompleted()
        self.assertIs(transport.producer, protocol)
        protocol.drop()
        self.assertIsNone(transport.producer)
        self.lose(protocol)

    def test_no_resume_after_close(self) -> None:
        """A connection being closed is not read again when its writes drain."""
        protocol, transport = self.connect()
        assert protocol is not None
        protocol.pauseProducing()
        self.clock.advance(LIMITS.first_message_timeout)
        self.assertIsNone(transport.producer)  # unregistered before closing (TLS waits for that)
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "paused")
        self.lose(protocol)
