"""Tests for :mod:`pbx.media.srtp`: a=crypto lines, keys and per-leg SRTP contexts."""

from __future__ import annotations

import base64
import struct

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.srtp import (
    SUITES,
    Crypto,
    LegCrypto,
    inbound,
    new_crypto,
    outbound,
    parse_crypto,
)

KEY = bytes(range(30))
INLINE = base64.b64encode(KEY).decode()


def rtp(seq: int, ssrc: int = 0x1234, payload: bytes = b"\xff" * 160) -> bytes:
    """An RTP packet (PCMU)."""
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


def rtcp_rr(ssrc: int = 0x1234) -> bytes:
    """An empty RTCP receiver report."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def pair(suite: str = "AES_CM_128_HMAC_SHA1_80") -> tuple[LegCrypto, LegCrypto]:
    """pbx's contexts for a leg, and the phone's: each unprotects what the other protects."""
    phone, ours = new_crypto(suite, 1), new_crypto(suite, 1)
    return LegCrypto(phone, ours), LegCrypto(ours, phone)


class CryptoAttributeTests(SynchronousTestCase):
    """RFC 4568 §9.1 a=crypto values as pbx reads and writes them."""

    def test_round_trip(self) -> None:
        """A value pbx writes parses back to the same tag, suite and key."""
        crypto = Crypto(3, "AES_CM_128_HMAC_SHA1_32", KEY)
        self.assertEqual(crypto.to_value(), f"3 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}")
        self.assertEqual(parse_crypto(crypto.to_value()), crypto)

    def test_long_lifetime_accepted(self) -> None:
        """A key lifetime of 2^31 packets or more is no obstacle for a call."""
        self.assertIsNotNone(parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^31"))
        self.assertIsNotNone(parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|{2**48}"))

    def test_unusable_lines(self) -> None:
        """Lines pbx cannot honour are skipped (None): §6.1 lets the answerer ignore them."""
        for value in (
            f"1 AES_256_CM_HMAC_SHA1_80 inline:{INLINE}",  # a suite pbx does not offer
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20",  # re-keying needed within a call
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^31|1:4",  # an MKI
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE};inline:{INLINE}",  # several keys
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE} UNENCRYPTED_SRTP",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",  # key too short
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!",
            "x AES_CM_128_HMAC_SHA1_80 inline:" + INLINE,
            "",
            None,
        ):
            self.assertIsNone(parse_crypto(value), value)

    def test_gcm_key_length(self) -> None:
        """AEAD_AES_128_GCM keys are 16 bytes of key and 12 of salt (RFC 7714 §12)."""
        key = base64.b64encode(bytes(28)).decode()
        self.assertIsNotNone(parse_crypto(f"1 AEAD_AES_128_GCM inline:{key}"))
        self.assertIsNone(parse_crypto(f"1 AEAD_AES_128_GCM inline:{INLINE}"))

    def test_fresh_keys(self) -> None:
        """Every new key is random and of its suite's length."""
        keys = {new_crypto(s, 1).material for s in SUITES for _ in range(3)}
        self.assertEqual(len(keys), 3 * len(SUITES))
        self.assertEqual(len(new_crypto("AEAD_AES_128_GCM", 1).material), 28)

    def test_key_not_in_repr(self) -> None:
        """A key never shows in a log line's repr."""
        self.assertNotIn(INLINE, repr(Crypto(1, "AES_CM_128_HMAC_SHA1_80", KEY)))


class LegCryptoTests(SynchronousTestCase):
    """One leg's contexts: unprotect what the phone protected, protect what it will unprotect."""

    def test_every_suite_both_ways(self) -> None:
        """SRTP and SRTCP round-trip in every suite pbx speaks, and the wire differs from the plain packet."""
        for suite in SUITES:
            pbx, phone = pair(suite)
            wire = phone.protect(rtp(1))
            self.assertNotEqual(wire[12:172], rtp(1)[12:])
            self.assertEqual(pbx.unprotect(wire), rtp(1), suite)
            self.assertEqual(phone.unprotect(pbx.protect(rtp(7, ssrc=99))), rtp(7, ssrc=99), suite)
            self.assertEqual(pbx.unprotect_rtcp(phone.protect_rtcp(rtcp_rr())), rtcp_rr(), suite)
            self.assertEqual(phone.unprotect_rtcp(pbx.protect_rtcp(rtcp_rr(5))), rtcp_rr(5), suite)

    def test_tampered_and_replayed_dropped(self) -> None:
        """A packet that fails authentication or repeats is None and counted."""
        pbx, phone = pair()
        wire = phone.protect(rtp(1))
        self.assertIsNone(pbx.unprotect(wire[:-1] + bytes([wire[-1] ^ 1])))
        self.assertEqual(pbx.unprotect(wire), rtp(1))
        self.assertIsNone(pbx.unprotect(wire))
        self.assertIsNone(pbx.unprotect_rtcp(b"\x80\xc9\x00\x01junk"))
        self.assertEqual(pbx.failed, 3)

    def test_other_key_fails(self) -> None:
        """A phone with another key is not heard."""
        pbx, _ = pair()
        _, stranger = pair()
        self.assertIsNone(pbx.unprotect(stranger.protect(rtp(1))))

    def test_repeat_protected(self) -> None:
        """A relayed packet that repeats (a duplicate on the network) is protected again, not refused."""
        pbx, phone = pair()
        first, again = pbx.protect(rtp(3)), pbx.protect(rtp(3))
        self.assertEqual(first, again)
        self.assertEqual(phone.unprotect(first), rtp(3))

    def test_listener_view_has_its_own_replay_window(self) -> None:
        """A listener unprotects the packets the relay unprotected already."""
        pbx, phone = pair()
        view = pbx.listener_view()
        wire = phone.protect(rtp(1))
        self.assertEqual(pbx.unprotect(wire), rtp(1))
        self.assertEqual(view(wire), rtp(1))
        self.assertIsNone(view(b"\x80" * 40))

    def test_same_keys(self) -> None:
        """same_keys tells whether a re-offer changed either key."""
        phone, ours = new_crypto("AES_CM_128_HMAC_SHA1_80", 1), new_crypto("AES_CM_128_HMAC_SHA1_80", 1)
        contexts = LegCrypto(phone, ours)
        self.assertTrue(contexts.same_keys(Crypto(4, phone.suite, phone.material), ours))
        self.assertFalse(contexts.same_keys(new_crypto(phone.suite, 1), ours))
        with self.assertRaises(ValueError):
            LegCrypto(phone, new_crypto("AEAD_AES_128_GCM", 1))


class ComposeTests(SynchronousTestCase):
    """The relay's receive transform and send function."""

    def test_inbound(self) -> None:
        """Neither: None (the fast path); one: itself; both: unprotect then transform, a failure stops."""
        self.assertIsNone(inbound(None, None))
        upper = bytes.upper
        self.assertIs(inbound(None, upper), upper)
        self.assertIs(inbound(upper, None), upper)
        both = inbound(lambda d: d if d != b"bad" else None, upper)
        assert both is not None
        self.assertEqual(both(b"ab"), b"AB")
        self.assertIsNone(both(b"bad"))

    def test_outbound(self) -> None:
        """The send function protects first."""
        sent: list[tuple[bytes, tuple[str, int]]] = []
        send = outbound(bytes.upper, lambda d, a: sent.append((d, a)))
        send(b"x", ("127.0.0.1", 4))
        self.assertEqual(sent, [(b"X", ("127.0.0.1", 4))])
