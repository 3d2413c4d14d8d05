"""Integration: TLS listeners speak TLS 1.2+ only and can require client certificates."""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from twisted.trial.unittest import SynchronousTestCase

from support.daemon import Daemon, free_port

pytestmark = pytest.mark.integration


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A throw-away certificate authority, written to ``ca.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def make_client(directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> None:
    """A client certificate signed by the CA: ``client.pem`` and ``client.key``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(_name("phone 1001")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "client.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


OPTIONS = (
    "OPTIONS sip:pbx@127.0.0.1:{port};transport=tls SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-tls-{n};rport\r\n"
    "From: <sip:probe@127.0.0.1>;tag=t{n}\r\nTo: <sip:pbx@127.0.0.1>\r\n"
    "Call-ID: tls-{n}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


class TLSClientTests(SynchronousTestCase):
    """The TLS listener with verify_clients: a phone without a certificate is refused."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        ca_key, ca = make_ca(self.dir)
        make_client(self.dir, ca_key, ca)
        self.tls_port = free_port()
        config = {
            "sip": {
                "domain": "pbx.test",
                "listen": [f"tls:{self.tls_port}:interface=127.0.0.1"],
                "tls": {"verify_clients": True, "ca": str(self.dir / "ca.pem")},
            },
            "api": {"listen": f"tcp:{free_port()}:interface=127.0.0.1",
                    "admins": [{"username": "admin", "password": "Adm1n-pass-word-x"}]},
            "rtp": {"interface": "127.0.0.1"},
        }
        self.daemon = Daemon(str(self.dir / "run"), json.dumps(config))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.server_cert = os.path.join(self.daemon.workdir, "pbx-data", "tls", "cert.pem")
        self.errors: list[str] = []

    def context(self, with_certificate: bool, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A client context trusting the server's self-signed certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.server_cert)
        if with_certificate:
            context.load_cert_chain(str(self.dir / "client.pem"), str(self.dir / "client.key"))
        if version is not None:
            # Let the client really offer an old version (OpenSSL 3 refuses
            # TLS 1.1 at its default security level), so a refusal is the
            # server's.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = context.maximum_version = version
        return context

    def options(self, context: ssl.SSLContext, n: int) -> bytes:
        """Send OPTIONS over TLS and return what came back (b'' if refused)."""
        with socket.create_connection(("127.0.0.1", self.tls_port), timeout=10) as raw:
            try:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(OPTIONS.format(port=self.tls_port, n=n).encode())
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    return data
            except (ssl.SSLError, ConnectionError, OSError) as e:
                self.errors.append(str(e))
                return b""

    def test_client_certificate_required(self) -> None:
        """With a CA-signed certificate OPTIONS gets 200; without one the connection is refused."""
        self.assertTrue(self.options(self.context(True), 1).startswith(b"SIP/2.0 200 "))
        self.assertEqual(self.options(self.context(False), 2), b"")

    def test_old_tls_refused(self) -> None:
        """TLS 1.1 is refused even with a good certificate (TLS 1.2 is the floor)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is the point here
                old = self.context(True, ssl.TLSVersion.TLSv1_1)
        except (ValueError, ssl.SSLError):
            raise self.skipTest("this OpenSSL cannot even offer TLS 1.1") from None
        self.assertEqual(self.options(old, 3), b"")
        # The server said no (a protocol-version alert), not our own client.
        self.assertTrue(any("VERSION" in e.upper() for e in self.errors), self.errors)
        self.assertTrue(self.options(self.context(True, ssl.TLSVersion.TLSv1_2), 4).startswith(b"SIP/2.0 200 "))
