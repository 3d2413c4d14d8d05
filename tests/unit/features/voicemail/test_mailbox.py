"""Tests for voicemail mailboxes: spool files, metadata documents, PINs and recovery."""

from __future__ import annotations

import os
import wave
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.features.voicemail.mailbox import (
    KIND,
    Message,
    Voicemail,
    generate_pin,
    pin_problem,
)
from pbx.records import ExtensionRecord
from pbx.security.lockout import Lockout
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import MemoryStore

from support.voicemail import check, fast_hash, write_wav

T = TypeVar("T")
NOW = 1_700_000_000.0




class MailboxTestCase(SynchronousTestCase):
    """A Voicemail over a MemoryStore and a temporary spool; mailboxes 1001 and 1002."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore()
        for number in ("1001", "1002"):
            self.store.extensions[number] = ExtensionRecord(
                number, pin_hash=hash_password("4826", iterations=1000)
            )
        self.store.extensions["1003"] = ExtensionRecord("1003", enabled=False)
        self.spool = os.path.abspath(self.mktemp())
        self.changed: list[str] = []
        self.extension_changes: list[str] = []
        self.lockout = Lockout(
            self.clock, max_failures=3, window=60, base_delay=30, max_delay=600
        )
        self.vm = Voicemail(
            self.store,
            self.spool,
            self.clock,
            lockout=self.lockout,
            hasher=fast_hash,
            verifier=check,
            on_change=self.changed.append,
            on_extension_changed=self.extension_changes.append,
            in_thread=maybeDeferred,
        )

    def run_(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine whose Deferreds all fire at once; return its result."""
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def leave(
        self,
        mailbox: str = "1001",
        caller: str = "1002",
        seconds: float = 2.0,
        caller_name: str = "Bob",
    ) -> Message:
        """Record a message into the temp area and deliver it."""
        path = write_wav(self.vm.recording_path(mailbox), seconds)
        message = self.run_(
            self.vm.deliver(
                mailbox, path, caller=caller, caller_name=caller_name, duration=seconds
            )
        )
        self.clock.advance(1)
        return message


class DeliveryTests(MailboxTestCase):
    """Delivering, listing and counting messages."""

    def test_deliver_moves_file_and_stores_metadata(self) -> None:
        """A delivered recording leaves tmp, lands in the mailbox directory, and has a document."""
        recorded = write_wav(self.vm.recording_path("1001"), 2.0)
        message = self.run_(
            self.vm.deliver(
                "1001", recorded, caller="1002", caller_name="Bob", duration=2.0
            )
        )
        self.assertFalse(os.path.exists(recorded))
        self.assertEqual(
            message.path, os.path.join(self.spool, "1001", f"{message.id}.wav")
        )
        self.assertTrue(os.path.isfile(message.path))
        self.assertEqual(
            (message.folder, message.caller, message.caller_name, message.duration),
            ("new", "1002", "Bob", 2.0),
        )
        self.assertEqual(message.received, NOW)
        self.assertTrue(message.id.startswith(f"{int(NOW * 1000):013d}-"))
        self.assertEqual(
            self.successResultOf(self.store.list_items(KIND, "1001"))[0][1], message.id
        )
        self.assertEqual(self.changed, ["1001"])

    def test_recording_paths_are_fresh_and_in_tmp(self) -> None:
        """Each recording path is new and lies in the spool's tmp directory, which exists."""
        first, second = self.vm.recording_path("1001"), self.vm.recording_path("1001")
        self.assertNotEqual(first, second)
        self.assertEqual(os.path.dirname(first), os.path.join(self.spool, "tmp"))
        self.assertTrue(os.path.isdir(os.path.dirname(first)))
        self.assertRaises(ValueError, self.vm.recording_path, "../etc")

    def test_order_folders_and_counts(self) -> None:
        """New messages come first, then old; oldest first within each; counts agree."""
        a, b, c = self.leave(), self.leave(), self.leave()
        self.assertTrue(self.run_(self.vm.mark("1001", a.id, "old")))
        listed = self.run_(self.vm.messages("1001"))
        self.assertEqual([m.id for m in listed], [b.id, c.id, a.id])
        self.assertEqual(
            [m.id for m in self.run_(self.vm.messages("1001", "old"))], [a.id]
        )
        self.assertEqual(self.run_(self.vm.counts("1001")), (2, 1))
        self.assertEqual(self.run_(self.vm.counts("1002")), (0, 0))

    def test_get_and_bad_ids(self) -> None:
        """get finds a message by id; unknown or malformed ids and mailboxes give None."""
        message = self.leave()
        self.assertEqual(self.run_(self.vm.get("1001", message.id)), message)
        for mailbox, key in (
            ("1001", "0000000000000-abcdef"),
            ("1001", "../../x"),
            ("../1001", message.id),
        ):
            self.assertIsNone(self.run_(self.vm.get(mailbox, key)))

    def test_mark(self) -> None:
        """Marking moves a message between folders and announces the change once."""
        message = self.leave()
        self.changed.clear()
        self.assertTrue(self.run_(self.vm.mark("1001", message.id, "old")))
        self.assertTrue(self.run_(self.vm.mark("1001", message.id, "old")))
        self.assertEqual(self.run_(self.vm.get("1001", message.id)).folder, "old")  # type: ignore[union-attr]
        self.assertEqual(self.changed, ["1001"])
        self.assertFalse(self.run_(self.vm.mark("1001", "0000000000000-abcdef", "old")))
        self.failureResultOf(
            Deferred.fromCoroutine(self.vm.mark("1001", message.id, "saved")),
            ValueError,
        )

    def test_delete(self) -> None:
        """Deleting removes the document and the file, once."""
        message = self.leave()
        self.changed.clear()
        self.assertTrue(self.run_(self.vm.delete("1001", message.id)))
        self.assertFalse(os.path.exists(message.path))
        self.assertEqual(self.run_(self.vm.messages("1001")), [])
        self.assertEqual(self.changed, ["1001"])
        self.assertFalse(self.run_(self.vm.delete("1001", message.id)))

    def test_forward(self) -> None:
        """Forwarding copies a message into another mailbox as new; the original stays."""
        message = self.leave()
        self.run_(self.vm.mark("1001", message.id, "old"))
        copy = self.run_(self.vm.forward("1001", message.id, "1002", by="1001"))
        assert copy is not None
        self.assertEqual(
            (copy.mailbox, copy.folder, copy.forwarded_by, copy.caller),
            ("1002", "new", "1001", "1002"),
        )
        self.assertNotEqual(copy.path, message.path)
        with open(copy.path, "rb") as a, open(message.path, "rb") as b:
            self.assertEqual(a.read(), b.read())
        self.assertEqual(self.run_(self.vm.counts("1002")), (1, 0))
        self.assertEqual(self.run_(self.vm.counts("1001")), (0, 1))
        self.assertEqual(self.changed[-1], "1002")
        self.assertIsNone(
            self.run_(self.vm.forward("1001", message.id, "1003", by="1001"))
        )
        self.assertIsNone(
            self.run_(self.vm.forward("1001", message.id, "1999", by="1001"))
        )
        self.assertEqual(
            os.listdir(os.path.join(self.spool, "1002")), [f"{copy.id}.wav"]
        )

    def test_transcript_emailed_and_search(self) -> None:
        """Transcripts and caller names are searchable, case-insensitively, per mailbox or all."""
        first = self.leave("1001", caller="2001", caller_name="Alice")
        second = self.leave("1002", caller="2002", caller_name="Carol")
        self.run_(
            self.vm.set_transcript("1001", first.id, "Call me about the Budget", 0.8)
        )
        self.run_(
            self.vm.set_transcript("1002", second.id, "budget meeting moved", None)
        )
        self.run_(self.vm.set_emailed("1001", first.id))
        stored = self.run_(self.vm.get("1001", first.id))
        assert stored is not None
        self.assertEqual(
            (stored.transcript, stored.confidence, stored.emailed),
            ("Call me about the Budget", 0.8, True),
        )
        self.assertEqual(
            [m.id for m in self.run_(self.vm.search("BUDGET"))], [second.id, first.id]
        )
        self.assertEqual(
            [m.id for m in self.run_(self.vm.search("budget", "1001"))], [first.id]
        )
        self.assertEqual(
            [m.id for m in self.run_(self.vm.search("carol"))], [second.id]
        )
        self.assertEqual([m.id for m in self.run_(self.vm.search("2001"))], [first.id])
        # Only transcript and caller count: not the file path or the folder.
        self.assertEqual(self.run_(self.vm.search("wav")), [])
        self.assertEqual(self.run_(self.vm.search("new")), [])
        self.assertEqual(self.run_(self.vm.search("  ")), [])

    def test_set_on_missing_message_is_harmless(self) -> None:
        """Transcripts and e-mail marks for a message that is gone change nothing."""
        self.run_(self.vm.set_transcript("1001", "0000000000000-abcdef", "x", 1.0))
        self.run_(self.vm.set_emailed("1001", "0000000000000-abcdef"))
        self.assertEqual(self.store.items, {})

    def test_exists(self) -> None:
        """A mailbox exists for an enabled extension that the configuration gives one."""
        self.assertTrue(self.run_(self.vm.exists("1001")))
        self.assertFalse(self.run_(self.vm.exists("1003")))  # disabled
        self.assertFalse(self.run_(self.vm.exists("1999")))  # no extension
        self.assertFalse(self.run_(self.vm.exists("../1001")))
        self.vm.mailboxes = frozenset({"1002"})
        self.assertFalse(self.run_(self.vm.exists("1001")))
        self.assertTrue(self.run_(self.vm.exists("1002")))


class GreetingTests(MailboxTestCase):
    """Recorded greetings."""

    def test_save_replace_delete(self) -> None:
        """A greeting is saved under greetings/, replaced by the next, and deleted once."""
        self.assertIsNone(self.vm.greeting_path("1001", "unavailable"))
        self.run_(
            self.vm.save_greeting(
                "1001", "unavailable", write_wav(self.vm.recording_path("1001"), 1)
            )
        )
        path = self.vm.greeting_path("1001", "unavailable")
        self.assertEqual(
            path, os.path.join(self.spool, "1001", "greetings", "unavailable.wav")
        )
        self.run_(
            self.vm.save_greeting(
                "1001", "unavailable", write_wav(self.vm.recording_path("1001"), 3)
            )
        )
        with wave.open(path) as w:  # type: ignore[arg-type]
            self.assertEqual(w.getnframes(), 24000)
        self.assertEqual(os.listdir(os.path.join(self.spool, "tmp")), [])
        self.assertIsNone(self.vm.greeting_path("1001", "busy"))
        self.assertTrue(self.run_(self.vm.delete_greeting("1001", "unavailable")))
        self.assertFalse(self.run_(self.vm.delete_greeting("1001", "unavailable")))
        self.assertIsNone(self.vm.greeting_path("1001", "unavailable"))

    def test_unknown_kind(self) -> None:
        """Only unavailable, busy and name greetings exist."""
        self.assertRaises(ValueError, self.vm.greeting_path, "1001", "../../x")
        self.failureResultOf(
            Deferred.fromCoroutine(self.vm.delete_greeting("1001", "holiday")),
            ValueError,
        )


class PinTests(MailboxTestCase):
    """PIN policy, changes, checks and lockout."""

    def test_policy(self) -> None:
        """Weak PINs are refused with a reason; good ones pass."""
        for pin in ("12a4", "123", "1234567890123", "7777", "1234", "9876", "1001"):
            self.assertIsNotNone(pin_problem(pin, "1001"), pin)
        for pin in ("4826", "1243", "0000001", "902184"):
            self.assertIsNone(pin_problem(pin, "1001"), pin)
        self.assertEqual(
            pin_problem("4826", "1001", min_length=6), "use at least 6 digits"
        )
        for _ in range(20):
            pin = generate_pin("1001")
            self.assertEqual((len(pin), pin_problem(pin, "1001")), (6, None))

    def test_set_pin(self) -> None:
        """A good PIN is stored as a hash and announced; a weak one is refused with the reason."""
        self.assertEqual(
            self.run_(self.vm.set_pin("1001", "1111")), "do not repeat one digit"
        )
        self.assertIsNone(self.run_(self.vm.set_pin("1001", "902184")))
        stored = self.store.extensions["1001"].pin_hash
        self.assertTrue(verify_password("902184", stored))
        self.assertNotIn("902184", stored)
        self.assertEqual(self.extension_changes, ["1001"])
        self.assertEqual(
            self.run_(self.vm.set_pin("1999", "902184")), "no such mailbox"
        )
        self.assertEqual(
            self.run_(self.vm.check_pin("1001", "902184", "192.0.2.1")), "ok"
        )

    def test_check(self) -> None:
        """The right PIN is ok; a wrong one, or any for an unknown mailbox, is wrong and audited."""
        self.assertEqual(
            self.run_(self.vm.check_pin("1001", "4826", "192.0.2.1")), "ok"
        )
        self.assertEqual(
            self.run_(self.vm.check_pin("1001", "0000", "192.0.2.1")), "wrong"
        )
        self.assertEqual(
            self.run_(self.vm.check_pin("1999", "4826", "192.0.2.2")), "wrong"
        )
        self.assertEqual(self.run_(self.vm.check_pin("1003", "", "192.0.2.3")), "wrong")
        kinds = [(e.kind, e.subject, e.source) for e in self.store.audit]
        self.assertEqual(
            kinds,
            [
                ("voicemail.pin.failure", "1001", "192.0.2.1"),
                ("voicemail.pin.failure", "1999", "192.0.2.2"),
                ("voicemail.pin.failure", "1003", "192.0.2.3"),
            ],
        )

    def test_lockout_by_mailbox(self) -> None:
        """Guesses from many sources lock the mailbox; the right PIN is refused until it ends."""
        results = [
            self.run_(self.vm.check_pin("1001", "0000", f"192.0.2.{i}"))
            for i in range(3)
        ]
        self.assertEqual(results, ["wrong", "wrong", "locked"])
        self.assertEqual(
            self.run_(self.vm.check_pin("1001", "4826", "198.51.100.1")), "locked"
        )
        self.assertEqual(self.store.audit[-1].kind, "voicemail.lockout")
        self.assertEqual(self.store.audit[-1].detail, "30s")
        self.clock.advance(31)
        self.assertEqual(
            self.run_(self.vm.check_pin("1001", "4826", "198.51.100.1")), "ok"
        )

    def test_lockout_by_source(self) -> None:
        """One source guessing across mailboxes is locked out of every mailbox."""
        for number in ("1001", "1002", "1999"):
            self.run_(self.vm.check_pin(number, "0000", "203.0.113.9"))
        self.assertEqual(
            self.run_(self.vm.check_pin("1002", "4826", "203.0.113.9")), "locked"
        )
        self.assertEqual(
            self.run_(self.vm.check_pin("1002", "4826", "203.0.113.10")), "ok"
        )

    def test_success_forgets_failures(self) -> None:
        """A right PIN clears earlier failures of the mailbox and source."""
        for _ in range(2):
            self.run_(self.vm.check_pin("1001", "0000", "192.0.2.1"))
        self.assertEqual(
            self.run_(self.vm.check_pin("1001", "4826", "192.0.2.1")), "ok"
        )
        for _ in range(2):
            self.assertEqual(
                self.run_(self.vm.check_pin("1001", "0000", "192.0.2.1")), "wrong"
            )


class RecoveryTests(MailboxTestCase):
    """What recover() does with a spool left by a crash."""

    def test_crash_leftovers(self) -> None:
        """Temp files go; an orphan WAV is adopted as new; messages with metadata stay as they were."""
        kept = self.leave()
        self.run_(self.vm.mark("1001", kept.id, "old"))
        # A recording cut short by the crash, and one finished but never delivered.
        temp = os.path.join(self.spool, "tmp")
        with open(os.path.join(temp, ".1001.abcd.wav.0123.part"), "wb") as f:
            f.write(b"RIFF....WAVEfmt ")
        write_wav(os.path.join(temp, "1001.abcd.wav"))
        # A message renamed into place whose metadata was never written.
        orphan_id = f"{int((NOW + 60) * 1000):013d}-a1b2c3"
        write_wav(os.path.join(self.spool, "1002", f"{orphan_id}.wav"), 2.5)
        # An interrupted copy (forward) and stray files that are no messages.
        write_wav(os.path.join(self.spool, "1002", f".{orphan_id}.wav.ffff.part"))
        write_wav(os.path.join(self.spool, "1002", "greetings", "busy.wav"))
        write_wav(os.path.join(self.spool, "notes", "x.wav"))
        self.changed.clear()

        self.assertEqual(self.run_(self.vm.recover()), 1)
        self.assertEqual(os.listdir(temp), [])
        self.assertEqual(
            sorted(os.listdir(os.path.join(self.spool, "1002"))),
            [f"{orphan_id}.wav", "greetings"],
        )
        adopted = self.run_(self.vm.get("1002", orphan_id))
        self.assertEqual(
            adopted,
            Message(
                orphan_id,
                "1002",
                "new",
                "",
                "",
                NOW + 60,
                2.5,
                os.path.join(self.spool, "1002", f"{orphan_id}.wav"),
            ),
        )
        self.assertEqual(
            self.run_(self.vm.get("1001", kept.id)),
            Message(**{**kept.to_json(), "folder": "old"}),
        )
        self.assertEqual(self.changed, ["1002"])
        self.assertIsNotNone(self.vm.greeting_path("1002", "busy"))
        # Nothing left to do the second time.
        self.assertEqual(self.run_(self.vm.recover()), 0)

    def test_empty_spool(self) -> None:
        """A spool that does not exist yet is made, with nothing to adopt."""
        self.assertEqual(self.run_(self.vm.recover()), 0)
        self.assertTrue(os.path.isdir(os.path.join(self.spool, "tmp")))

    def test_failed_metadata_write_is_recovered(self) -> None:
        """A deposit whose metadata write fails leaves the audio, which recover adopts."""
        recorded = write_wav(self.vm.recording_path("1001"), 1.0)

        def broken(*args: Any) -> Deferred[None]:
            raise OSError("database gone")

        self.store.put_item = broken  # type: ignore[method-assign,assignment]
        self.failureResultOf(
            Deferred.fromCoroutine(
                self.vm.deliver(
                    "1001", recorded, caller="1002", caller_name="", duration=1.0
                )
            ),
            OSError,
        )
        del self.store.put_item
        self.assertEqual(self.run_(self.vm.recover()), 1)
        self.assertEqual(self.run_(self.vm.counts("1001")), (1, 0))
