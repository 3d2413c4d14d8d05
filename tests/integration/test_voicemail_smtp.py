"""
Tests for pbx.features.voicemail.mailer against a real SMTP server (aiosmtpd on
loopback): delivery, dot-stuffing, AUTH, STARTTLS and the failures a
server can cause.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import socket
import ssl
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from twisted.internet.threads import deferToThreadPool
from twisted.trial.unittest import TestCase

from pbx.features.voicemail.mailer import (
    EmailConfig,
    EmailDeliveryError,
    deliver,
    send_voicemail_email,
)

from support.mail import RECEIVED, WAV, attachments, parse

# ---------------------------------------------------------------------------
# Against a real SMTP server


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on just now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _self_signed(directory: str) -> tuple[str, str]:
    """Write a self-signed certificate for 127.0.0.1; return (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


class _Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the envelope and whether it came over TLS."""
        self.envelopes.append(envelope)
        self.tls.append(session.ssl is not None)
        return "250 OK"


def _reactor() -> Any:
    """The global reactor: these tests do real network I/O."""
    from twisted.internet import reactor

    return reactor


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
class SMTPDeliveryTests(TestCase):
    """deliver and send_voicemail_email against aiosmtpd on 127.0.0.1."""

    def start_server(self, **kwargs: Any) -> tuple[_Inbox, int]:
        """Start aiosmtpd with ``kwargs``; stop it when the test ends."""
        from aiosmtpd.controller import Controller

        inbox = _Inbox()
        port = _free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        self.addCleanup(controller.stop)
        return inbox, port

    def tls_server(self, **kwargs: Any) -> tuple[_Inbox, int]:
        """Start aiosmtpd offering STARTTLS with a self-signed certificate."""
        directory = self.mktemp()
        os.makedirs(directory)
        cert, key = _self_signed(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return self.start_server(tls_context=context, **kwargs)

    def auth_server(self) -> tuple[_Inbox, int]:
        """Start aiosmtpd requiring AUTH as pbx / s3cret, allowed without TLS."""
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                b"pbx",
                b"s3cret",
            )
            return AuthResult(success=ok, handled=False)  # the server answers 535

        return self.start_server(
            authenticator=authenticator, auth_required=True, auth_require_tls=False
        )

    async def send(self, port: int, **options: Any) -> None:
        """Send a short message through 127.0.0.1:``port`` with ``options``."""
        options.setdefault("timeout", 20)
        config = EmailConfig(
            sender="pbx@example.com", server=f"127.0.0.1:{port}", **options
        )
        await send_voicemail_email(
            _reactor(), config, "alice@example.com", b"Subject: hi\n\n.dot\nbody\n"
        )

    async def test_delivery_with_attachment(self) -> None:
        """A voicemail arrives intact, and its recording is left for the caller to delete."""
        inbox, port = self.start_server()
        wav = self.mktemp()
        with open(wav, "wb") as f:
            f.write(WAV * 64)
        config = EmailConfig(
            sender="PBX <pbx@example.com>",
            server=f"127.0.0.1:{port}",
            starttls="never",
            delete_after_send=True,
            timeout=20,
        )
        reactor = _reactor()
        await deliver(
            functools.partial(deferToThreadPool, reactor, reactor.getThreadPool()),
            reactor,
            config,
            "Alice <alice@example.com>",
            mailbox="1001",
            caller="1002",
            caller_name="Bob",
            received=RECEIVED,
            duration=3.0,
            transcript="call me",
            confidence=0.5,
            wav_path=wav,
            message_id="vm-2@example.com",
        )
        (envelope,) = inbox.envelopes
        self.assertEqual(envelope.mail_from, "pbx@example.com")
        self.assertEqual(envelope.rcpt_tos, ["alice@example.com"])
        message = parse(envelope.content)
        self.assertEqual(message["Message-ID"], "<vm-2@example.com>")
        self.assertEqual(message["Subject"], "New voicemail from Bob (1002) (3s)")
        (part,) = attachments(message)
        self.assertEqual(part.get_payload(decode=True), WAV * 64)
        self.assertEqual(inbox.tls, [False])
        self.assertTrue(os.path.exists(wav))

    async def test_dot_stuffing(self) -> None:
        """A body line starting with a dot arrives unchanged."""
        inbox, port = self.start_server()
        await self.send(port)
        self.assertIn(b"\r\n.dot\r\nbody", inbox.envelopes[0].content)

    async def test_auth(self) -> None:
        """The right username and password are accepted."""
        inbox, port = self.auth_server()
        await self.send(port, username="pbx", password="s3cret")
        self.assertEqual(len(inbox.envelopes), 1)

    async def test_auth_refused(self) -> None:
        """A wrong password fails with a permanent EmailDeliveryError."""
        inbox, port = self.auth_server()
        with self.assertRaises(EmailDeliveryError) as caught:
            await self.send(port, username="pbx", password="wrong")
        self.assertIn("refused the username or password", str(caught.exception))
        self.assertNotIn("wrong", str(caught.exception))
        self.assertTrue(caught.exception.permanent)
        self.assertEqual(inbox.envelopes, [])

    async def test_auth_required_but_offered_none(self) -> None:
        """A username against a server without AUTH fails rather than sending unauthenticated."""
        inbox, port = self.start_server()
        with self.assertRaises(EmailDeliveryError) as caught:
            await self.send(port, username="pbx", password="s3cret")
        self.assertIn("does not offer AUTH", str(caught.exception))
        self.assertEqual(inbox.envelopes, [])

    async def test_starttls_required_unverified(self) -> None:
        """STARTTLS to a self-signed server works when verification is off."""
        inbox, port = self.tls_server()
        await self.send(port, starttls="required", verify_certificate=False)
        self.assertEqual(inbox.tls, [True])

    async def test_starttls_optional_used(self) -> None:
        """With starttls optional, a server that offers STARTTLS gets TLS."""
        inbox, port = self.tls_server()
        await self.send(port, starttls="optional", verify_certificate=False)
        self.assertEqual(inbox.tls, [True])

    async def test_starttls_verified_refuses_self_signed(self) -> None:
        """With verification on, a self-signed certificate stops the send."""
        inbox, port = self.tls_server()
        with self.assertRaises(EmailDeliveryError) as caught:
            await self.send(port, starttls="required")
        self.assertIn("TLS failed (certificate verify failed)", str(caught.exception))
        self.assertEqual(inbox.envelopes, [])

    async def test_starttls_required_not_offered(self) -> None:
        """starttls required against a server without STARTTLS fails, sending nothing."""
        inbox, port = self.start_server()
        with self.assertRaises(EmailDeliveryError) as caught:
            await self.send(port, starttls="required")
        self.assertIn("does not offer STARTTLS", str(caught.exception))
        self.assertEqual(inbox.envelopes, [])

    async def test_starttls_optional_not_offered(self) -> None:
        """starttls optional against a server without STARTTLS sends in the clear."""
        inbox, port = self.start_server()
        await self.send(port, starttls="optional")
        self.assertEqual(inbox.tls, [False])

    async def test_connection_refused(self) -> None:
        """Nobody listening fails with a clear error."""
        with self.assertRaises(EmailDeliveryError) as caught:
            await self.send(_free_port())
        self.assertIn("connection refused", str(caught.exception))

    async def test_silent_server_times_out(self) -> None:
        """A server that accepts but never greets fails after the timeout."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            with self.assertRaises(EmailDeliveryError) as caught:
                await self.send(port, timeout=1)
        self.assertIn("did not answer within 1 s", str(caught.exception))
