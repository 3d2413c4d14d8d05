"""Tests for :mod:`pbx.security.ratelimit`."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.security.ratelimit import (
    RETRANSMISSIONS,
    Bucket,
    Limit,
    RetransmissionPasses,
    branch_of,
    kind_of,
)


class KindTests(SynchronousTestCase):
    """Telling a message's kind from its first bytes."""

    def test_methods(self) -> None:
        """The limited methods are their own kind; any other method is "other"."""
        for method in ("REGISTER", "INVITE", "SUBSCRIBE", "OPTIONS"):
            self.assertEqual(kind_of(method.encode() + b" sip:x SIP/2.0\r\n"), method)
        for method in (b"ACK", b"BYE", b"CANCEL", b"NOTIFY", b"X-NEW"):
            self.assertEqual(kind_of(method + b" sip:x SIP/2.0\r\n"), "other")

    def test_response(self) -> None:
        """A status line is a response."""
        self.assertEqual(kind_of(b"SIP/2.0 200 OK\r\n"), "response")

    def test_leading_crlf_and_garbage(self) -> None:
        """Leading CRLFs are skipped (RFC 3261 §7.5); garbage is "other"."""
        self.assertEqual(kind_of(b"\r\n\r\nINVITE sip:x SIP/2.0\r\n"), "INVITE")
        self.assertEqual(kind_of(b"\x00\xff" * 40), "other")
        self.assertEqual(kind_of(b""), "other")

    def test_branch(self) -> None:
        """The first Via branch is found; none gives None."""
        data = b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1;rport\r\nVia: x;branch=two\r\n"
        self.assertEqual(branch_of(data), b"z9hG4bK-1")
        self.assertIsNone(branch_of(b"OPTIONS sip:x SIP/2.0\r\n\r\n"))


class BucketTests(SynchronousTestCase):
    """The token bucket."""

    def test_burst_then_rate(self) -> None:
        """A full bucket gives its burst at once, then ``rate`` tokens a second."""
        limit = Limit(rate=2, burst=3)
        bucket = Bucket(3.0, 0.0)
        self.assertEqual([bucket.take(limit, 0.0) for _ in range(4)], [True, True, True, False])
        self.assertEqual([bucket.take(limit, 0.5) for _ in range(2)], [True, False])
        self.assertFalse(bucket.full(limit, 0.5))
        self.assertTrue(bucket.full(limit, 2.0))

    def test_refill_capped(self) -> None:
        """A long quiet spell refills no more than the burst."""
        limit = Limit(rate=10, burst=2)
        bucket = Bucket(0.0, 0.0)
        self.assertEqual([bucket.take(limit, 100.0) for _ in range(3)], [True, True, False])


class PassesTests(SynchronousTestCase):
    """Free passes for retransmissions of admitted requests."""

    def test_passes_capped(self) -> None:
        """An admitted branch has RETRANSMISSIONS passes, then none; an unknown branch none."""
        passes = RetransmissionPasses()
        passes.admitted("192.0.2.1", b"b1")
        self.assertEqual([passes.use("192.0.2.1", b"b1") for _ in range(RETRANSMISSIONS + 1)],
                         [True] * RETRANSMISSIONS + [False])
        self.assertFalse(passes.use("192.0.2.2", b"b1"))
        self.assertFalse(passes.use("192.0.2.1", b"b2"))

    def test_bounded(self) -> None:
        """At the size limit the oldest entry goes."""
        passes = RetransmissionPasses(size=2)
        for branch in (b"a", b"b", b"c"):
            passes.admitted("h", branch)
        self.assertEqual(len(passes), 2)
        self.assertFalse(passes.use("h", b"a"))
        self.assertTrue(passes.use("h", b"c"))
