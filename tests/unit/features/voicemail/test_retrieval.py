"""
Tests for :mod:`pbx.features.voicemail.retrieval`: listening to messages.

The caller is scripted (:class:`support.voicemail.Caller`): keys are
pressed when a given prompt starts; what was played is checked by prompt
id, and the mailbox by its contents.  Dates are read in UTC.
"""

from __future__ import annotations

import os
import wave
from datetime import UTC
from types import SimpleNamespace
from typing import Any

from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pbx.features.voicemail.retrieval import Retrieval
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import HungUp
from pbx.testing import FakePBX

from support.voicemail import (
    Caller,
    FakeVoicemail,
    Writers,
    real_voicemail,
    real_writer,
)

#: FakeVoicemail's messages arrive on Friday 2024-01-05 at 15:00 UTC, from 1002.
ENVELOPE = ["vm/received", "dates/friday", "dates/january", "dates/5th", "digits/3", "time/pm",
            "vm/from", "digits/1", "digits/0", "digits/0", "digits/2"]
MESSAGE_MENU = ["vm/message-menu", "vm/message-menu-more"]


class RetrievalTestCase(SynchronousTestCase):
    """A Retrieval on a fake mailbox store; the caller is extension 1001 (PIN 4826)."""

    def setUp(self) -> None:
        """Mailboxes 1001 and 1002, both empty."""
        self.caller = Caller(caller="1001", caller_name="Alice", callee="*97")
        self.voicemail: Any = FakeVoicemail({"1001": "4826", "1002": "9371"})
        self.pbx = FakePBX(clock=self.caller.clock, talk=0.0)
        self.writers = Writers()
        self.options = SimpleNamespace(pin_attempts=3, max_seconds=60.0, min_seconds=1.0,
                                       silence_seconds=3.0)

    def tearDown(self) -> None:
        """No timer is left behind, and the caller's whole script ran."""
        self.assertEqual(self.caller.clock.getDelayedCalls(), [])
        self.assertEqual(self.caller.unused(), [])

    def app(self) -> Retrieval:
        """The application under test."""
        return Retrieval(self.voicemail, pbx=self.pbx, options=self.options,
                         writer=self.writers, tz=UTC)

    def start(self, args: Any = None) -> Deferred[Any]:
        """Run the call to its end."""
        return self.caller.run(self.app(), args or {})

    def finish(self, args: Any = None) -> None:
        """Run the call; it must end normally."""
        self.successResultOf(self.start(args))

    def login(self, pin: str = "4826") -> Caller:
        """Enter ``pin`` at the password prompt."""
        return self.caller.press_on("vm/enter-password", pin + "#")

    def after(self, item: str) -> list[str]:
        """What was played after the first ``item``."""
        played = self.caller.played
        return played[played.index(item) + 1:]

    def folder(self, mailbox: str = "1001") -> dict[str, str]:
        """Message id -> folder."""
        return {m.id: m.folder for m in self.voicemail.store[mailbox]}


class LoginTests(RetrievalTestCase):
    """The PIN, the lockout, and mailboxes that do not exist."""

    def test_interface(self) -> None:
        """Retrieval is an IDialplanApplication named "voicemail-main"."""
        app = self.app()
        self.assertTrue(verifyObject(IDialplanApplication, app))
        self.assertEqual(app.name, "voicemail-main")

    def test_own_mailbox(self) -> None:
        """The caller's own mailbox: only the PIN is asked, and checked with the caller as source."""
        self.login().press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.caller.played,
                         ["vm/enter-password", "vm/no-messages", "vm/main-menu", "vm/goodbye"])
        self.assertEqual(self.voicemail.checks, [("1001", "4826", "1001")])
        self.assertEqual(self.caller.hangups, ["normal"])

    def test_wrong_pin_three_times(self) -> None:
        """Three wrong PINs: "incorrect" after each, then goodbye and hang-up."""
        for _ in range(3):
            self.login("1111")
        self.finish()
        self.assertEqual(self.caller.played, [
            "vm/enter-password", "vm/password-incorrect",
            "vm/enter-password", "vm/password-incorrect",
            "vm/enter-password", "vm/password-incorrect", "vm/goodbye"])
        self.assertEqual(len(self.voicemail.checks), 3)
        self.assertEqual(self.caller.hangups, ["normal"])

    def test_wrong_then_right(self) -> None:
        """A wrong PIN, then the right one: logged in."""
        self.login("1111")
        self.login().press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.caller.played[:4], [
            "vm/enter-password", "vm/password-incorrect", "vm/enter-password", "vm/no-messages"])

    def test_pin_attempts_option(self) -> None:
        """pin_attempts 1: the first wrong PIN ends the call."""
        self.options.pin_attempts = 1
        self.login("1111")
        self.finish()
        self.assertEqual(self.caller.played,
                         ["vm/enter-password", "vm/password-incorrect", "vm/goodbye"])

    def test_locked(self) -> None:
        """A locked mailbox: "locked out", hang-up."""
        self.voicemail.locked.add("1001")
        self.login()
        self.finish()
        self.assertEqual(self.caller.played, ["vm/enter-password", "vm/locked-out"])
        self.assertEqual(self.caller.hangups, ["normal"])

    def test_no_pin_entered(self) -> None:
        """No PIN entered three times: goodbye, and no PIN was checked (no lockout strike)."""
        self.finish()
        self.assertEqual(self.caller.played, ["vm/enter-password"] * 3 + ["vm/goodbye"])
        self.assertEqual(self.voicemail.checks, [])

    def test_ask_mailbox(self) -> None:
        """ask_mailbox: the mailbox number first, then its PIN (a digit pressed during a prompt counts)."""
        self.caller = Caller(caller="2000", callee="*98")
        self.pbx = FakePBX(clock=self.caller.clock, talk=0.0)
        self.caller.press_on("vm/enter-mailbox", "1002#")
        self.caller.press_on("vm/enter-password", "9371#").press_on("vm/main-menu", "#")
        self.finish({"ask_mailbox": True})
        self.assertEqual(self.voicemail.checks, [("1002", "9371", "2000")])

    def test_unknown_caller_asks_mailbox(self) -> None:
        """A caller without a number is asked for the mailbox; the source is "unknown"."""
        self.caller = Caller(caller="", callee="*97")
        self.pbx = FakePBX(clock=self.caller.clock, talk=0.0)
        self.caller.press_on("vm/enter-mailbox", "1001#")
        self.login().press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.voicemail.checks, [("1001", "4826", "unknown")])

    def run_ask(self, mailbox: str) -> list[str]:
        """Three tries of ``mailbox`` with a wrong PIN; what was played."""
        self.caller = Caller(caller="2000", callee="*98")
        self.pbx = FakePBX(clock=self.caller.clock, talk=0.0)
        for _ in range(3):
            self.caller.press_on("vm/enter-mailbox", mailbox + "#")
            self.login("1111")
        self.finish({"ask_mailbox": True})
        self.assertEqual(self.caller.hangups, ["normal"])
        self.assertEqual(self.caller.clock.getDelayedCalls(), [])
        return self.caller.played

    def test_unknown_mailbox_like_wrong_pin(self) -> None:
        """A mailbox that does not exist is answered exactly as a wrong PIN is."""
        self.assertEqual(self.run_ask("1999"), self.run_ask("1001"))
        self.assertEqual([c[0] for c in self.voicemail.checks], ["1999"] * 3 + ["1001"] * 3)


class CountsAndMenuTests(RetrievalTestCase):
    """The announcement after login and the main menu."""

    def test_counts(self) -> None:
        """Two new and one old: "you have two new messages and one old message"."""
        self.voicemail.add("1001")
        self.voicemail.add("1001")
        self.voicemail.add("1001", folder="old")
        self.login().press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after("vm/enter-password"), [
            "vm/you-have", "digits/2", "vm/new", "vm/messages", "vm/and",
            "digits/1", "vm/old", "vm/message", "vm/main-menu", "vm/goodbye"])

    def test_only_old(self) -> None:
        """Only old messages: just their count."""
        for _ in range(12):
            self.voicemail.add("1001", folder="old")
        self.login().press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after("vm/enter-password")[:4],
                         ["vm/you-have", "numbers/12", "vm/old", "vm/messages"])

    def test_key_during_counts(self) -> None:
        """A key pressed during the announcement is the main-menu choice."""
        self.voicemail.add("1001")
        self.login().press_on("vm/you-have", "#")
        self.finish()
        self.assertNotIn("vm/main-menu", self.caller.played)
        self.assertEqual(self.caller.played[-1], "vm/goodbye")

    def test_menu_timeouts(self) -> None:
        """The main menu unanswered three times: goodbye and hang-up."""
        self.login()
        self.finish()
        self.assertEqual(self.after("vm/no-messages"), ["vm/main-menu"] * 3 + ["vm/goodbye"])
        self.assertEqual(self.caller.hangups, ["normal"])

    def test_invalid_key(self) -> None:
        """A key with no meaning: "not a valid choice", then the menu again."""
        self.login().press_on("vm/main-menu", "7").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after("vm/no-messages"),
                         ["vm/main-menu", "vm/invalid", "vm/main-menu", "vm/goodbye"])

    def test_empty_folder(self) -> None:
        """1 with no new messages: "you have zero new messages", back to the main menu."""
        self.login().press_on("vm/main-menu", "1").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after("vm/no-messages"), [
            "vm/main-menu", "vm/you-have", "digits/0", "vm/new", "vm/messages",
            "vm/main-menu", "vm/goodbye"])


class MessageTests(RetrievalTestCase):
    """Playing, saving, deleting, forwarding and calling back."""

    def setUp(self) -> None:
        """Two new messages and one old one in 1001."""
        super().setUp()
        self.first = self.voicemail.add("1001")
        self.second = self.voicemail.add("1001", caller="anonymous")
        self.old = self.voicemail.add("1001", folder="old")
        self.login()

    def test_envelope_then_audio(self) -> None:
        """1: the envelope (received when, from whom), the audio, then the message menu."""
        self.caller.press_on("vm/main-menu", "1")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after("vm/main-menu")[:len(ENVELOPE) + 3],
                         [*ENVELOPE, self.first.path, *MESSAGE_MENU])

    def test_unknown_caller(self) -> None:
        """A caller that is not a number is "an unknown caller"."""
        self.caller.press_on("vm/main-menu", "1")
        self.caller.press_on("vm/message-menu", "6")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        played = self.after(self.first.path)
        start = played.index("vm/received")
        self.assertEqual(played[start + 6:start + 9],
                         ["vm/from", "vm/unknown-caller", self.second.path])

    def test_save(self) -> None:
        """9: "message saved", the message is old, and the next one plays."""
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "9")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after(self.first.path)[2:4], ["vm/saved", "vm/received"])
        self.assertEqual(self.folder()[self.first.id], "old")

    def test_save_last(self) -> None:
        """9 on the last message: saved, "no more messages", the main menu."""
        self.caller.press_on("vm/main-menu", "2").press_on("vm/message-menu", "9")
        self.caller.press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after(self.old.path),
                         [*MESSAGE_MENU, "vm/saved", "vm/no-more-messages", "vm/main-menu",
                          "vm/goodbye"])

    def test_delete(self) -> None:
        """7: "message deleted", gone from the mailbox, and the next one plays."""
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "7")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after(self.first.path)[2:4], ["vm/deleted", "vm/received"])
        self.assertNotIn(self.first.id, self.folder())
        self.assertEqual(self.folder()[self.second.id], "old")

    def test_key_during_audio(self) -> None:
        """7 pressed while the message plays deletes it at once."""
        self.caller.press_on("vm/main-menu", "1").press_on(self.first.path, "7")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after(self.first.path)[0], "vm/deleted")
        self.assertNotIn(self.first.id, self.folder())

    def test_heard_marked_old_on_next(self) -> None:
        """6 after listening: the heard message is old; the next plays."""
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "6")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.folder(), {self.first.id: "old", self.second.id: "old",
                                         self.old.id: "old"})

    def test_heard_marked_old_on_hang_up(self) -> None:
        """Hanging up after listening marks the message heard (the call ends with HungUp)."""
        self.caller.press_on("vm/main-menu", "1").on("vm/message-menu", ("hangup",))
        self.failureResultOf(self.start(), HungUp)
        self.assertEqual(self.folder()[self.first.id], "old")
        self.assertEqual(self.folder()[self.second.id], "new")

    def test_skipped_in_envelope_stays_new(self) -> None:
        """6 during the envelope: the message was not heard and stays new."""
        self.caller.press_on("vm/main-menu", "1").press_on("vm/received", "6")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.folder()[self.first.id], "new")
        self.assertEqual(self.folder()[self.second.id], "old")

    def test_pound_skips_to_menu(self) -> None:
        """# during the audio skips to the message menu; the message counts as heard."""
        self.caller.press_on("vm/main-menu", "1").press_on(self.first.path, "#")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after(self.first.path)[:2], MESSAGE_MENU)
        self.assertEqual(self.folder()[self.first.id], "old")

    def test_replay_and_envelope(self) -> None:
        """5 plays the audio again; 3 the envelope alone."""
        self.caller.press_on("vm/main-menu", "1")
        for key in "53*":
            self.caller.press_on("vm/message-menu", key)
        self.caller.press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after("vm/main-menu")[:len(ENVELOPE) + 8 + len(ENVELOPE)], [
            *ENVELOPE, self.first.path, *MESSAGE_MENU, self.first.path, *MESSAGE_MENU,
            *ENVELOPE, *MESSAGE_MENU])

    def test_invalid_key_during_replay(self) -> None:
        """A key with no meaning in the message menu, pressed during a replay: "not a valid choice"."""
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "5")
        self.caller.on(self.first.path).press_on(self.first.path, "1")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after(self.first.path)[2:6],
                         [self.first.path, "vm/invalid", *MESSAGE_MENU])

    def test_previous_and_first(self) -> None:
        """4 on the first message: "this is the first message"; after 6, 4 goes back."""
        self.caller.press_on("vm/main-menu", "1")
        for key in "464*":
            self.caller.press_on("vm/message-menu", key)
        self.caller.press_on("vm/main-menu", "#")
        self.finish()
        paths = [p for p in self.caller.played if p.endswith(".wav")]
        self.assertEqual(paths, [self.first.path, self.second.path, self.first.path])
        self.assertIn("vm/first-message", self.caller.played)

    def test_next_at_end(self) -> None:
        """6 on the last message: "no more messages", and the message menu again."""
        self.caller.press_on("vm/main-menu", "2").press_on("vm/message-menu", "6")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after(self.old.path)[2:5], ["vm/no-more-messages", *MESSAGE_MENU])

    def test_message_menu_timeouts(self) -> None:
        """The message menu unanswered three times: goodbye; the heard message is old."""
        self.caller.press_on("vm/main-menu", "1")
        self.finish()
        self.assertEqual(self.after(self.first.path), MESSAGE_MENU * 3 + ["vm/goodbye"])
        self.assertEqual(self.folder()[self.first.id], "old")

    def test_forward(self) -> None:
        """8 then a mailbox number: a copy arrives there as new; "message forwarded"."""
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "8")
        self.caller.press_on("vm/forward-to", "1002#")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertIn("vm/forwarded", self.caller.played)
        self.assertEqual(self.voicemail.forwards, [("1001", self.first.id, "1002", "1001")])
        [copy] = self.voicemail.store["1002"]
        self.assertEqual((copy.folder, copy.caller), ("new", "1002"))

    def test_forward_unknown(self) -> None:
        """8 to a mailbox that does not exist: "there is no such mailbox", nothing copied."""
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "8")
        self.caller.press_on("vm/forward-to", "1999#")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertIn("vm/no-such-mailbox", self.caller.played)
        self.assertEqual(self.voicemail.forwards, [])

    def test_call_back(self) -> None:
        """2: the caller is dialled; when that call ends, the message menu comes back."""
        self.pbx.talk = 30.0
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "2")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.pbx.dialled, ["1002"])
        self.assertEqual(self.after(self.first.path), [
            *MESSAGE_MENU, *MESSAGE_MENU, "vm/main-menu", "vm/goodbye"])
        self.assertGreater(self.caller.clock.seconds(), 30.0)

    def test_call_back_busy(self) -> None:
        """2 when the caller is busy: "busy", then the message menu."""
        self.pbx.outcome = "busy"
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "2")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertEqual(self.after(self.first.path)[2:5], ["general/busy", *MESSAGE_MENU])

    def test_call_back_hang_up(self) -> None:
        """Hanging up during the call back ends the application with HungUp; the message is heard."""
        self.pbx.hang_up = True
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "2")
        self.failureResultOf(self.start(), HungUp)
        self.assertEqual(self.folder()[self.first.id], "old")

    def test_call_back_unknown(self) -> None:
        """2 on a message from an unknown caller: "not known", nothing dialled."""
        self.caller.press_on("vm/main-menu", "1").press_on("vm/message-menu", "6")
        self.caller.press_on("vm/message-menu", "2")
        self.caller.press_on("vm/message-menu", "*").press_on("vm/main-menu", "#")
        self.finish()
        self.assertIn("vm/cannot-call-back", self.caller.played)
        self.assertEqual(self.pbx.dialled, [])


class OptionsTests(RetrievalTestCase):
    """The mailbox options: greetings and the PIN."""

    def setUp(self) -> None:
        """Logged in, in the options menu."""
        super().setUp()
        self.login().press_on("vm/main-menu", "0")

    def leave(self) -> None:
        """Back to the main menu, then goodbye."""
        self.caller.press_on("vm/greeting-menu", "*").press_on("vm/main-menu", "#")

    def test_change_pin(self) -> None:
        """An easy PIN is refused, a mismatch is told, then the PIN is changed."""
        self.caller.press_on("vm/greeting-menu", "5")
        for first, second in (("1234", "1234"), ("5791", "5792"), ("5791", "5791")):
            self.caller.press_on("vm/new-pin", first + "#")
            self.caller.press_on("vm/reenter-pin", second + "#")
        self.leave()
        self.finish()
        self.assertEqual(self.after("vm/greeting-menu")[:9], [
            "vm/new-pin", "vm/reenter-pin", "vm/pin-invalid",
            "vm/new-pin", "vm/reenter-pin", "vm/pin-mismatch",
            "vm/new-pin", "vm/reenter-pin", "vm/pin-changed"])
        self.assertEqual(self.voicemail.pins["1001"], "5791")

    def test_change_pin_gives_up(self) -> None:
        """Three failed tries: back to the options menu, the PIN unchanged."""
        self.caller.press_on("vm/greeting-menu", "5")
        for _ in range(3):
            self.caller.press_on("vm/new-pin", "1111#")
            self.caller.press_on("vm/reenter-pin", "1111#")
        self.leave()
        self.finish()
        self.assertEqual(self.after("vm/greeting-menu")[9], "vm/greeting-menu")
        self.assertEqual(self.voicemail.pins["1001"], "4826")

    def test_record_greetings(self) -> None:
        """1, 2 and 3 record the unavailable, busy and name greetings after the beep."""
        for key in "123":
            self.caller.press_on("vm/greeting-menu", key)
            self.caller.after_beep(2.0, ("press", "#"))
        self.leave()
        self.finish()
        self.assertEqual(sorted(k for _, k in self.voicemail.greetings),
                         ["busy", "name", "unavailable"])
        self.assertEqual(self.caller.played.count("vm/recording-saved"), 3)
        self.assertEqual(self.after("vm/greeting-menu")[:3],
                         ["vm/record-after-beep", "general/beep", "vm/recording-saved"])

    def test_greeting_too_short(self) -> None:
        """A greeting with nothing said is not saved: "nothing was recorded"."""
        self.caller.press_on("vm/greeting-menu", "1")
        self.caller.after_beep(0.2, ("press", "#"))
        self.leave()
        self.finish()
        self.assertEqual(self.voicemail.greetings, {})
        self.assertIn("vm/not-recorded", self.caller.played)

    def test_options_timeout(self) -> None:
        """The options menu unanswered three times: goodbye."""
        self.finish()
        self.assertEqual(self.after("vm/main-menu"), ["vm/greeting-menu"] * 3 + ["vm/goodbye"])


class RealVoicemailTests(SynchronousTestCase):
    """Retrieval on the real Voicemail (MemoryStore, hashed PINs, a temporary spool)."""

    def deliver(self, voicemail: Any, mailbox: str) -> Any:
        """Put a one-second WAV in ``mailbox`` as a new message."""
        path = voicemail.recording_path(mailbox)
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00\x10" * 8000)
        return self.successResultOf(Deferred.fromCoroutine(voicemail.deliver(
            mailbox, path, caller="1002", caller_name="Bob", duration=1.0)))

    def test_listen_and_save(self) -> None:
        """Log in with the real PIN, hear the message from the spool, save it: counts (0, 1)."""
        caller = Caller(caller="1001")
        voicemail = real_voicemail(caller.clock, self.mktemp(), {"1001": "4826"})
        message = self.deliver(voicemail, "1001")
        caller.press_on("vm/enter-password", "4826#").press_on("vm/main-menu", "1")
        caller.press_on("vm/message-menu", "9").press_on("vm/main-menu", "#")
        app = Retrieval(voicemail, pbx=FakePBX(clock=caller.clock, talk=0.0), options=SimpleNamespace(),
                        tz=UTC)
        self.successResultOf(caller.run(app, {}))
        self.assertIn(message.path, caller.played)
        self.assertTrue(os.path.isfile(message.path))
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(voicemail.counts("1001"))),
                         (0, 1))
        self.assertEqual(caller.clock.getDelayedCalls(), [])

    def test_record_greeting(self) -> None:
        """A greeting recorded through the options menu becomes the mailbox's greeting file."""
        caller = Caller(caller="1001")
        voicemail = real_voicemail(caller.clock, self.mktemp(), {"1001": "4826"})
        caller.press_on("vm/enter-password", "4826#").press_on("vm/main-menu", "0")
        caller.press_on("vm/greeting-menu", "2").after_beep(1.5, ("press", "#"))
        caller.press_on("vm/greeting-menu", "*").press_on("vm/main-menu", "#")
        app = Retrieval(voicemail, pbx=FakePBX(clock=caller.clock, talk=0.0), options=SimpleNamespace(),
                        writer=real_writer(caller.clock))
        self.successResultOf(caller.run(app, {}))
        path = voicemail.greeting_path("1001", "busy")
        self.assertIsNotNone(path)
        with wave.open(path, "rb") as w:
            self.assertLessEqual(abs(w.getnframes() / w.getframerate() - 1.5), 0.05)

    def run_wrong(self, mailbox: str) -> list[str]:
        """Three tries of ``mailbox`` with a wrong PIN on a fresh real Voicemail."""
        caller = Caller(caller="2000")
        voicemail = real_voicemail(caller.clock, self.mktemp(), {"1001": "4826"})
        for _ in range(3):
            caller.press_on("vm/enter-mailbox", mailbox + "#")
            caller.press_on("vm/enter-password", "1111#")
        app = Retrieval(voicemail, pbx=FakePBX(clock=caller.clock, talk=0.0), options=SimpleNamespace())
        self.successResultOf(caller.run(app, {"ask_mailbox": True}))
        self.assertEqual(caller.hangups, ["normal"])
        return caller.played

    def test_unknown_mailbox_like_wrong_pin(self) -> None:
        """With the real check_pin too, a mailbox that does not exist sounds like a wrong PIN."""
        self.assertEqual(self.run_wrong("1999"), self.run_wrong("1001"))
