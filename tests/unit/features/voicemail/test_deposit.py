"""
Tests for :mod:`pbx.features.voicemail.deposit`: leaving a message.

The caller is scripted (:class:`support.voicemail.Caller`): keys, speech
and hang-ups happen when a given prompt starts; what was played is checked
by prompt id, and the mailbox by its contents.
"""

from __future__ import annotations

import os
import wave
from types import SimpleNamespace
from typing import Any

import numpy as np

from zope.interface.verify import verifyObject

from twisted.internet.defer import fail
from twisted.trial.unittest import SynchronousTestCase

from pbx.features.voicemail.deposit import (
    LEAD_SECONDS,
    TAIL_SECONDS,
    Deposit,
    SpeechTake,
    option,
)
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import HungUp
from pbx.testing import FakePBX

from support.voicemail import (
    TICK,
    Caller,
    FakeVoicemail,
    FakeWriter,
    Writers,
    real_voicemail,
    real_writer,
)

GREETING_1001 = ["vm/unavailable", "digits/1", "digits/0", "digits/0", "digits/1"]


class DepositTestCase(SynchronousTestCase):
    """A Deposit on a fake mailbox store, one scripted caller."""

    def setUp(self) -> None:
        """Mailboxes 1001 and 1002; no operator unless a test sets one."""
        self.caller = Caller()
        self.voicemail: Any = FakeVoicemail({"1001": "4826", "1002": "9371"})
        self.pbx = FakePBX(clock=self.caller.clock, talk=0.0)
        self.writers = Writers()
        self.deposited: list[Any] = []
        self.options = SimpleNamespace(max_seconds=180.0, min_seconds=1.0, silence_seconds=5.0,
                                       operator="")

    def tearDown(self) -> None:
        """No timer is left behind, and the caller's whole script ran."""
        self.assertEqual(self.caller.clock.getDelayedCalls(), [])
        self.assertEqual(self.caller.unused(), [])

    def app(self, **kwargs: Any) -> Deposit:
        """The application under test."""
        return Deposit(self.voicemail, pbx=self.pbx, options=self.options,
                       on_deposit=self.deposited.append, writer=self.writers, **kwargs)

    def run_app(self, reason: str = "no_answer", mailbox: str = "1001") -> Any:
        """Run the call to the end; its result."""
        d = self.caller.run(self.app(), {"mailbox": mailbox, "reason": reason})
        return self.successResultOf(d)

    def messages(self, mailbox: str = "1001") -> list[Any]:
        """What the mailbox holds."""
        return list(self.voicemail.store[mailbox])


class GreetingTests(DepositTestCase):
    """What the caller hears before the beep."""

    def test_interface(self) -> None:
        """Deposit is an IDialplanApplication named "voicemail"."""
        app = self.app()
        self.assertTrue(verifyObject(IDialplanApplication, app))
        self.assertEqual(app.name, "voicemail")

    def test_no_mailbox(self) -> None:
        """A mailbox that does not exist: general/not-available, then hang-up, nothing recorded."""
        self.run_app(mailbox="1999")
        self.assertEqual(self.caller.played, ["general/not-available"])
        self.assertEqual(self.caller.hangups, ["normal"])
        self.assertEqual(self.writers.made, [])

    def test_unavailable_default(self) -> None:
        """No answer, no greeting recorded: the number digit by digit, "is not available", leave a message, beep."""
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app(reason="no_answer")
        self.assertEqual(self.caller.played[:8], [
            *GREETING_1001, "vm/is-unavailable", "vm/leave-message", "general/beep"])

    def test_busy_default(self) -> None:
        """Busy: the standard greeting says "is on the phone"."""
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app(reason="busy")
        self.assertEqual(self.caller.played[:8], [
            *GREETING_1001, "vm/is-busy", "vm/leave-message", "general/beep"])

    def test_own_busy_greeting(self) -> None:
        """Busy with a recorded busy greeting: that recording alone, then the beep."""
        self.voicemail.greetings[("1001", "busy")] = "/spool/1001/greetings/busy.wav"
        self.voicemail.greetings[("1001", "unavailable")] = "/spool/1001/greetings/unavailable.wav"
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app(reason="busy")
        self.assertEqual(self.caller.played[:2],
                         ["/spool/1001/greetings/busy.wav", "general/beep"])

    def test_own_unavailable_greeting(self) -> None:
        """Not answered with a recorded unavailable greeting: that recording (not the busy one)."""
        self.voicemail.greetings[("1001", "busy")] = "/spool/1001/greetings/busy.wav"
        self.voicemail.greetings[("1001", "unavailable")] = "/spool/1001/greetings/unavailable.wav"
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app(reason="dnd")
        self.assertEqual(self.caller.played[:2],
                         ["/spool/1001/greetings/unavailable.wav", "general/beep"])

    def test_busy_greeting_only_for_busy(self) -> None:
        """Only a busy greeting recorded: a call not answered gets the standard unavailable one."""
        self.voicemail.greetings[("1001", "busy")] = "/spool/1001/greetings/busy.wav"
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app(reason="no_answer")
        self.assertEqual(self.caller.played[:6], [*GREETING_1001, "vm/is-unavailable"])

    def test_recorded_name(self) -> None:
        """A recorded name replaces the digits in the standard greeting."""
        self.voicemail.greetings[("1001", "name")] = "/spool/1001/greetings/name.wav"
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app(reason="busy")
        self.assertEqual(self.caller.played[:5], [
            "vm/unavailable", "/spool/1001/greetings/name.wav", "vm/is-busy",
            "vm/leave-message", "general/beep"])

    def test_pound_skips_greeting(self) -> None:
        """# during the greeting goes straight to the beep."""
        self.caller.press_on("vm/unavailable", "#")
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app()
        beep = dict((item, at) for at, item in self.caller.timeline)["general/beep"]
        self.assertLess(beep, 2 * TICK)
        self.assertEqual(len(self.messages()), 1)

    def test_star_skips_greeting(self) -> None:
        """* during the greeting also goes straight to the beep."""
        self.caller.press_on("vm/unavailable", "*")
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app()
        beep = dict((item, at) for at, item in self.caller.timeline)["general/beep"]
        self.assertLess(beep, 2 * TICK)


class RecordingTests(DepositTestCase):
    """What is kept as a message."""

    def test_message_delivered(self) -> None:
        """Speech ended by #: delivered with the caller's number, name and the length; saved, goodbye, hang-up."""
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app()
        [message] = self.messages()
        self.assertEqual((message.mailbox, message.folder, message.caller, message.caller_name),
                         ("1001", "new", "1002", "Bob"))
        self.assertLessEqual(abs(message.duration - 2.0), 0.05)
        self.assertEqual(self.deposited, [message])
        self.assertEqual(self.caller.played[-2:], ["vm/saved", "vm/goodbye"])
        self.assertEqual(self.caller.hangups, ["normal"])
        [writer] = self.writers.made
        self.assertEqual(writer.ended, "closed")
        self.assertTrue(writer.path.startswith("/spool/tmp/1001."))

    def test_too_short(self) -> None:
        """Half a second of speech (min_seconds 1): nothing delivered, the file dropped, "nothing was recorded"."""
        self.caller.after_beep(0.5, ("press", "#"))
        self.run_app()
        self.assertEqual(self.messages(), [])
        self.assertEqual(self.deposited, [])
        self.assertEqual(self.writers.made[0].ended, "aborted")
        self.assertEqual(self.caller.played[-2:], ["vm/not-recorded", "vm/goodbye"])

    def test_only_silence(self) -> None:
        """A caller who says nothing: the silence timeout ends the recording and nothing is delivered."""
        self.run_app()
        self.assertEqual(self.messages(), [])
        self.assertEqual(self.writers.made[0].ended, "aborted")

    def test_trailing_silence_trimmed(self) -> None:
        """Speech ended by the silence timeout: the silence is trimmed to TAIL_SECONDS, and so is the length."""
        self.caller.after_beep(3.0)
        self.run_app()
        [message] = self.messages()
        self.assertLessEqual(abs(message.duration - (3.0 + TAIL_SECONDS)), 0.05)
        self.assertLessEqual(abs(self.writers.made[0].seconds - message.duration), 0.001)

    def test_short_speech_then_silence(self) -> None:
        """0.6 s of speech then the silence timeout: the 5 s of silence do not make it long enough."""
        self.caller.after_beep(0.6)
        self.run_app()
        self.assertEqual(self.messages(), [])

    def test_hang_up_keeps_message(self) -> None:
        """Hanging up after speaking delivers what was said; nothing more is played."""
        self.caller.after_beep(3.0, ("hangup",), silence=1.0)
        self.run_app()
        [message] = self.messages()
        self.assertLessEqual(abs(message.duration - (3.0 + TAIL_SECONDS)), 0.05)
        self.assertEqual(self.deposited, [message])
        self.assertEqual(self.caller.played[-1], "general/beep")
        self.assertEqual(self.caller.hangups, [])

    def test_hang_up_short(self) -> None:
        """Hanging up right after the beep leaves no message."""
        self.caller.after_beep(0.3, ("hangup",))
        self.run_app()
        self.assertEqual(self.messages(), [])

    def test_max_seconds(self) -> None:
        """A caller who talks on is cut at max_seconds; the message is kept."""
        self.options.max_seconds = 5.0
        self.caller.after_beep(8.0)
        self.run_app()
        [message] = self.messages()
        self.assertLessEqual(abs(message.duration - 5.0), 0.05)

    def test_hang_up_during_greeting(self) -> None:
        """Hanging up during the greeting ends the application with HungUp (a normal end) and nothing recorded."""
        self.caller.on("vm/unavailable", ("hangup",))
        d = self.caller.run(self.app(), {"mailbox": "1001", "reason": "busy"})
        self.failureResultOf(d, HungUp)
        self.assertEqual(self.writers.made, [])

    def test_on_deposit_failure_logged(self) -> None:
        """An on_deposit that raises is logged; the caller still hears "Message saved"."""
        def broken(message: Any) -> None:
            raise RuntimeError("mailer down")

        self.caller.after_beep(2.0, ("press", "#"))
        app = Deposit(self.voicemail, pbx=self.pbx, options=self.options, on_deposit=broken,
                      writer=self.writers)
        self.successResultOf(self.caller.run(app, {"mailbox": "1001", "reason": "busy"}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.caller.played[-2:], ["vm/saved", "vm/goodbye"])

    def test_on_deposit_deferred_failure_logged(self) -> None:
        """A Deferred from on_deposit that fails is logged, not raised into the call."""
        self.caller.after_beep(2.0, ("press", "#"))
        app = Deposit(self.voicemail, pbx=self.pbx, options=self.options,
                      on_deposit=lambda m: fail(RuntimeError("transcriber down")),
                      writer=self.writers)
        self.successResultOf(self.caller.run(app, {"mailbox": "1001", "reason": "busy"}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(self.messages()), 1)


class OperatorTests(DepositTestCase):
    """0 reaches the operator when one is configured."""

    def setUp(self) -> None:
        """The operator is extension 100."""
        super().setUp()
        self.options.operator = "100"

    def test_zero_during_greeting(self) -> None:
        """0 during the greeting: "please hold", dial the operator; once that call ends, hang up; nothing recorded."""
        self.caller.press_on("vm/unavailable", "0")
        self.run_app()
        self.assertEqual(self.pbx.dialled, ["100"])
        self.assertEqual(self.caller.played[-1], "general/please-hold")
        self.assertNotIn("general/beep", self.caller.played)
        self.assertEqual(self.writers.made, [])
        self.assertEqual(self.caller.hangups, ["normal"])

    def test_operator_does_not_answer(self) -> None:
        """The operator does not answer: the caller may leave a message after all."""
        self.pbx.outcome = "no_answer"
        self.caller.press_on("vm/unavailable", "0")
        self.caller.after_beep(2.0, ("press", "#"))
        self.run_app()
        self.assertEqual(self.caller.played[-5:], [
            "general/please-hold", "vm/leave-message", "general/beep", "vm/saved", "vm/goodbye"])
        self.assertEqual(len(self.messages()), 1)

    def test_zero_during_recording_keeps_message(self) -> None:
        """0 while recording: the message so far is delivered, "message saved, please hold", then the operator."""
        self.caller.after_beep(2.0, ("press", "0"))
        self.run_app()
        self.assertEqual(len(self.messages()), 1)
        self.assertEqual(self.caller.played[-2:], ["vm/saved", "general/please-hold"])
        self.assertEqual(self.pbx.dialled, ["100"])

    def test_zero_during_short_recording(self) -> None:
        """0 right after the beep: nothing to keep, straight to the operator."""
        self.caller.after_beep(0.2, ("press", "0"))
        self.run_app()
        self.assertEqual(self.messages(), [])
        self.assertEqual(self.caller.played[-1], "general/please-hold")
        self.assertEqual(len(self.pbx.dialled), 1)

    def test_no_operator(self) -> None:
        """Without an operator, 0 neither stops the greeting nor the recording."""
        self.options.operator = ""
        self.caller.press_on("vm/unavailable", "0")
        self.caller.after_beep(2.0, ("press", "0"), silence=0.0)
        self.run_app()
        self.assertEqual(self.pbx.dialled, [])
        [message] = self.messages()
        self.assertLessEqual(abs(message.duration - (2.0 + TAIL_SECONDS)), 0.05)


class SpeechTakeTests(SynchronousTestCase):
    """SpeechTake: the silence around speech is trimmed before the file is written."""

    def frames(self, take: SpeechTake, loud: bool, count: int) -> None:
        """Write ``count`` frames of speech or silence."""
        pcm = np.full(160, 3000 if loud else 0, dtype=np.int16)
        for _ in range(count):
            take.write(pcm)

    def test_lead_and_tail(self) -> None:
        """2 s silence, 1.5 s speech, 0.5 s pause, 1 s speech, 3 s silence: 0.5 + 3 + 0.5 s written."""
        writer = FakeWriter("m.wav", 8000)
        take = SpeechTake(writer, 8000, 1.0)
        self.frames(take, False, 100)
        self.frames(take, True, 75)
        self.frames(take, False, 25)
        self.frames(take, True, 50)
        self.frames(take, False, 150)
        self.assertEqual(self.successResultOf(take.close()), "m.wav")
        self.assertAlmostEqual(writer.seconds, LEAD_SECONDS + 3.0 + TAIL_SECONDS)
        self.assertAlmostEqual(take.speech_seconds, 3.0)
        self.assertTrue(take.kept)
        loud = [bool(f.any()) for f in writer.frames]
        self.assertEqual(loud.index(True), int(LEAD_SECONDS / TICK))

    def test_silence_only(self) -> None:
        """Nothing but silence: aborted, close fires with None."""
        writer = FakeWriter("m.wav", 8000)
        take = SpeechTake(writer, 8000, 1.0)
        self.frames(take, False, 300)
        self.assertIsNone(self.successResultOf(take.close()))
        self.assertEqual(writer.ended, "aborted")
        self.assertFalse(take.kept)


class RealVoicemailTests(SynchronousTestCase):
    """Deposit on the real Voicemail (MemoryStore, a temporary spool, real WAV files)."""

    def test_message_in_spool(self) -> None:
        """A message left after the beep is a WAV in <spool>/1001 and a new message of about its length."""
        caller = Caller()
        spool = self.mktemp()
        voicemail = real_voicemail(caller.clock, spool, {"1001": "4826"})
        options = SimpleNamespace(max_seconds=60.0, min_seconds=1.0, silence_seconds=3.0)
        app = Deposit(voicemail, pbx=FakePBX(clock=caller.clock, talk=0.0), options=options,
                      writer=real_writer(caller.clock))
        caller.after_beep(2.0, ("press", "#"))
        self.successResultOf(caller.run(app, {"mailbox": "1001", "reason": "busy"}))
        [message] = self.successResultOf(voicemail.messages("1001"))
        self.assertEqual((message.folder, message.caller), ("new", "1002"))
        self.assertTrue(message.path.startswith(os.path.abspath(os.path.join(spool, "1001"))))
        with wave.open(message.path, "rb") as w:
            seconds = w.getnframes() / w.getframerate()
        self.assertLessEqual(abs(seconds - message.duration), 0.001)
        self.assertLessEqual(abs(seconds - 2.0), 0.05)
        self.assertEqual(os.listdir(os.path.join(spool, "tmp")), [])
        self.assertEqual(self.successResultOf(voicemail.counts("1001")), (1, 0))
        self.assertEqual(caller.clock.getDelayedCalls(), [])

    def test_short_message_leaves_no_file(self) -> None:
        """A recording too short to keep leaves nothing in the spool."""
        caller = Caller()
        spool = self.mktemp()
        voicemail = real_voicemail(caller.clock, spool, {"1001": "4826"})
        app = Deposit(voicemail, pbx=FakePBX(clock=caller.clock, talk=0.0), options=SimpleNamespace(),
                      writer=real_writer(caller.clock))
        caller.after_beep(0.4, ("press", "#"))
        self.successResultOf(caller.run(app, {"mailbox": "1001", "reason": "busy"}))
        self.assertEqual(self.successResultOf(voicemail.counts("1001")), (0, 0))
        self.assertEqual(os.listdir(os.path.join(spool, "tmp")), [])


class OptionTests(SynchronousTestCase):
    """option(): defaults for options objects that lack an attribute."""

    def test_defaults(self) -> None:
        """An empty namespace gives the documented defaults."""
        empty = SimpleNamespace()
        self.assertEqual(
            [option(empty, n) for n in ("max_seconds", "min_seconds", "silence_seconds",
                                         "operator", "pin_attempts", "pin_min_length")],
            [180.0, 1.0, 5.0, "", 3, 4])
        self.assertEqual(option(SimpleNamespace(operator="100"), "operator"), "100")
