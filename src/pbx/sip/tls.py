"""
TLS for SIP: the server certificate (configured, or self-signed on first
start) and a context that speaks TLS 1.2 or newer only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from twisted.internet import ssl
from twisted.internet.ssl import TLSVersion

from pbx.config import TLSConfig
from pbx.security.fips import restrict_context


class TLSSetupError(Exception):
    """The certificate, key or CA could not be loaded."""


def ensure_self_signed(directory: str, hostname: str, *, days: int = 3650) -> tuple[str, str, bool]:
    """
    Make ``cert.pem`` and ``key.pem`` in ``directory`` unless both exist.

    :returns: (certificate path, key path, whether they were just made).
    """
    folder = Path(directory)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        return str(cert_path), str(key_path), False
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path), True


def fingerprint(cert_path: str) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as AA:BB:..."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def server_context(config: TLSConfig, state_dir: str, hostname: str) -> tuple[ssl.CertificateOptions, str, bool]:
    """
    The context factory for TLS listeners.

    :returns: (options, certificate fingerprint, whether it was generated now).
    :raises TLSSetupError: naming the file that could not be used.
    """
    generated = False
    if config.certificate:
        cert_path, key_path = config.certificate, config.key
    else:
        cert_path, key_path, generated = ensure_self_signed(os.path.join(state_dir, "tls"), hostname)
    try:
        cert_pem = Path(cert_path).read_bytes()
        key_pem = Path(key_path).read_bytes()
        private = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    except Exception as e:
        raise TLSSetupError(f"certificate {cert_path} / key {key_path}: {e}") from e
    if config.verify_clients:
        try:
            ca = ssl.Certificate.loadPEM(Path(config.ca).read_bytes())
        except Exception as e:
            raise TLSSetupError(f"CA {config.ca}: {e}") from e
        options = ssl.CertificateOptions(
            privateKey=private.privateKey.original,
            certificate=private.original,
            raiseMinimumTo=TLSVersion.TLSv1_2,
            verify=True,
            caCerts=[ca.original],
            requireCertificate=True,
        )
    else:
        options = ssl.CertificateOptions(
            privateKey=private.privateKey.original,
            certificate=private.original,
            raiseMinimumTo=TLSVersion.TLSv1_2,
        )
    if config.approved_only:
        restrict_context(options.getContext())
    return options, fingerprint(cert_path), generated
