"""Tests for :mod:`pbx.stir.tn` and :mod:`pbx.stir.attestation`."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.uri import parse_uri
from pbx.stir.attestation import attestation
from pbx.stir.tn import canonical_tn, number_of, tn_problem


class CanonicalTests(SynchronousTestCase):
    """RFC 8224 §8.3 canonical telephone numbers."""

    def test_forms(self) -> None:
        """Separators, the leading + and URI parameters go; digits stay."""
        self.assertEqual(canonical_tn("+1 (555) 123-4567"), "15551234567")
        self.assertEqual(
            canonical_tn("+1.555.123.4567;npdi;rn=+15550000000"), "15551234567"
        )
        self.assertEqual(canonical_tn("15551234567"), "15551234567")
        self.assertEqual(canonical_tn("911"), "911")

    def test_not_numbers(self) -> None:
        """Names, empty strings, letters, inner + signs and over-long numbers are refused."""
        for bad in ("alice", "", "+", "1555x", "1+555", "1" * 21, "*69"):
            with self.assertRaises(ValueError, msg=bad):
                canonical_tn(bad)
        self.assertIsNotNone(tn_problem(15551234567))
        self.assertIsNone(tn_problem("+15551234567"))


class NumberOfTests(SynchronousTestCase):
    """The number a URI names."""

    def test_numbers(self) -> None:
        """tel URIs and SIP URIs with a number (escaped or with parameters) give it, canonical."""
        for text in (
            "tel:+1-555-123-0000",
            "sip:+15551230000@carrier.example.com;user=phone",
            "sip:+15551230000;npdi;verstat=TN-Validation-Passed@h",
            "sips:%2B15551230000@h",
            "sip:15551230000@127.0.0.1:5060",
        ):
            self.assertEqual(number_of(parse_uri(text)), "15551230000", text)

    def test_not_numbers(self) -> None:
        """Names, anonymous callers and other schemes give None."""
        for text in (
            "sip:alice@example.com",
            "sip:anonymous@anonymous.invalid",
            "sip:h",
            "urn:service:sos",
        ):
            self.assertIsNone(number_of(parse_uri(text)), text)


class AttestationTests(SynchronousTestCase):
    """ATIS-1000074 §5.2.3 attestation levels."""

    dids = frozenset({"15551230000", "15551230001"})

    def test_full(self) -> None:
        """An authenticated caller using one of the trunk's DIDs gets A."""
        self.assertEqual(
            attestation("15551230001", authenticated=True, trunk_dids=self.dids), "A"
        )

    def test_partial(self) -> None:
        """An authenticated caller with a number that is not ours gets B."""
        self.assertEqual(
            attestation("15559990000", authenticated=True, trunk_dids=self.dids), "B"
        )

    def test_gateway(self) -> None:
        """A relayed call or an unauthenticated caller gets C, even with our number."""
        self.assertEqual(
            attestation(
                "15551230000", authenticated=True, trunk_dids=self.dids, relayed=True
            ),
            "C",
        )
        self.assertEqual(
            attestation("15551230000", authenticated=False, trunk_dids=self.dids), "C"
        )
