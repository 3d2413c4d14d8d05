"""Tests for :mod:`pbx.stir.verdict`: verstat and the responses of RFC 8224 §6.2.2."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.uri import parse_uri
from pbx.stir.verdict import Reason, Status, Verdict, with_verstat

PASSED = Verdict(Status.PASSED, Reason.PASSED, attest="A")


class ResponseTests(SynchronousTestCase):
    """Which response refuses which failure."""

    def test_codes(self) -> None:
        """Bad info is 436, an untrusted credential 437, a bad signature 438, a stale iat 403 Stale Date."""
        expected = {
            Reason.X5U_NOT_ALLOWED: (436, "Bad Identity Info"),
            Reason.X5U_UNAVAILABLE: (436, "Bad Identity Info"),
            Reason.CERTIFICATE_UNTRUSTED: (437, "Unsupported Credential"),
            Reason.UNSUPPORTED_ALGORITHM: (437, "Unsupported Credential"),
            Reason.BAD_SIGNATURE: (438, "Invalid Identity Header"),
            Reason.MALFORMED: (438, "Invalid Identity Header"),
            Reason.ORIG_MISMATCH: (438, "Invalid Identity Header"),
            Reason.DEST_MISMATCH: (438, "Invalid Identity Header"),
            Reason.INFO_MISMATCH: (438, "Invalid Identity Header"),
            Reason.STALE: (403, "Stale Date"),
        }
        for reason, response in expected.items():
            self.assertEqual(Verdict.failed(reason, "x").response, response)

    def test_no_response_unless_failed(self) -> None:
        """A passed or unverified call is never refused."""
        self.assertIsNone(PASSED.response)
        self.assertIsNone(Verdict.unverified(Reason.NO_IDENTITY).response)
        self.assertEqual(
            Verdict.unverified(Reason.NO_IDENTITY).verstat, "No-TN-Validation"
        )
        self.assertEqual(
            Verdict.failed(Reason.STALE, "").verstat, "TN-Validation-Failed"
        )
        self.assertTrue(PASSED.passed)


class VerstatTests(SynchronousTestCase):
    """Putting verstat on the caller's URI (3GPP TS 24.229)."""

    def test_sip_uri(self) -> None:
        """On a SIP URI it is a parameter of the number in the user part."""
        uri = with_verstat(
            parse_uri("sip:+15551230000@carrier.example.com;user=phone"), PASSED
        )
        self.assertEqual(
            str(uri),
            "sip:+15551230000;verstat=TN-Validation-Passed@carrier.example.com;user=phone",
        )

    def test_tel_uri(self) -> None:
        """On a tel URI it is a URI parameter."""
        uri = with_verstat(
            parse_uri("tel:+15551230000"), Verdict.failed(Reason.STALE, "")
        )
        self.assertEqual(str(uri), "tel:+15551230000;verstat=TN-Validation-Failed")

    def test_forged_verstat_replaced(self) -> None:
        """A verstat the caller's side sent is replaced by ours."""
        forged = parse_uri("sip:+15551230000;verstat=TN-Validation-Passed;npdi@h")
        uri = with_verstat(forged, Verdict.unverified(Reason.NO_IDENTITY))
        self.assertEqual(str(uri), "sip:+15551230000;npdi;verstat=No-TN-Validation@h")
        tel = with_verstat(
            parse_uri("tel:+1555;verstat=TN-Validation-Passed"),
            Verdict.unverified(Reason.NO_IDENTITY),
        )
        self.assertEqual(str(tel), "tel:+1555;verstat=No-TN-Validation")

    def test_not_a_number(self) -> None:
        """A URI whose user is a name is left alone."""
        uri = parse_uri("sip:alice@example.com")
        self.assertEqual(with_verstat(uri, PASSED), uri)
