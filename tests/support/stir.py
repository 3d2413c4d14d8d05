"""
A STIR/SHAKEN test PKI made with ``cryptography``: a root CA (the trust
anchor), an intermediate CA and a signer's (end-entity) certificate with a
TNAuthList extension, as an STI-CA would issue them (ATIS-1000080).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from attrs import evolve, frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: The time every test PKI is valid around: 2027-01-15 08:00 UTC.
NOW = 1_800_000_000.0
TN_AUTH_LIST = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")
DAY = 86400.0


def tn_auth_list(spc: str) -> bytes:
    """
    DER of a TNAuthList holding one service provider code (RFC 8226 §9):
    ``SEQUENCE { [0] EXPLICIT IA5String spc }``.
    """
    code = spc.encode("ascii")
    ia5 = bytes([0x16, len(code)]) + code
    entry = bytes([0xA0, len(ia5)]) + ia5
    return bytes([0x30, len(entry)]) + entry


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pbx tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _when(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    not_before: float = NOW - 30 * DAY,
    not_after: float = NOW + 365 * DAY,
    spc: str | None = "1234",
) -> x509.Certificate:
    """
    Issue one certificate.

    :param subject: its common name.
    :param key: its key pair (the public half goes in).
    :param issuer: the issuing CA's certificate; None for a self-signed root.
    :param issuer_key: the key that signs it.
    :param ca: a CA certificate (basic constraints, keyCertSign) or a signer's.
    :param spc: a signer's TNAuthList service provider code; None for none.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_when(not_before))
        .not_valid_after(_when(not_after))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        usage = x509.KeyUsage(
            False, False, False, False, False, True, True, False, False
        )
    else:
        usage = x509.KeyUsage(
            True, False, False, False, False, False, False, False, False
        )
        if spc is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(TN_AUTH_LIST, tn_auth_list(spc)),
                critical=False,
            )
    builder = builder.add_extension(usage, critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@frozen
class PKI:
    """A root, an intermediate and a signer, with their keys."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    signer_key: ec.EllipticCurvePrivateKey
    signer: x509.Certificate

    def chain_pem(self) -> bytes:
        """What the signer's x5u URL serves: its certificate, then the intermediate."""
        return pem([self.signer, self.intermediate])

    def root_pem(self) -> bytes:
        """The trust anchor, PEM."""
        return pem([self.root])

    def signer_key_pem(self) -> bytes:
        """The signing key, unencrypted PKCS#8 PEM."""
        return self.signer_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def with_signer(self, **issue_options: object) -> PKI:
        """The same CAs with a new signer's certificate (same key), issued with ``issue_options``."""
        signer = issue(
            "SHAKEN signer",
            self.signer_key,
            self.intermediate,
            self.intermediate_key,
            ca=False,
            **issue_options,  # type: ignore[arg-type]
        )
        return evolve(self, signer=signer)


def make_pki(name: str = "Test", around: float = NOW) -> PKI:
    """A fresh PKI valid from 30 days before ``around`` for a year."""
    span = {"not_before": around - 30 * DAY, "not_after": around + 365 * DAY}
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = issue(f"{name} STI-CA root", root_key, None, root_key, ca=True, **span)
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = issue(
        f"{name} STI-CA issuing", intermediate_key, root, root_key, ca=True, **span
    )
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = issue(
        f"{name} SHAKEN signer",
        signer_key,
        intermediate,
        intermediate_key,
        ca=False,
        **span,
    )
    return PKI(root_key, root, intermediate_key, intermediate, signer_key, signer)


def pem(certificates: Sequence[x509.Certificate]) -> bytes:
    """Certificates as concatenated PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
