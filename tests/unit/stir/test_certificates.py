"""Tests for :mod:`pbx.stir.certificates`: signers' chains to trust anchors."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from twisted.trial.unittest import SynchronousTestCase

from pbx.stir.certificates import CertificateError, TrustAnchors, read_certificates

from support.stir import DAY, NOW, issue, make_pki, pem


class ReadTests(SynchronousTestCase):
    """Reading what an x5u URL serves."""

    def test_pem_chain(self) -> None:
        """PEM with several certificates reads in order."""
        pki = make_pki()
        self.assertEqual(
            read_certificates(pki.chain_pem()), [pki.signer, pki.intermediate]
        )

    def test_der(self) -> None:
        """A single DER certificate reads too."""
        pki = make_pki()
        self.assertEqual(
            read_certificates(pki.signer.public_bytes(serialization.Encoding.DER)),
            [pki.signer],
        )

    def test_garbage_and_too_many(self) -> None:
        """Text that holds no certificate, or more than the limit, is refused."""
        for body in (
            b"",
            b"hello",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ):
            with self.assertRaises(CertificateError):
                read_certificates(body)
        pki = make_pki()
        with self.assertRaises(CertificateError):
            read_certificates(pem([pki.signer] * 9))


class ChainTests(SynchronousTestCase):
    """Chains to the configured anchors."""

    def setUp(self) -> None:
        self.pki = make_pki()
        self.anchors = TrustAnchors((self.pki.root,))

    def test_valid_chain(self) -> None:
        """Signer, intermediate, root: the signer's key, and the window in which the answer holds."""
        signer = self.anchors.verify([self.pki.signer, self.pki.intermediate], NOW)
        self.assertEqual(signer.key, self.pki.signer_key.public_key())
        self.assertEqual(signer.not_before, NOW - 30 * DAY)
        self.assertEqual(signer.not_after, NOW + 365 * DAY)
        self.assertTrue(signer.valid_at(NOW))
        self.assertFalse(signer.valid_at(NOW + 366 * DAY))

    def test_missing_intermediate(self) -> None:
        """Without the intermediate no chain reaches the root."""
        with self.assertRaises(CertificateError):
            self.anchors.verify([self.pki.signer], NOW)

    def test_other_root(self) -> None:
        """A chain from another CA is untrusted."""
        other = make_pki("Other")
        with self.assertRaises(CertificateError):
            self.anchors.verify([other.signer, other.intermediate], NOW)

    def test_no_anchors(self) -> None:
        """With no anchors nothing is trusted."""
        with self.assertRaises(CertificateError):
            TrustAnchors(()).verify([self.pki.signer, self.pki.intermediate], NOW)

    def test_expired_and_not_yet_valid(self) -> None:
        """A signer's certificate outside its validity period fails."""
        expired = self.pki.with_signer(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
        with self.assertRaises(CertificateError):
            self.anchors.verify([expired.signer, expired.intermediate], NOW)
        future = self.pki.with_signer(not_before=NOW + DAY, not_after=NOW + 10 * DAY)
        with self.assertRaises(CertificateError):
            self.anchors.verify([future.signer, future.intermediate], NOW)

    def test_issuer_not_a_ca(self) -> None:
        """A certificate issued by a signer's (non-CA) certificate fails (basic constraints)."""
        key = ec.generate_private_key(ec.SECP256R1())
        forged = issue("forged", key, self.pki.signer, self.pki.signer_key, ca=False)
        with self.assertRaises(CertificateError):
            self.anchors.verify([forged, self.pki.signer, self.pki.intermediate], NOW)

    def test_signer_is_a_ca(self) -> None:
        """A CA certificate may not sign PASSporTs itself."""
        with self.assertRaises(CertificateError) as caught:
            self.anchors.verify([self.pki.intermediate], NOW)
        self.assertIn("TNAuthList", str(caught.exception))
        lenient = TrustAnchors((self.pki.root,), require_tn_auth_list=False)
        with self.assertRaises(CertificateError):
            lenient.verify([self.pki.intermediate], NOW)

    def test_tn_auth_list_required(self) -> None:
        """A signer's certificate without TNAuthList is refused unless the check is off."""
        bare = self.pki.with_signer(spc=None)
        with self.assertRaises(CertificateError) as caught:
            self.anchors.verify([bare.signer, bare.intermediate], NOW)
        self.assertIn("TNAuthList", str(caught.exception))
        lenient = TrustAnchors((self.pki.root,), require_tn_auth_list=False)
        self.assertTrue(
            lenient.verify([bare.signer, bare.intermediate], NOW).valid_at(NOW)
        )

    def test_not_p256(self) -> None:
        """A signer's key on another curve cannot sign ES256."""
        key = ec.generate_private_key(ec.SECP384R1())
        other = issue(
            "P-384 signer",
            key,
            self.pki.intermediate,
            self.pki.intermediate_key,
            ca=False,
        )
        with self.assertRaises(CertificateError) as caught:
            self.anchors.verify([other, self.pki.intermediate], NOW)
        self.assertIn("P-256", str(caught.exception))
