"""
Tests for pbx.features.voicemail.mailer: the voicemail e-mail, its options, and
the SMTP client it sets up, on a memory reactor.
"""

from __future__ import annotations

import datetime
import os
import wave
from typing import Any

import numpy as np

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.mail import smtp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pbx.errors import ConfigError
from pbx.features.voicemail.mailer import (
    DEFAULT_SUBJECT,
    EmailConfig,
    EmailDeliveryError,
    build_message,
    clean_header_text,
    parse_email_options,
    send_voicemail_email,
)
from pbx.media.wav_ulaw import read_ulaw_wav

from support.mail import RECEIVED, WAV, attachments, parse


class BuildMessageTests(SynchronousTestCase):
    """build_message makes a well-formed MIME message that cannot be subverted."""

    def setUp(self) -> None:
        self.config = EmailConfig(sender="PBX <pbx@example.com>")
        self.wav = self.mktemp()
        with open(self.wav, "wb") as f:
            f.write(WAV)

    def build(self, **overrides: Any) -> bytes:
        """The message for a 42.4 s voicemail from Bob, with overrides."""
        config = overrides.pop("config", self.config)
        fields: dict[str, Any] = {
            "to": "Alice <alice@example.com>",
            "mailbox": "1001",
            "caller": "1002",
            "caller_name": "Bob",
            "received": RECEIVED,
            "duration": 42.4,
            "transcript": "please call me back",
            "confidence": 0.874,
            "wav_path": self.wav,
            "message_id": "vm-1@pbx.example.com",
        }
        fields.update(overrides)
        return build_message(config, **fields)

    def test_headers(self) -> None:
        """From, To, Subject, Date and Message-ID are set from the config and fields."""
        message = parse(self.build())
        self.assertEqual(message["From"], "PBX <pbx@example.com>")
        self.assertEqual(message["To"], "Alice <alice@example.com>")
        self.assertEqual(message["Subject"], "New voicemail from Bob (1002) (42s)")
        self.assertEqual(
            message["Date"].datetime,
            datetime.datetime(2024, 5, 1, 12, 34, 56, tzinfo=datetime.UTC),
        )
        self.assertEqual(message["Message-ID"], "<vm-1@pbx.example.com>")

    def test_generated_message_id(self) -> None:
        """Without a Message-ID one is made in the sender's domain."""
        message = parse(self.build(message_id=None))
        self.assertRegex(message["Message-ID"], r"^<[^<>@]+@example\.com>$")

    def test_body(self) -> None:
        """The body gives mailbox, caller, UTC time, duration and the transcript."""
        body = parse(self.build()).get_body(("plain",))
        assert body is not None
        text = body.get_content()
        self.assertIn("mailbox 1001", text)
        self.assertIn("From:     Bob (1002)", text)
        self.assertIn("Received: 2024-05-01 12:34:56 UTC", text)
        self.assertIn("Duration: 42 s", text)
        self.assertIn("Transcript (confidence 87%):\n  please call me back", text)

    def test_long_duration(self) -> None:
        """Durations of a minute or more are given in minutes and seconds."""
        body = parse(self.build(duration=125.2)).get_body(("plain",))
        assert body is not None
        self.assertIn("Duration: 2 min 05 s", body.get_content())

    def test_no_transcript(self) -> None:
        """Without a transcript the body says so."""
        for transcript in (None, "", "   "):
            body = parse(self.build(transcript=transcript, confidence=None)).get_body(
                ("plain",)
            )
            assert body is not None
            self.assertIn("Transcript: no transcript.", body.get_content())

    def test_attachment(self) -> None:
        """The recording is attached as audio/wav, byte for byte."""
        (part,) = attachments(parse(self.build()))
        self.assertEqual(part.get_content_type(), "audio/wav")
        self.assertEqual(part.get_filename(), "voicemail-1001-20240501-123456.wav")
        self.assertEqual(part.get_payload(decode=True), WAV)

    def test_attach_ulaw(self) -> None:
        """With attach: ulaw a 16 kHz recording goes as an 8 kHz µ-law WAV a quarter its size."""
        t = np.arange(16000 * 2) / 16000
        tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        path = self.mktemp()
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(tone.tobytes())
        config = EmailConfig(sender="pbx@example.com", attach="ulaw")
        (part,) = attachments(parse(self.build(config=config, wav_path=path)))
        self.assertEqual(part.get_content_type(), "audio/wav")
        data = part.get_payload(decode=True)
        self.assertLess(len(data), os.path.getsize(path) / 3.9)
        rate, samples = read_ulaw_wav(data)
        self.assertEqual((rate, len(samples)), (8000, 16000))
        expected = (8000 * np.sin(2 * np.pi * 440 * np.arange(16000) / 8000))
        self.assertGreater(np.corrcoef(samples[100:-100], expected[100:-100])[0, 1], 0.99)

    def test_attach_ulaw_unreadable(self) -> None:
        """A recording that is not a 16-bit WAV is left out with ulaw too."""
        config = EmailConfig(sender="pbx@example.com", attach="ulaw")
        message = parse(self.build(config=config))  # WAV here is not a real recording
        self.assertEqual(attachments(message), [])

    def test_attach_none(self) -> None:
        """With attach: none the message has no attachment."""
        config = EmailConfig(sender="pbx@example.com", attach="none")
        message = parse(self.build(config=config))
        self.assertEqual(attachments(message), [])
        self.assertFalse(message.is_multipart())

    def test_missing_recording(self) -> None:
        """A recording that cannot be read is left out and the body says so."""
        message = parse(self.build(wav_path=self.wav + ".gone"))
        self.assertEqual(attachments(message), [])
        body = message.get_body(("plain",))
        assert body is not None
        self.assertIn("could not be attached", body.get_content())

    def test_header_injection(self) -> None:
        """CR, LF and control characters in a caller name cannot add headers."""
        raw = self.build(
            caller="1002\r\nBcc: x@evil.example",
            caller_name="Bob\r\nBcc: victim@evil.example\n\nbody\x00\x1b[2J",
        )
        message = parse(raw)
        self.assertIsNone(message["Bcc"])
        self.assertEqual(
            sorted(message.keys()),
            sorted(
                [
                    "From",
                    "To",
                    "Subject",
                    "Date",
                    "Message-ID",
                    "MIME-Version",
                    "Content-Type",
                ]
            ),
        )
        subject = message["Subject"]
        self.assertNotIn("\r", subject)
        self.assertNotIn("\n", subject)
        self.assertNotIn("\x1b", subject)
        self.assertIn("Bob Bcc: victim@evil.example body", subject)
        self.assertNotIn(b"\nBcc:", raw)

    def test_bidi_override_dropped(self) -> None:
        """Invisible bidirectional overrides are removed from the caller name."""
        message = parse(self.build(caller_name="Bob\u202etxt.exe"))
        self.assertIn("Bobtxt.exe", message["Subject"])
        self.assertNotIn("\u202e", message["Subject"])

    def test_unicode_caller_name(self) -> None:
        """A non-ASCII name survives header encoding."""
        raw = self.build(caller_name="김민준")
        self.assertTrue(raw.split(b"\n\n", 1)[0].isascii())
        self.assertEqual(
            parse(raw)["Subject"], "New voicemail from 김민준 (1002) (42s)"
        )

    def test_subject_template(self) -> None:
        """The subject template may use every documented field."""
        config = EmailConfig(
            sender="pbx@example.com",
            subject="[{mailbox}] {caller_name} / {caller_number}: {duration}s",
        )
        self.assertEqual(
            parse(self.build(config=config))["Subject"], "[1001] Bob / 1002: 42s"
        )

    def test_nameless_caller(self) -> None:
        """Without a display name the caller is the number alone."""
        self.assertEqual(
            parse(self.build(caller_name=""))["Subject"],
            "New voicemail from 1002 (42s)",
        )

    def test_bad_addresses(self) -> None:
        """A malformed recipient or Message-ID is refused."""
        self.assertRaises(ValueError, self.build, to="not an address")
        self.assertRaises(
            ValueError, self.build, to="a@example.com\r\nBcc: b@example.com"
        )
        self.assertRaises(ValueError, self.build, message_id="no at sign")
        self.assertRaises(ValueError, self.build, message_id="<a@b>\r\nBcc: x")

    def test_clean_header_text_limit(self) -> None:
        """Long header text is cut to the limit with an ellipsis."""
        cleaned = clean_header_text("x" * 500, limit=20)
        self.assertEqual(len(cleaned), 20)
        self.assertTrue(cleaned.endswith("\u2026"))


class ParseEmailOptionsTests(SynchronousTestCase):
    """parse_email_options validates the e-mail mapping, naming the bad key."""

    def problem(self, raw: Any) -> tuple[str, str]:
        """Parse ``raw`` expecting a ConfigError; return its (key, problem)."""
        with self.assertRaises(ConfigError) as caught:
            parse_email_options(raw, "vm.email")
        return caught.exception.key, caught.exception.problem

    def test_full(self) -> None:
        """Every option is read."""
        config = parse_email_options(
            {
                "sender": "PBX <pbx@example.com>",
                "server": "mail.example.com:587",
                "starttls": "required",
                "verify_certificate": False,
                "username": "pbx",
                "password": "s3cret",
                "attach": "none",
                "subject": "{caller}",
                "delete_after_send": True,
                "timeout": 10,
            },
            "vm.email",
        )
        self.assertEqual(
            config,
            EmailConfig(
                sender="PBX <pbx@example.com>",
                server="mail.example.com:587",
                starttls="required",
                verify_certificate=False,
                username="pbx",
                password="s3cret",
                attach="none",
                subject="{caller}",
                delete_after_send=True,
                timeout=10.0,
            ),
        )
        self.assertEqual((config.host, config.port), ("mail.example.com", 587))
        self.assertNotIn("s3cret", repr(config))

    def test_defaults(self) -> None:
        """Only the sender is required."""
        config = parse_email_options({"sender": "pbx@example.com"}, "vm.email")
        self.assertEqual(config.server, "127.0.0.1:25")
        self.assertEqual(config.starttls, "optional")
        self.assertTrue(config.verify_certificate)
        self.assertEqual(config.attach, "wav")
        self.assertEqual(config.subject, DEFAULT_SUBJECT)
        self.assertFalse(config.delete_after_send)

    def test_servers(self) -> None:
        """Host alone means port 25; IPv6 addresses go in brackets."""
        for server, expected in [
            ("mail.example.com", ("mail.example.com", 25)),
            ("[::1]:2525", ("::1", 2525)),
            ("[::1]", ("::1", 25)),
        ]:
            config = parse_email_options({"sender": "a@b.c", "server": server}, "e")
            self.assertEqual((config.host, config.port), expected)

    def test_errors(self) -> None:
        """Unknown keys, wrong types and bad values name the key and problem."""
        ok = {"sender": "pbx@example.com"}
        cases: list[tuple[Any, tuple[str, str]]] = [
            ([], ("vm.email", "must be a mapping")),
            ({}, ("vm.email.sender", "required")),
            ({**ok, "smtp": "x"}, ("vm.email.smtp", "unknown key")),
            ({**ok, "server": 25}, ("vm.email.server", "must be a string")),
            (
                {**ok, "server": "host:0"},
                ("vm.email.server", "port '0' is not 1-65535"),
            ),
            (
                {**ok, "server": "host:smtp"},
                ("vm.email.server", "port 'smtp' is not 1-65535"),
            ),
            (
                {**ok, "server": "::1:25"},
                ("vm.email.server", "write an IPv6 address as [address]:port"),
            ),
            ({**ok, "server": ":25"}, ("vm.email.server", "no host")),
            (
                {**ok, "starttls": "always"},
                ("vm.email.starttls", "must be one of never, optional, required"),
            ),
            ({**ok, "starttls": True}, ("vm.email.starttls", "must be a string")),
            (
                {**ok, "verify_certificate": "no"},
                ("vm.email.verify_certificate", "must be true or false"),
            ),
            (
                {**ok, "delete_after_send": 1},
                ("vm.email.delete_after_send", "must be true or false"),
            ),
            ({**ok, "attach": "mp3"}, ("vm.email.attach", "must be one of wav, ulaw, none")),
            (
                {**ok, "timeout": "30"},
                ("vm.email.timeout", "must be a number of seconds"),
            ),
            (
                {**ok, "timeout": True},
                ("vm.email.timeout", "must be a number of seconds"),
            ),
            (
                {**ok, "timeout": 0},
                ("vm.email.timeout", "must be more than 0 and at most 600"),
            ),
            (
                {**ok, "subject": "{secret}"},
                (
                    "vm.email.subject",
                    "unknown field {secret}; use caller, caller_number, caller_name, mailbox, duration",
                ),
            ),
            (
                {**ok, "subject": "{caller.__class__}"},
                (
                    "vm.email.subject",
                    "unknown field {caller.__class__}; use caller, caller_number, caller_name, mailbox, duration",
                ),
            ),
            (
                {**ok, "subject": "{caller"},
                ("vm.email.subject", "expected '}' before end of string"),
            ),
            (
                {**ok, "password": "x"},
                ("vm.email.username", "required with a password"),
            ),
            (
                {**ok, "username": "x"},
                ("vm.email.password", "required with a username"),
            ),
            (
                {"sender": "nobody"},
                ("vm.email.sender", "'nobody' is not an e-mail address"),
            ),
            (
                {"sender": "a@b.c\nBcc: d@e.f"},
                ("vm.email.sender", "contains control characters"),
            ),
        ]
        for raw, expected in cases:
            with self.subTest(raw=raw):
                self.assertEqual(self.problem(raw), expected)


class SendTests(SynchronousTestCase):
    """send_voicemail_email sets up the Twisted SMTP client from the config."""

    def send(self, config: EmailConfig) -> tuple[MemoryReactorClock, Deferred[None]]:
        """Send a one-line message with ``config`` on a memory reactor."""
        reactor = MemoryReactorClock()
        d = send_voicemail_email(
            reactor, config, "Alice <alice@example.com>", b"Subject: x\n\nx\n"
        )
        return reactor, d

    def test_connects(self) -> None:
        """It connects to the configured host and port with the timeout."""
        reactor, _ = self.send(
            EmailConfig(
                sender="pbx@example.com", server="mail.example.com:2525", timeout=7
            )
        )
        ((host, port, factory, timeout, _),) = reactor.tcpClients
        self.assertEqual((host, port, timeout), ("mail.example.com", 2525, 7))
        self.assertEqual(factory.toEmail, [b"alice@example.com"])
        self.assertEqual(factory.timeout, 7)
        self.assertEqual(factory.retries, 0)

    def test_security_flags(self) -> None:
        """STARTTLS and AUTH requirements follow starttls and username."""
        cases = [
            (EmailConfig(sender="a@b.c", starttls="never"), (False, False, False)),
            (EmailConfig(sender="a@b.c", starttls="optional"), (True, False, False)),
            (EmailConfig(sender="a@b.c", starttls="required"), (True, True, False)),
            (
                EmailConfig(sender="a@b.c", username="u", password="p"),
                (True, False, True),
            ),
        ]
        for config, (tls, must_tls, must_auth) in cases:
            reactor, _ = self.send(config)
            factory = reactor.tcpClients[0][2]
            self.assertEqual(
                (
                    factory._contextFactory is not None,
                    factory._requireTransportSecurity,
                    factory._requireAuthentication,
                ),
                (tls, must_tls, must_auth),
                config,
            )

    def test_error_hides_conversation(self) -> None:
        """A failure names the problem but never the SMTP log with the credentials."""
        reactor, d = self.send(
            EmailConfig(sender="a@b.c", username="u", password="hunter2")
        )
        factory = reactor.tcpClients[0][2]
        factory.sendFinished = True  # as ESMTPSender.sendError does
        factory.result.errback(
            smtp.AUTHDeclinedError(
                535,
                b"5.7.8 Authentication failed",
                b">>> AUTH PLAIN AHUAaHVudGVyMg== hunter2",
            )
        )
        factory.clientConnectionLost(None, Failure(Exception("gone")))
        error = self.failureResultOf(d, EmailDeliveryError).value
        self.assertEqual(
            str(error),
            "SMTP server 127.0.0.1:25 refused the username or password (5.7.8 Authentication failed)",
        )
        self.assertNotIn("AHUAaHVudGVyMg", str(error))
        self.assertTrue(error.permanent)

    def test_waits_for_close(self) -> None:
        """The result waits until the connection is closed."""
        reactor, d = self.send(EmailConfig(sender="a@b.c"))
        factory = reactor.tcpClients[0][2]
        factory.sendFinished = True
        factory.result.callback((1, [(b"alice@example.com", 250, b"OK")]))
        self.assertNoResult(d)
        factory.clientConnectionLost(None, Failure(Exception("closed")))
        self.assertIsNone(self.successResultOf(d))

    def test_bad_recipient(self) -> None:
        """A malformed recipient fails at once, without connecting."""
        reactor = MemoryReactorClock()
        d = send_voicemail_email(reactor, EmailConfig(sender="a@b.c"), "nobody", b"")
        self.failureResultOf(d, EmailDeliveryError)
        self.assertEqual(reactor.tcpClients, [])
