"""Tests for :mod:`pbx.api.limits`: the API's connection caps and request-head timeout."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
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


class Pending(Resource):
    """A leaf resource that answers nothing until the test finishes the request."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render(self, request: Any) -> Any:
        """Keep the request open."""
        self.requests.append(request)
        return NOT_DONE_YET


class LimitedFactoryTests(SynchronousTestCase):
    """Caps on API connections in total and per source address."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.pending = Pending()
        site = make_site(self.pending, 1024, reactor=self.clock, idle_timeout=60, header_timeout=5)
        self.factory = LimitedFactory(site, ConnectionCaps(max_total=3, max_per_source=2), self.clock)
        self.ports = iter(range(40000, 50000))
        self.warnings: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") == LogLevel.warn:
                self.warnings.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def connect(self, host: str) -> tuple[Any, StringTransport]:
        """Offer a connection from ``host`` as the listening port would."""
        address = IPv4Address("TCP", host, next(self.ports))
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport

    def busy(self, host: str) -> Any:
        """A connection from ``host`` whose request is being served."""
        protocol, _ = self.connect(host)
        protocol.dataReceived(GET)
        return protocol

    def lose(self, *protocols: Any) -> None:
        """Tell ``protocols`` their connections are gone."""
        for protocol in protocols:
            protocol.connectionLost(Failure(ConnectionError("closed")))

    def finish(self) -> None:
        """Answer every pending request."""
        for request in self.pending.requests:
            if not request.finished and not request._disconnected:
                request.finish()

    def test_per_source(self) -> None:
        """Beyond max_per_source from one address connections are refused, with one line however many."""
        a1, _ = self.connect("192.0.2.1")
        a2, _ = self.connect("192.0.2.1")
        self.assertIsNone(self.connect("192.0.2.1")[0])
        self.assertIsNone(self.connect("192.0.2.1")[0])
        self.assertEqual([e["key"] for e in self.warnings], ["max_per_source"])
        self.lose(a1, a2)
        self.assertEqual(self.factory.caps.total, 0)
        self.assertIsNotNone(a3 := self.connect("192.0.2.1")[0])
        self.lose(a3)

    def test_idle_evicted_at_total(self) -> None:
        """At max_total the oldest connection waiting for a request head makes room; busy ones are kept."""
        busy = self.busy("192.0.2.1")
        idle, idle_transport = self.connect("192.0.2.2")
        newer, newer_transport = self.connect("192.0.2.3")
        newcomer, _ = self.connect("192.0.2.4")
        self.assertIsNotNone(newcomer)
        self.assertTrue(idle_transport.disconnected)
        self.assertFalse(newer_transport.disconnecting)
        self.assertEqual(self.factory.caps.total, 3)
        self.lose(idle)
        self.assertEqual(self.factory.caps.total, 3)
        self.finish()
        self.lose(busy, newer, newcomer)
        self.assertEqual(self.factory.caps.total, 0)

    def test_all_busy_refused(self) -> None:
        """When every connection is being served, a new one is refused."""
        protocols = [self.busy(f"192.0.2.{n}") for n in (1, 2, 3)]
        self.assertIsNone(self.connect("192.0.2.4")[0])
        self.assertEqual([e["key"] for e in self.warnings], ["max_total"])
        self.finish()
        self.lose(*protocols)

    def test_evictions_in_flight_bounded(self) -> None:
        """Closed connections whose descriptors are not freed yet bound further evictions (8 here)."""
        opened = [self.connect(f"192.0.2.{n}")[0] for n in range(1, 12)]
        self.assertNotIn(None, opened)
        self.assertIsNone(self.connect("192.0.2.99")[0])
        self.lose(opened[0])
        self.assertIsNotNone(last := self.connect("192.0.2.99")[0])
        self.lose(*opened[1:], last)
        self.assertEqual(self.factory.caps.total, 0)

    def test_requests_served_through_the_wrapper(self) -> None:
        """An admitted connection is served as usual."""
        protocol = self.busy("192.0.2.1")
        [request] = self.pending.requests
        request.write(b"ok")
        request.finish()
        self.assertIn(b"200 OK", protocol.transport.value())
        self.lose(protocol)


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
