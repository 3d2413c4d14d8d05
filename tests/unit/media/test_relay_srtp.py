"""Tests for SRTP legs of :mod:`pbx.media.relay`: each leg decrypted and encrypted with its own keys."""

from __future__ import annotations

import random
import struct

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.ports import PortAllocator
from pbx.media.relay import Relay
from pbx.media.srtp import LegCrypto, new_crypto
from pbx.testing import FakeUDPPort, FakeUDPReactor

PHONE_A = ("192.0.2.10", 4000)
PHONE_B = ("192.0.2.20", 5000)
RTCP_A = (PHONE_A[0], PHONE_A[1] + 1)
RTCP_B = (PHONE_B[0], PHONE_B[1] + 1)
SUITE = "AES_CM_128_HMAC_SHA1_80"


def rtp(seq: int, ssrc: int) -> bytes:
    """An RTP packet (PCMU, 20 ms)."""
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes(range(160))


def rtcp(ssrc: int) -> bytes:
    """An empty RTCP receiver report."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def keyed() -> tuple[LegCrypto, LegCrypto]:
    """pbx's contexts for a leg and the phone's own."""
    phone, ours = new_crypto(SUITE, 1), new_crypto(SUITE, 1)
    return LegCrypto(phone, ours), LegCrypto(ours, phone)


class RelaySrtpTests(SynchronousTestCase):
    """SRTP legs: unprotected on arrival with the leg's key, protected on the way out with the other's."""

    def setUp(self) -> None:
        self.reactor = FakeUDPReactor()
        self.relay = Relay(self.reactor, PortAllocator(10000, 10099, random.Random(5)), "127.0.0.1")
        self.session = self.relay.open_session()
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)

    def port(self, leg: str, rtcp: bool = False) -> FakeUDPPort:
        """The fake socket of ``leg``."""
        return self.reactor.udpPorts[self.session.local_port(leg) + rtcp]

    def send(self, leg: str, data: bytes, source: tuple[str, int], rtcp: bool = False) -> None:
        """A datagram from ``source`` to our socket of ``leg``."""
        self.port(leg, rtcp).protocol.datagramReceived(data, source)

    def written(self, leg: str, rtcp: bool = False) -> list[bytes]:
        """What our socket of ``leg`` sent, and then forget it."""
        port = self.port(leg, rtcp)
        out, port.written = port.written, []
        return [data for data, _ in out]

    def test_srtp_to_srtp_rekeyed(self) -> None:
        """A's SRTP reaches B decrypted with A's key and encrypted with B's: B's phone reads A's packet."""
        pbx_a, phone_a = keyed()
        pbx_b, phone_b = keyed()
        self.session.set_crypto("a", pbx_a)
        self.session.set_crypto("b", pbx_b)
        wire = phone_a.protect(rtp(1, 0xA))
        self.send("a", wire, PHONE_A)
        [out] = self.written("b")
        self.assertNotEqual(out, wire)
        self.assertEqual(phone_b.unprotect(out), rtp(1, 0xA))
        self.assertIsNone(phone_a.unprotect(out))
        self.send("b", phone_b.protect(rtp(9, 0xB)), PHONE_B)
        [back] = self.written("a")
        self.assertEqual(phone_a.unprotect(back), rtp(9, 0xB))
        self.assertEqual(self.session.stats()["a"]["srtp"], SUITE)

    def test_srtcp(self) -> None:
        """RTCP on port + 1 is SRTCP on an SRTP leg, plain on a plain one."""
        pbx_a, phone_a = keyed()
        self.session.set_crypto("a", pbx_a)
        self.send("a", phone_a.protect_rtcp(rtcp(0xA)), RTCP_A, rtcp=True)
        self.assertEqual(self.written("b", rtcp=True), [rtcp(0xA)])
        self.send("b", rtcp(0xB), RTCP_B, rtcp=True)
        [out] = self.written("a", rtcp=True)
        self.assertEqual(phone_a.unprotect_rtcp(out), rtcp(0xB))

    def test_srtp_to_plain(self) -> None:
        """An SRTP leg meets a plain one: decrypted towards it, encrypted from it."""
        pbx_a, phone_a = keyed()
        self.session.set_crypto("a", pbx_a)
        self.send("a", phone_a.protect(rtp(1, 0xA)), PHONE_A)
        self.assertEqual(self.written("b"), [rtp(1, 0xA)])
        self.send("b", rtp(2, 0xB), PHONE_B)
        [out] = self.written("a")
        self.assertEqual(phone_a.unprotect(out), rtp(2, 0xB))

    def test_forged_dropped(self) -> None:
        """A packet that fails authentication is not relayed, and counted."""
        pbx_a, _ = keyed()
        self.session.set_crypto("a", pbx_a)
        self.send("a", rtp(1, 0xA), PHONE_A)
        self.assertEqual(self.written("b"), [])
        self.assertEqual(pbx_a.failed, 1)
        self.assertEqual(self.session.stats()["a"]["rtp"]["packets"], 0)

    def test_plain_legs_untouched(self) -> None:
        """Without keys the sockets keep the bare send and no transform; dropping keys restores them."""
        endpoint = self.port("a").protocol
        bare = endpoint.send
        self.assertIsNone(endpoint.transform)
        pbx_a, _ = keyed()
        self.session.set_crypto("a", pbx_a)
        self.assertIsNotNone(endpoint.transform)
        self.assertIsNot(endpoint.send, bare)
        self.session.set_crypto("a", None)
        self.assertIsNone(endpoint.transform)
        self.assertIs(endpoint.send, bare)
        self.assertEqual(self.session.stats()["a"]["srtp"], "")

    def test_transcoding_after_unprotect(self) -> None:
        """A transcoder sees the unprotected packet; keys set before or after it."""
        pbx_a, phone_a = keyed()
        self.session.set_transform("a", lambda data: data[:12] + b"T")
        self.session.set_crypto("a", pbx_a)
        self.send("a", phone_a.protect(rtp(1, 0xA)), PHONE_A)
        self.assertEqual(self.written("b"), [rtp(1, 0xA)[:12] + b"T"])

    def test_music_on_hold_protected(self) -> None:
        """A feed towards an SRTP leg is protected like relayed packets."""
        pbx_a, phone_a = keyed()
        self.session.set_crypto("a", pbx_a)
        sinks = []

        class Source:
            timestamp_step = 160

            def add(self, sink: object) -> object:
                sinks.append(sink)
                return lambda: None

        self.session.feed("a", Source(), 0)
        sinks[0](b"\x7f" * 160)
        [out] = self.written("a")
        self.assertEqual(phone_a.unprotect(out)[12:], b"\x7f" * 160)

    def test_listener_hears_plain(self) -> None:
        """A tap and listeners of an SRTP leg get its packets as RTP."""
        pbx_a, phone_a = keyed()
        seen: list[bytes] = []
        heard: list[bytes] = []
        self.session.tap("a", seen.append)
        self.session.set_crypto("a", pbx_a)
        self.session.listen("a", heard.append)
        self.send("a", phone_a.protect(rtp(1, 0xA)), PHONE_A)
        self.assertEqual((seen, heard), ([rtp(1, 0xA)], [rtp(1, 0xA)]))
