"""Tests for :mod:`pbx.api.limits`: the API's connection caps and request-head timeout."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.static import Data

from pbx.api.http import make_site
from pbx.api.limits import HeaderTimedChannel, LimitedFactory
from pbx.security.connections import ConnectionCaps

GET = b"GET / HTTP/1.1\r\nHost: pbx.test\r\n\r\n"


class _SiteTestCase(SynchronousTestCase):
    """A site answering "ok" on a clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.site = make_site(Data(b"ok", "text/plain"), 1024, reactor=self.clock, idle_timeout=60,
                              header_timeout=5)

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LimitedFactoryTests(_SiteTestCase):
    """Caps on API connections in total and per source address."""

    def setUp(self) -> None:
        super().setUp()
        self.factory = LimitedFactory(self.site, ConnectionCaps(max_total=3, max_per_source=2), self.clock)
        self.ports = iter(range(40000, 50000))
        self.warnings: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") == LogLevel.warn:
                self.warnings.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def connect(self, host: str) -> tuple[Any, StringTransport]:
        """Offer a connection from ``host`` as the listening port would."""
        address = IPv4Address("TCP", host, next(self.ports))
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport

    def test_caps(self) -> None:
        """Beyond max_per_source from one address, or max_total in all, connections are refused with one line each kind."""
        a1, _ = self.connect("192.0.2.1")
        a2, _ = self.connect("192.0.2.1")
        self.assertIsNone(self.connect("192.0.2.1")[0])
        self.assertIsNone(self.connect("192.0.2.1")[0])
        b1, _ = self.connect("192.0.2.2")
        self.assertIsNone(self.connect("192.0.2.3")[0])
        self.assertEqual(self.factory.caps.total, 3)
        self.assertEqual([e["key"] for e in self.warnings], ["max_per_source", "max_total"])
        for protocol in (a1, a2, b1):
            protocol.connectionLost(Failure(ConnectionError("closed")))
        self.assertEqual(self.factory.caps.total, 0)
        c1, _ = self.connect("192.0.2.3")
        self.assertIsNotNone(c1)
        c1.connectionLost(Failure(ConnectionError("closed")))

    def test_requests_served_through_the_wrapper(self) -> None:
        """An admitted connection is served as usual."""
        protocol, transport = self.connect("192.0.2.1")
        protocol.dataReceived(GET)
        self.assertIn(b"200 OK", transport.value())
        self.assertTrue(transport.value().endswith(b"ok"))
        protocol.connectionLost(Failure(ConnectionError("closed")))


class HeaderTimeoutTests(_SiteTestCase):
    """Each request has header_timeout seconds to send its head."""

    def channel(self) -> tuple[Any, StringTransport]:
        """A connected channel of the site."""
        channel = self.site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
        assert channel is not None
        self.assertIsInstance(channel, HeaderTimedChannel)
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def test_silent_connection(self) -> None:
        """A connection that sends nothing is aborted after header_timeout, before the idle timeout."""
        channel, transport = self.channel()
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnected)
        channel.connectionLost(Failure(ConnectionError("closed")))

    def test_trickled_head(self) -> None:
        """A head sent a line at a time, each within the idle timeout, is still cut off at header_timeout."""
        channel, transport = self.channel()
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        for n in range(4):
            self.clock.advance(1)
            channel.dataReceived(b"X-Slow-%d: 1\r\n" % n)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnected)
        self.assertEqual(transport.value(), b"")
        channel.connectionLost(Failure(ConnectionError("closed")))

    def test_next_request_timed_after_response(self) -> None:
        """A complete head stops the clock; after the response the next request's head is timed afresh."""
        channel, transport = self.channel()
        self.clock.advance(4)
        channel.dataReceived(GET)
        self.assertIn(b"200 OK", transport.value())
        self.clock.advance(4)
        channel.dataReceived(GET[:10])
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnected)
        channel.connectionLost(Failure(ConnectionError("closed")))

    def test_idle_timeout_from_config(self) -> None:
        """The site's idle timeout is the configured one."""
        self.assertEqual(self.site.timeOut, 60)
