"""
Signers' certificates: read from what an ``x5u`` URL serves, and chained to
the configured trust anchors.

The chain is built and checked by ``cryptography.x509.verification``
(signatures, validity periods, basic constraints and key usage of every CA,
path length), as RFC 5280 §6 and the Web PKI profile have it.  On top of it
SHAKEN asks (ATIS-1000080 §5.3) that the signer's certificate hold an ES256
key, not be a CA, and carry the TNAuthList extension (RFC 8226 §9).

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification

__all__ = [
    "TN_AUTH_LIST",
    "CertificateError",
    "TrustAnchors",
    "VerifiedSigner",
    "read_certificates",
]

#: id-pe-TNAuthList (RFC 8226 §9): the numbers or the service provider code
#: the certificate speaks for.
TN_AUTH_LIST = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")
#: Most certificates an x5u resource may hold (the signer and its CAs).
MAX_CHAIN = 8


class CertificateError(ValueError):
    """A certificate or chain that cannot be used; the message says why."""


def read_certificates(data: bytes, limit: int = MAX_CHAIN) -> list[x509.Certificate]:
    """
    Read the certificates an ``x5u`` URL (or a file) serves.

    ATIS-1000074 §5.3.1: PEM, the signer's certificate first, then the CAs
    that lead to a trust anchor; a single DER certificate is taken too.

    :param data: the body.
    :param limit: most certificates accepted.
    :returns: the certificates, in order.
    :raises CertificateError: when it holds none, or too many.
    """
    try:
        if b"-----BEGIN" in data:
            certificates = x509.load_pem_x509_certificates(data)
        else:
            certificates = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CertificateError("not a PEM or DER certificate") from None
    if len(certificates) > limit:
        raise CertificateError(f"more than {limit} certificates")
    return certificates


@frozen
class VerifiedSigner:
    """A signer's certificate whose chain reached a trust anchor."""

    key: ec.EllipticCurvePublicKey
    """The key its PASSporTs are signed with."""
    not_before: float
    """The chain holds from this time (the latest start of its certificates)..."""
    not_after: float
    """...to this one (the earliest end), seconds since the epoch."""

    def valid_at(self, now: float) -> bool:
        """Whether every certificate of the chain is within its validity period at ``now``."""
        return self.not_before <= now <= self.not_after


def _leaf_is_not_ca(
    policy: verification.Policy,
    certificate: x509.Certificate,
    constraints: x509.BasicConstraints | None,
) -> None:
    if constraints is not None and constraints.ca:
        raise ValueError("the signer's certificate is a CA")


@frozen
class TrustAnchors:
    """The CA certificates a signer's chain must reach."""

    certificates: tuple[x509.Certificate, ...]
    require_tn_auth_list: bool = True
    """Refuse signers' certificates without TNAuthList (ATIS-1000080 §5.3.3)."""

    def verify(self, chain: Sequence[x509.Certificate], now: float) -> VerifiedSigner:
        """
        Check that ``chain[0]`` may sign PASSporTs at ``now``.

        :param chain: the signer's certificate, then any intermediates.
        :param now: the time to check validity at, seconds since the epoch.
        :returns: its key and how long the answer holds.
        :raises CertificateError: naming what is wrong.
        """
        if not self.certificates:
            raise CertificateError("no trust anchors are configured")
        leaf, intermediates = chain[0], list(chain[1:])
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise CertificateError("the signer's key is not a P-256 key (ES256)")
        if self.require_tn_auth_list:
            try:
                leaf.extensions.get_extension_for_oid(TN_AUTH_LIST)
            except x509.ExtensionNotFound:
                raise CertificateError(
                    "the signer's certificate has no TNAuthList"
                ) from None
        when = datetime.datetime.fromtimestamp(now, datetime.UTC)
        leaf_policy = verification.ExtensionPolicy.permit_all().may_be_present(
            x509.BasicConstraints, verification.Criticality.AGNOSTIC, _leaf_is_not_ca
        )
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(self.certificates)))
            .time(when)
            .max_chain_depth(MAX_CHAIN)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=leaf_policy,
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, intermediates)
        except verification.VerificationError as e:
            raise CertificateError(f"no chain to a trust anchor: {e}") from None
        return VerifiedSigner(
            key=key,
            not_before=max(c.not_valid_before_utc.timestamp() for c in verified.chain),
            not_after=min(c.not_valid_after_utc.timestamp() for c in verified.chain),
        )
