"""Tests for the voicemail feature plugin: options, diverter, MWI package, after-deposit work."""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from attrs import define, field

from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.dialplan import ToApplication, parse_dialplan
from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.features.voicemail.interfaces import IGreetings
from pbx.features.voicemail.mailbox import Message, Voicemail
from pbx.features.voicemail.mailer import EmailConfig
from pbx.features.voicemail.mwi import (
    MessageSummaryPackage,
    access_number,
    summary_body,
)
from pbx.features.voicemail.options import VoicemailOptions, parse_voicemail_options
from pbx.features.voicemail.pipeline import AfterDeposit
from pbx.features.voicemail.service import VoicemailService
from pbx.interfaces import IEventPackage, IFeature
from pbx.plugin_loader import configure, discover
from pbx.plugins.voicemail import voicemail
from pbx.records import ExtensionRecord
from pbx.security.lockout import Lockout
from pbx.security.passwords import verify_password
from pbx.testing import FakePBX, MemoryStore

from support.voicemail import check, fast_hash, write_wav

T = TypeVar("T")
NOW = 1_700_000_000.0




def make_voicemail(
    test: SynchronousTestCase,
    store: MemoryStore,
    clock: Clock,
    changed: list[str] | None = None,
) -> Voicemail:
    """A Voicemail with a temporary spool whose file work runs at once."""
    return Voicemail(
        store,
        os.path.abspath(test.mktemp()),
        clock,
        lockout=Lockout(clock),
        hasher=fast_hash,
        verifier=check,
        on_change=None if changed is None else changed.append,
        in_thread=maybeDeferred,
    )


def run(test: SynchronousTestCase, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine whose Deferreds fire at once."""
    return test.successResultOf(Deferred.fromCoroutine(coroutine))


class OptionsTests(SynchronousTestCase):
    """parse_options: defaults, values and errors that name the key."""

    def test_plugin_is_found_and_valid(self) -> None:
        """The dropin provides IFeature under the name voicemail."""
        self.assertIs(discover()["voicemail"], voicemail)
        self.assertTrue(verifyObject(IFeature, voicemail))

    def test_defaults(self) -> None:
        """An empty section gives every default."""
        self.assertEqual(voicemail.parse_options({}), VoicemailOptions())
        options = VoicemailOptions()
        self.assertEqual(
            (
                options.spool,
                options.max_seconds,
                options.min_seconds,
                options.silence_seconds,
            ),
            ("voicemail", 180.0, 1.0, 5.0),
        )
        self.assertEqual(
            (options.pin_min_length, options.pin_attempts, options.unsolicited_mwi),
            (4, 3, True),
        )
        self.assertTrue(options.has_mailbox("1001"))

    def test_values(self) -> None:
        """Every key is read."""
        options = voicemail.parse_options(
            {
                "spool": "/var/spool/pbx",
                "mailboxes": ["1001", 1002],
                "max_seconds": 60,
                "min_seconds": 0.5,
                "silence_seconds": 3,
                "operator": "1000",
                "pin_min_length": 6,
                "pin_attempts": 5,
                "unsolicited_mwi": False,
                "delete_after_email": True,
                "email": {
                    "sender": "pbx@example.com",
                    "server": "mail.example.com:587",
                },
            }
        )
        self.assertEqual(options.mailboxes, frozenset({"1001", "1002"}))
        self.assertFalse(options.has_mailbox("1003"))
        self.assertEqual(
            (
                options.spool,
                options.max_seconds,
                options.operator,
                options.pin_min_length,
            ),
            ("/var/spool/pbx", 60.0, "1000", 6),
        )
        self.assertIsInstance(options.email, EmailConfig)
        self.assertEqual(options.email.server, "mail.example.com:587")
        self.assertTrue(options.delete_after_email)
        self.assertIsNone(options.transcription)
        self.assertIsNone(voicemail.parse_options({"mailboxes": "all"}).mailboxes)

    def test_errors_name_the_key(self) -> None:
        """Each mistake is a ConfigError naming the key relative to the feature."""
        cases = [
            ({"greeting": 1}, "greeting"),
            ({"spool": ""}, "spool"),
            ({"mailboxes": "some"}, "mailboxes"),
            ({"mailboxes": ["1001", "x1"]}, "mailboxes[1]"),
            ({"max_seconds": "long"}, "max_seconds"),
            ({"max_seconds": 1}, "max_seconds"),
            ({"min_seconds": 200, "max_seconds": 100}, "min_seconds"),
            ({"silence_seconds": True}, "silence_seconds"),
            ({"operator": "0"}, "operator"),
            ({"pin_min_length": 3}, "pin_min_length"),
            ({"pin_attempts": 2.5}, "pin_attempts"),
            ({"unsolicited_mwi": "yes"}, "unsolicited_mwi"),
            ({"delete_after_email": True}, "delete_after_email"),
            ({"email": {"server": "x"}}, "email.sender"),
            ({"email": "smtp"}, "email"),
            ({"transcription": {"engine": "nonesuch"}}, "transcription.engine"),
        ]
        for raw, key in cases:
            with self.subTest(raw=raw):
                error = self.assertRaises(ConfigError, voicemail.parse_options, raw)
                self.assertEqual(error.key, key)
                self.assertTrue(error.problem)

    def test_loader_prefixes_the_feature(self) -> None:
        """Through the loader the key is features.voicemail.<key>."""
        error = self.assertRaises(
            ConfigError,
            configure,
            {"voicemail": {"max_seconds": "x"}},
            {"voicemail": voicemail},
        )
        self.assertEqual(str(error), "features.voicemail.max_seconds: must be a number")


class DiverterTests(SynchronousTestCase):
    """Unanswered calls to a mailbox go to the voicemail application."""

    def service(self, options: VoicemailOptions) -> VoicemailService:
        """A service that was not started (the diverter needs nothing else)."""
        return VoicemailService(object(), options)

    def test_every_reason_diverts(self) -> None:
        """Busy, no answer, DND and unregistered all go to voicemail with the reason."""
        divert = self.service(VoicemailOptions()).divert
        for reason in ("busy", "no_answer", "dnd", "unavailable"):
            self.assertEqual(
                divert("1001", reason),
                ToApplication("voicemail", {"mailbox": "1001", "reason": reason}),
            )

    def test_only_configured_mailboxes(self) -> None:
        """With a list of mailboxes, other extensions are not diverted."""
        divert = self.service(parse_voicemail_options({"mailboxes": ["1001"]})).divert
        self.assertIsNotNone(divert("1001", "busy"))
        self.assertIsNone(divert("1002", "busy"))


class MessageSummaryTests(SynchronousTestCase):
    """The message-summary event package (RFC 3842)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore()
        self.store.extensions["1001"] = ExtensionRecord("1001")
        self.vm = make_voicemail(self, self.store, self.clock)
        self.package = MessageSummaryPackage(self.vm, "pbx.test", True, "*97")

    def leave(self) -> Message:
        """Deliver a one-second message to 1001."""
        path = write_wav(self.vm.recording_path("1001"))
        return run(
            self,
            self.vm.deliver("1001", path, caller="1002", caller_name="", duration=1),
        )

    def test_provides_interface(self) -> None:
        """The package provides IEventPackage with the RFC 3842 event and type."""
        self.assertTrue(verifyObject(IEventPackage, self.package))
        self.assertEqual(self.package.event, "message-summary")
        self.assertEqual(
            self.package.content_type, "application/simple-message-summary"
        )
        self.assertTrue(self.package.unsolicited)

    def test_authorize_own_mailbox_only(self) -> None:
        """A phone may watch its own mailbox, no other."""
        self.assertTrue(self.package.authorize("1001", "1001"))
        self.assertFalse(self.package.authorize("1002", "1001"))
        self.assertFalse(self.package.authorize("", ""))

    def test_state_bodies(self) -> None:
        """The body says whether messages wait, with new/old counts and the account."""
        self.assertEqual(
            self.successResultOf(self.package.state("1001")),
            b"Messages-Waiting: no\r\nMessage-Account: sip:*97@pbx.test\r\n"
            b"Voice-Message: 0/0 (0/0)\r\n",
        )
        first = self.leave()
        self.leave()
        run(self, self.vm.mark("1001", first.id, "old"))
        self.assertEqual(
            self.successResultOf(self.package.state("1001")),
            b"Messages-Waiting: yes\r\nMessage-Account: sip:*97@pbx.test\r\n"
            b"Voice-Message: 1/1 (0/0)\r\n",
        )

    def test_account_is_the_mailbox_without_access_number(self) -> None:
        """Without a voicemail number in the dialplan, the account is the mailbox itself."""
        package = MessageSummaryPackage(self.vm, "pbx.test", False, None)
        self.assertIn(
            b"Message-Account: sip:1001@pbx.test\r\n",
            self.successResultOf(package.state("1001")),
        )
        self.assertFalse(package.unsolicited)

    def test_summary_body(self) -> None:
        """summary_body builds the three lines with CRLF endings."""
        self.assertEqual(
            summary_body(True, 3, 7, "sip:*97@x"),
            b"Messages-Waiting: yes\r\nMessage-Account: sip:*97@x\r\nVoice-Message: 3/7 (0/0)\r\n",
        )

    def test_access_number(self) -> None:
        """The access number is the first exact route to voicemail-main without ask_mailbox."""
        plan = parse_dialplan(
            [
                {
                    "match": "*98",
                    "app": "voicemail-main",
                    "args": {"ask_mailbox": True},
                },
                {"match": "_*9X", "app": "voicemail-main"},
                {"match": "*97", "app": "voicemail-main"},
            ]
        )
        self.assertEqual(access_number(plan), "*97")
        self.assertIsNone(
            access_number(parse_dialplan([{"match": "*43", "app": "echo"}]))
        )


@define
class FakeSender:
    """Records the e-mails it is asked to send; fails when told to."""

    sent: list[tuple[str, dict[str, Any]]] = field(factory=list)
    error: Exception | None = None

    def __call__(
        self, pbx: Any, config: Any, to: str, **fields: Any
    ) -> Deferred[None]:
        """Send (record) one message."""
        self.sent.append((to, fields))
        return fail(self.error) if self.error is not None else succeed(None)


@define
class FakeTranscript:
    """What a transcriber returns."""

    text: str
    confidence: float
    engine: str = "fake"


class PipelineTests(SynchronousTestCase):
    """Transcription, e-mail and deletion after a deposit."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore()
        self.store.extensions["1001"] = ExtensionRecord(
            "1001", email="alice@example.com"
        )
        self.store.extensions["1002"] = ExtensionRecord("1002")
        self.vm = make_voicemail(self, self.store, self.clock)
        self.sender = FakeSender()
        self.email = EmailConfig(sender="pbx@example.com")

    def leave(self, mailbox: str = "1001") -> Message:
        """Deliver a message from 2001 (Carol)."""
        path = write_wav(self.vm.recording_path(mailbox))
        return run(
            self,
            self.vm.deliver(
                mailbox, path, caller="2001", caller_name="Carol", duration=1
            ),
        )

    def pipeline(self, transcript: Any = None, **options: Any) -> AfterDeposit:
        """An AfterDeposit with the fake sender and, if given, a fake transcriber result."""

        def transcribe(pbx: Any, transcriber: Any, path: str) -> Deferred[Any]:
            self.transcribed = path
            if isinstance(transcript, Exception):
                return fail(transcript)
            return succeed(transcript)

        return AfterDeposit(
            self.vm,
            VoicemailOptions(**options),
            FakePBX(clock=self.clock, store=self.store),
            transcribe=transcribe,
            send=self.sender,
        )

    def test_transcribe_then_email(self) -> None:
        """The transcript is stored and sent in the e-mail; the message is marked e-mailed."""
        message = self.leave()
        after = self.pipeline(
            FakeTranscript("call me back", 0.75),
            transcription=object(),
            email=self.email,
        )
        self.successResultOf(after(message))
        self.assertEqual(self.transcribed, message.path)
        stored = run(self, self.vm.get("1001", message.id))
        assert stored is not None
        self.assertEqual(
            (stored.transcript, stored.confidence, stored.emailed),
            ("call me back", 0.75, True),
        )
        [(to, fields)] = self.sender.sent
        self.assertEqual(to, "alice@example.com")
        self.assertEqual(fields["transcript"], "call me back")
        self.assertEqual(fields["confidence"], 0.75)
        self.assertEqual(
            (
                fields["caller"],
                fields["caller_name"],
                fields["wav_path"],
                fields["mailbox"],
            ),
            ("2001", "Carol", message.path, "1001"),
        )
        self.assertEqual(after.pending, set())

    def test_delete_after_email(self) -> None:
        """With delete_after_email, an e-mailed message is deleted."""
        message = self.leave()
        self.successResultOf(
            self.pipeline(email=self.email, delete_after_email=True)(message)
        )
        self.assertEqual(len(self.sender.sent), 1)
        self.assertIsNone(run(self, self.vm.get("1001", message.id)))
        self.assertFalse(os.path.exists(message.path))

    def test_failed_email_keeps_message(self) -> None:
        """An e-mail that fails is logged; the message stays, not marked, even with delete_after_email."""
        self.sender.error = OSError("connection refused")
        message = self.leave()
        self.successResultOf(
            self.pipeline(email=self.email, delete_after_email=True)(message)
        )
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        stored = run(self, self.vm.get("1001", message.id))
        assert stored is not None
        self.assertFalse(stored.emailed)
        self.assertTrue(os.path.exists(message.path))

    def test_failed_transcription_still_emails(self) -> None:
        """A transcriber that fails (or gives nothing) leaves no transcript; the e-mail still goes."""
        for result in (RuntimeError("engine crashed"), None):
            message = self.leave()
            self.successResultOf(
                self.pipeline(result, transcription=object(), email=self.email)(message)
            )
            stored = run(self, self.vm.get("1001", message.id))
            assert stored is not None
            self.assertEqual((stored.transcript, stored.emailed), ("", True))
            self.assertIsNone(self.sender.sent[-1][1]["transcript"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_no_address_no_email(self) -> None:
        """A mailbox whose extension has no e-mail address gets none."""
        message = self.leave("1002")
        self.successResultOf(
            self.pipeline(email=self.email, delete_after_email=True)(message)
        )
        self.assertEqual(self.sender.sent, [])
        self.assertIsNotNone(run(self, self.vm.get("1002", message.id)))

    def test_nothing_configured(self) -> None:
        """Without transcription and e-mail nothing happens."""
        message = self.leave()
        self.successResultOf(self.pipeline()(message))
        self.assertEqual(self.sender.sent, [])
        self.assertEqual(run(self, self.vm.get("1001", message.id)), message)


SERVICE_CONFIG = """
sip: {domain: pbx.test}
state_dir: %s
dialplan:
  - {match: "*97", app: voicemail-main}
  - {match: "*98", app: voicemail-main, args: {ask_mailbox: true}}
features:
  voicemail: {mailboxes: ["1001", "1002"]}
"""


class ServiceTests(SynchronousTestCase):
    """Starting the feature's service in a PBX."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore()
        self.store.extensions["1001"] = ExtensionRecord("1001")
        self.store.extensions["1002"] = ExtensionRecord(
            "1002", pin_hash="kept"
        )
        self.store.extensions["1003"] = ExtensionRecord("1003")
        state = os.path.abspath(self.mktemp())
        config = parse_config(SERVICE_CONFIG % state, "t.yml", {})
        self.pbx = FakePBX(config=config, store=self.store, clock=self.clock)
        self.options = voicemail.parse_options(
            {k: v for k, v in config.features["voicemail"].items() if k != "enabled"}
        )
        # A crash left a message without metadata in the spool.
        self.orphan = f"{int(NOW * 1000):013d}-0a0b0c"
        write_wav(os.path.join(state, "voicemail", "1001", f"{self.orphan}.wav"))
        self.service = voicemail.make_service(self.pbx, self.options)

    def start(self) -> VoicemailService:
        """Start the service and let its background work finish."""
        self.service.startService()
        assert isinstance(self.service, VoicemailService)
        self.successResultOf(self.service.ready)
        return self.service

    def test_registers_everything(self) -> None:
        """Both applications, the diverter, the MWI package, the API and the greetings are registered."""
        service = self.start()
        self.assertEqual(sorted(self.pbx.applications), ["voicemail", "voicemail-main"])
        self.assertEqual(self.pbx.diverters, [service.divert])
        [package] = self.pbx.packages
        self.assertEqual(
            (package.event, package.account("1001")),
            ("message-summary", "sip:*97@pbx.test"),
        )
        resource, paths = self.pbx.mounted["voicemail"]
        self.assertIn("/api/v1/voicemail/{mailbox}/messages", paths)
        self.assertEqual(
            service.voicemail.spool,
            os.path.join(self.pbx.config.state_dir, "voicemail"),
        )
        self.assertIs(self.pbx.lookup(IGreetings), service.voicemail)

    def test_recovers_and_generates_pins(self) -> None:
        """The orphan is adopted; mailboxes without a PIN get one, announced to the PBX and never logged."""
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        service = self.start()
        [work] = self.pbx.startup_work
        self.assertEqual(self.successResultOf(work), 1)
        self.assertEqual(
            self.successResultOf(
                Deferred.fromCoroutine(service.voicemail.counts("1001"))
            ),
            (1, 0),
        )
        self.assertIn(("message-summary", "1001"), self.pbx.notified)
        [(kind, number, pin)] = self.pbx.secrets
        self.assertEqual((kind, number), ("voicemail PIN", "1001"))
        self.assertTrue(verify_password(pin, self.store.extensions["1001"].pin_hash))
        self.assertFalse([e for e in logged if "PIN" in e.get("log_format", "")])
        self.assertEqual(self.store.extensions["1002"].pin_hash, "kept")
        self.assertEqual(
            self.store.extensions["1003"].pin_hash, ""
        )  # no mailbox
        # Once for the placeholder, once when its hash landed.
        self.assertEqual(self.pbx.changed, ["1001", "1001"])
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(service.generate_pins())), 0
        )

    def test_pin_change_ends_api_sessions(self) -> None:
        """A PIN changed through voicemail (phone or API) ends that extension's API sessions."""
        service = self.start()
        result = self.successResultOf(Deferred.fromCoroutine(service.voicemail.set_pin("1001", "739146")))
        self.assertIsNone(result)
        self.assertEqual(self.pbx.credentials, ["1001"])
        self.assertIn("1001", self.pbx.changed)

    def test_deposit_notifies(self) -> None:
        """A message delivered through the service's mailboxes sends message-summary for its mailbox."""
        service = self.start()
        self.pbx.notified.clear()
        path = write_wav(service.voicemail.recording_path("1002"))
        run(
            self,
            service.voicemail.deliver(
                "1002", path, caller="1001", caller_name="", duration=1
            ),
        )
        self.assertEqual(self.pbx.notified, [("message-summary", "1002")])
