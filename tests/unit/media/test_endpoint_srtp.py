"""Tests for SRTP on :class:`pbx.media.endpoint.RTPEndpoint`: what pbx terminates is protected both ways."""

from __future__ import annotations

import random
import struct

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.endpoint import RTPEndpoint
from pbx.media.jitter import Frame
from pbx.media.ports import PortAllocator
from pbx.media.srtp import LegCrypto, new_crypto
from pbx.testing import FakeUDPReactor

PHONE = ("81.2.69.160", 4000)
SUITE = "AEAD_AES_128_GCM"


def rtp(seq: int) -> bytes:
    """An RTP packet (PCMU, 20 ms) from the phone."""
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234) + b"\x55" * 160


class EndpointSrtpTests(SynchronousTestCase):
    """An endpoint with the peer's contexts unprotects what arrives and protects what it sends."""

    def setUp(self) -> None:
        self.reactor = FakeUDPReactor()
        self.endpoint = RTPEndpoint(self.reactor, PortAllocator(20000, 20099, random.Random(3)), payload_type=0,
                                    interface="127.0.0.1", rng=random.Random(7), cname=b"pbx-test")
        self.port = self.endpoint.listen()
        self.endpoint.set_remote(*PHONE)
        phone, ours = new_crypto(SUITE, 1), new_crypto(SUITE, 1)
        self.endpoint.crypto = LegCrypto(phone, ours)
        self.phone = LegCrypto(ours, phone)

    def test_receive(self) -> None:
        """SRTP from the phone reaches the jitter buffer as RTP; a forged packet is counted and dropped."""
        proto = self.reactor.udpPorts[self.port].protocol
        proto.datagramReceived(self.phone.protect(rtp(1)), PHONE)
        proto.datagramReceived(rtp(2), PHONE)
        frames = [f for f in (self.endpoint.read() for _ in range(4)) if isinstance(f, Frame)]
        self.assertEqual([(f.sequence, f.payload) for f in frames], [(1, b"\x55" * 160)])
        self.assertEqual(self.endpoint.counters["srtp"], 1)

    def test_send_and_rtcp(self) -> None:
        """A frame pbx sends, and its RTCP report, leave protected; the phone reads them."""
        self.assertTrue(self.endpoint.send(b"\x11" * 160))
        [(wire, dest)] = self.reactor.udpPorts[self.port].written
        self.assertEqual(dest, PHONE)
        self.assertEqual(self.phone.unprotect(wire)[12:], b"\x11" * 160)
        self.endpoint._rtcp_tick()
        [(report, _)] = self.reactor.udpPorts[self.port + 1].written
        self.assertIsNotNone(self.phone.unprotect_rtcp(report))
        self.endpoint.close()
