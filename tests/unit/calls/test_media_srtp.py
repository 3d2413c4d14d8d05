"""Tests for SRTP in :class:`pbx.calls.media.CallMedia`: each leg keyed on its own, as its policy allows."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.media import CallMedia, MediaError
from pbx.media.ports import PortAllocator
from pbx.media.relay import Relay
from pbx.media.sdp import parse_sdp
from pbx.media.srtp import crypto_lines, new_crypto
from pbx.testing import FakeUDPReactor

A_KEY = new_crypto("AES_CM_128_HMAC_SHA1_80", 1)


def sdp(port: int, proto: str = "RTP/AVP", crypto: str = "") -> bytes:
    """A phone's PCMU description."""
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
             f"m=audio {port} {proto} 0", "a=rtpmap:0 PCMU/8000"]
    if crypto:
        lines.append(f"a=crypto:{crypto}")
    return ("\r\n".join(lines) + "\r\n").encode()


class CallMediaSrtpTests(SynchronousTestCase):
    """Offers and answers passed between two legs, keyed per leg."""

    def setUp(self) -> None:
        relay = Relay(FakeUDPReactor(), PortAllocator(10000, 10099, random.Random(5)), "127.0.0.1")
        self.media = CallMedia(relay.open_session(), "203.0.113.1")

    def keys_sent(self, body: bytes) -> list[str]:
        """The a=crypto suites of the first stream of ``body``."""
        return [c.suite for c in crypto_lines(parse_sdp(body).media[0].attribute_values("crypto"))]

    def test_srtp_to_srtp(self) -> None:
        """Caller SRTP on TLS: the callee on TLS is offered fresh keys; each leg ends with its own contexts."""
        self.media.secure("a", "tls", "offered")
        self.media.secure("b", "tls", "offered")
        to_b = self.media.offer_from("a", sdp(4000, "RTP/SAVP", A_KEY.to_value()))
        self.assertEqual(parse_sdp(to_b).media[0].proto, "RTP/SAVP")
        self.assertEqual(len(self.keys_sent(to_b)), 3)
        self.assertNotIn(A_KEY.to_value().split()[-1], to_b.decode())
        b_key = new_crypto("AES_CM_128_HMAC_SHA1_32", 2)
        to_a = self.media.answer_from("b", sdp(5000, "RTP/SAVP", b_key.to_value()))
        self.assertEqual(parse_sdp(to_a).media[0].proto, "RTP/SAVP")
        self.assertEqual(self.keys_sent(to_a), ["AES_CM_128_HMAC_SHA1_80"])
        self.assertEqual(self.media.encrypted(), {"a": "AES_CM_128_HMAC_SHA1_80", "b": "AES_CM_128_HMAC_SHA1_32"})
        self.assertIsNotNone(self.media.session.crypto("a"))
        self.assertIsNotNone(self.media.session.crypto("b"))

    def test_keys_never_to_a_udp_phone(self) -> None:
        """The offer made for the callee loses its keys for a phone on UDP; its plain answer is plain RTP."""
        self.media.secure("a", "tls", "offered")
        self.media.secure("b", "tls", "offered")
        to_b = self.media.offer_from("a", sdp(4000, "RTP/SAVP", A_KEY.to_value()))
        for_udp = self.media.offer_for("b", to_b, "udp")
        self.assertEqual(parse_sdp(for_udp).media[0].proto, "RTP/AVP")
        self.assertEqual(self.keys_sent(for_udp), [])
        self.assertEqual(self.media.offer_for("b", to_b, "tls"), to_b)
        self.media.srtp["b"].secure = False
        self.media.answer_from("b", sdp(5000))
        self.assertEqual(self.media.encrypted(), {"a": "AES_CM_128_HMAC_SHA1_80", "b": ""})
        self.assertIsNone(self.media.session.crypto("b"))

    def test_plain_call_stays_plain(self) -> None:
        """A plain caller: the callee is offered plain RTP, nothing is keyed, the relay is untouched."""
        self.media.secure("a", "tls", "offered")
        self.media.secure("b", "tls", "offered")
        to_b = self.media.offer_from("a", sdp(4000))
        self.assertEqual(self.keys_sent(to_b), [])
        self.media.answer_from("b", sdp(5000))
        self.assertEqual(self.media.encrypted(), {"a": "", "b": ""})
        self.assertIsNone(self.media.session.leg("a").rtp.transform)

    def test_policies_refuse(self) -> None:
        """SAVP over UDP and plain RTP where SRTP is required are MediaError (488)."""
        self.media.secure("a", "udp", "offered")
        with self.assertRaisesRegex(MediaError, "TLS"):
            self.media.offer_from("a", sdp(4000, "RTP/SAVP", A_KEY.to_value()))
        self.media.secure("a", "tls", "required")
        with self.assertRaisesRegex(MediaError, "required"):
            self.media.offer_from("a", sdp(4000))

    def test_required_callee_offered_keys_for_a_plain_caller(self) -> None:
        """A callee whose policy requires SRTP is offered keys even by a plain caller; its plain answer fails."""
        self.media.secure("a", "udp", "offered")
        self.media.secure("b", "tls", "required")
        to_b = self.media.offer_from("a", sdp(4000))
        self.assertEqual(len(self.keys_sent(to_b)), 3)
        with self.assertRaisesRegex(MediaError, "required"):
            self.media.answer_from("b", sdp(5000))
