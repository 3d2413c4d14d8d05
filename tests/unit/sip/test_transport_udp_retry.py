"""
Tests for :class:`pbx.sip.transport.Transports` when a request too big for
UDP cannot go over TCP either: RFC 3261 §18.1.1 says to send it over UDP
after all.  An emergency INVITE carrying a PIDF-LO (about 2 KB) to a
UDP-only carrier is such a request.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.transaction import Peer
from pbx.sip.transport import MAX_UDP_ONLY, UDP_MAX_REQUEST, Transports
from pbx.testing import FakeUDPPort

CARRIER = Peer("udp", "192.0.2.9", 5060)
TCP = Peer("tcp", "192.0.2.9", 5060)


def big_invite(branch: str = "z9hG4bK-big1") -> bytes:
    """An INVITE over UDP_MAX_REQUEST octets, its Via naming UDP."""
    body = b"x" * (UDP_MAX_REQUEST + 100)
    return (
        "INVITE sip:911@192.0.2.9 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:1001@pbx.test>;tag=a\r\nTo: <sip:911@192.0.2.9>\r\n"
        "Call-ID: big@pbx.test\r\nCSeq: 1 INVITE\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class UDPRetryTests(SynchronousTestCase):
    """A large request whose TCP connection fails goes over UDP."""

    def setUp(self) -> None:
        self.transports = Transports(lambda data, peer, stream: None, Clock())
        self.udp = FakeUDPPort(5060, None)
        self.transports.udp = self.udp
        self.attempts: list[tuple[Peer, Factory]] = []
        self.transports.connect = lambda peer, factory: self.attempts.append(
            (peer, factory)
        )
        self.unreachable: list[Peer] = []
        self.transports.unreachable = self.unreachable.append

    def test_sent_over_udp_when_tcp_fails(self) -> None:
        """The request waits for TCP; when TCP fails it goes over UDP and the peer is not reported unreachable."""
        data = big_invite()
        self.assertTrue(self.transports.send_bytes(data, CARRIER, request=True))
        self.assertEqual(([p for p, _ in self.attempts], self.udp.written), ([TCP], []))
        self.transports.connect_failed(TCP)
        self.assertEqual(self.udp.written, [(data, ("192.0.2.9", 5060))])
        self.assertEqual(self.unreachable, [])

    def test_later_requests_go_straight_to_udp(self) -> None:
        """Once TCP failed at an address, its retransmissions and later large requests go over UDP at once."""
        self.transports.send_bytes(big_invite(), CARRIER, request=True)
        self.transports.connect_failed(TCP)
        again = big_invite("z9hG4bK-big2")
        self.assertTrue(self.transports.send_bytes(again, CARRIER, request=True))
        self.assertEqual(len(self.attempts), 1)
        self.assertEqual(self.udp.written[-1], (again, ("192.0.2.9", 5060)))

    def test_tcp_requests_still_dropped(self) -> None:
        """A request meant for TCP waiting on the same failed connection is dropped and the peer reported."""
        moved, meant = (
            big_invite(),
            b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP a\r\n\r\n",
        )
        self.transports.send_bytes(moved, CARRIER, request=True)
        self.transports.send_bytes(meant, TCP, request=True)
        self.transports.connect_failed(TCP)
        self.assertEqual(self.udp.written, [(moved, ("192.0.2.9", 5060))])
        self.assertEqual(self.unreachable, [TCP])

    def test_tcp_works(self) -> None:
        """When TCP comes up the request goes there and nothing is sent over UDP."""
        data = big_invite()
        self.transports.send_bytes(data, CARRIER, request=True)
        [(peer, factory)] = self.attempts
        address = IPv4Address("TCP", peer.host, peer.port)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.assertEqual((transport.value(), self.udp.written), (data, []))
        self.transports.connect_failed(TCP)  # a later failure of another attempt
        self.assertEqual(self.udp.written, [])

    def test_remembered_addresses_bounded(self) -> None:
        """The addresses remembered as UDP-only are bounded."""
        for port in range(MAX_UDP_ONLY + 5):
            self.transports.send_bytes(
                big_invite(), Peer("udp", "192.0.2.9", 10000 + port), request=True
            )
            self.transports.connect_failed(Peer("tcp", "192.0.2.9", 10000 + port))
        self.assertLessEqual(len(self.transports._udp_only), MAX_UDP_ONLY)
