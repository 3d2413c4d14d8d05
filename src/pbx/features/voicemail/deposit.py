"""
Leaving a message: the ``voicemail`` dialplan application.

A call that nobody answers is handed here (by the voicemail diverter, or a
route ``{app: voicemail, mailbox: "1001"}``) with the mailbox and the reason::

    caller                                        pbx
    ------                                        ---
                     greeting (own, or "The person at extension 1 0 0 1
                     is on the phone / is not available. Please leave a
                     message after the tone...")
    0  ------------> the operator (options.operator), if there is one
    # or *  -------> skip the rest of the greeting
                     beep, then record until # (or 0), silence, the
                     length limit, or hang-up
                     "Message saved. Goodbye."

Keys during the greeting: ``0`` reaches the operator when one is
configured (if nobody answers there, the caller is asked to leave a message
after all); ``#`` and ``*`` both skip the rest of the greeting to the beep.

What counts as a message: :class:`SpeechTake` writes the recording through
a filter that trims leading silence to :data:`LEAD_SECONDS` and trailing
silence (the silence that ended it, or the pause before a hang-up) to
:data:`TAIL_SECONDS`.  A recording is kept only when someone spoke
(a frame louder than :data:`SPEECH_LEVEL`) for at least ``min_seconds``,
from the first to the last loud frame; otherwise its file is removed and
nothing reaches the mailbox.  Hanging up is how most callers end a message,
so what was said up to the hang-up is kept by the same rule.  ``0`` during
the recording keeps the message by the same rule too (it is delivered
first), then puts the caller through to the operator.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from attrs import define, field

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from pbx.interfaces import IPBX, IChannel, IDialplanApplication
from pbx.media.channel import Recording, frame_level
from pbx.media.wav import WavWriter

__all__ = [
    "LEAD_SECONDS",
    "SPEECH_LEVEL",
    "TAIL_SECONDS",
    "Deposit",
    "SpeechTake",
    "WriterFactory",
    "option",
    "record_speech",
    "wav_writer",
]

#: RMS level (16-bit PCM) above which a frame counts as someone speaking:
#: the level the channel's own recorder uses to detect silence.
SPEECH_LEVEL = 300.0
#: Silence kept before the first spoken frame.
LEAD_SECONDS = 0.5
#: Silence kept after the last spoken frame.
TAIL_SECONDS = 0.5
#: Longest pause held in memory while waiting to learn whether speech
#: follows; longer pauses (possible only without a silence timeout) are
#: written as they come.
HOLD_SECONDS = 30.0

#: ``(path, sample_rate) -> writer``: makes the file writer of a recording
#: (a :class:`~pbx.media.wav.WavWriter`, or a test double with ``write``,
#: ``close`` and ``abort``).
WriterFactory = Callable[[str, int], Any]

#: The pool handed to :class:`WavWriter`, which passes it back unused to
#: :func:`wav_writer`'s thread runner: :meth:`IPBX.run_in_thread` owns the pool.
_PBX_POOL = cast(ThreadPool, object())

#: Outcomes of :meth:`IPBX.dial` after which the caller's call is over.
CONNECTED = ("answered", "diverted")

_DEFAULTS: dict[str, Any] = {
    "max_seconds": 180.0,
    "min_seconds": 1.0,
    "silence_seconds": 5.0,
    "operator": "",
    "pin_attempts": 3,
    "pin_min_length": 4,
}


def option(options: Any, name: str) -> Any:
    """
    One voicemail option, with its default when ``options`` lacks it.

    :param options: a :class:`~pbx.features.voicemail.options.VoicemailOptions`
        or anything with some of its attributes.
    :param name: ``max_seconds``, ``min_seconds``, ``silence_seconds``,
        ``operator``, ``pin_attempts`` or ``pin_min_length``.
    """
    return getattr(options, name, _DEFAULTS[name])


def wav_writer(pbx: IPBX) -> WriterFactory:
    """
    The production writer factory: a :class:`WavWriter` whose file work runs
    in :meth:`IPBX.run_in_thread`.

    :param pbx: the running PBX.
    """

    def in_thread(_reactor: Any, _pool: Any, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        # WavWriter takes deferToThreadPool's shape; the PBX picks the pool.
        return pbx.run_in_thread(f, *args)

    def make(path: str, rate: int) -> WavWriter:
        return WavWriter(path, pbx.clock, _PBX_POOL, sample_rate=rate, defer_to_thread_pool=in_thread)

    return make


def _level(pcm: np.ndarray) -> float:
    """The RMS level of one frame."""
    return frame_level(pcm)


@define(eq=False)
class SpeechTake:
    """
    The writer :meth:`Channel.record` writes to: passes the frames on to the
    real file writer, trimming the silence around the speech, and on
    :meth:`close` keeps the file only if enough was said.

    Silent frames are held back until it is known whether speech follows:
    before the first spoken frame only the last :data:`LEAD_SECONDS` are
    kept; after the last one, :data:`TAIL_SECONDS`.

    :param inner: the file writer (``write``, ``close``, ``abort``).
    :param rate: samples per second.
    :param min_seconds: shortest speech (first to last loud frame) kept.
    """

    inner: Any
    rate: int
    min_seconds: float
    samples: int = 0
    """Samples passed to the file so far (after :meth:`close`: its length)."""
    heard: bool = False
    """Whether any frame was loud enough to be speech."""
    kept: bool = False
    """Set by :meth:`close` when the file was kept."""
    _speech_start: int = 0
    _speech_end: int = 0
    _held: deque[np.ndarray] = field(factory=deque)
    _held_samples: int = 0

    @property
    def seconds(self) -> float:
        """Length of what was written."""
        return self.samples / self.rate

    @property
    def speech_seconds(self) -> float:
        """From the first to the end of the last spoken frame."""
        return (self._speech_end - self._speech_start) / self.rate

    def write(self, pcm: np.ndarray) -> None:
        """Take one frame of the caller's audio."""
        frame = np.array(pcm, dtype=np.int16)
        if _level(frame) > SPEECH_LEVEL:
            if not self.heard:
                self.heard = True
                self._release(int(LEAD_SECONDS * self.rate), from_end=True)
                self._speech_start = self.samples
            else:
                self._release(self._held_samples)
            self._put(frame)
            self._speech_end = self.samples
            return
        self._held.append(frame)
        self._held_samples += len(frame)
        limit = LEAD_SECONDS if not self.heard else HOLD_SECONDS
        while self._held and self._held_samples - len(self._held[0]) >= limit * self.rate:
            oldest = self._held.popleft()
            self._held_samples -= len(oldest)
            if self.heard:
                self._put(oldest)

    def _put(self, frame: np.ndarray) -> None:
        self.inner.write(frame)
        self.samples += len(frame)

    def _release(self, samples: int, from_end: bool = False) -> None:
        """Write up to ``samples`` of the held silence (the oldest, or the newest), dropping the rest."""
        frames = list(self._held)
        self._held.clear()
        self._held_samples = 0
        chosen: list[np.ndarray] = []
        total = 0
        for frame in reversed(frames) if from_end else frames:
            if total >= samples:
                break
            chosen.append(frame)
            total += len(frame)
        for frame in reversed(chosen) if from_end else chosen:
            self._put(frame)

    def close(self) -> Deferred[Any]:
        """
        Finish: keep the file (firing with its path) when enough was said,
        else remove it (firing with None).
        """
        if self.heard:
            self._release(int(TAIL_SECONDS * self.rate))
        if not self.heard or self.speech_seconds < self.min_seconds:
            self._held.clear()
            return self.inner.abort().addCallback(lambda _: None)
        self.kept = True
        d: Deferred[Any] = self.inner.close()
        return d


async def record_speech(channel: IChannel, path: str, writer: WriterFactory, *, options: Any,
                        stop_digits: str = "#") -> tuple[Recording, float]:
    """
    Beep, then record the caller into ``path`` through a :class:`SpeechTake`.

    :param options: supplies ``max_seconds``, ``min_seconds`` and
        ``silence_seconds`` (see :func:`option`).
    :returns: the channel's :class:`Recording` (its ``path`` is None when
        nothing worth keeping was said, or the file could not be written)
        and the length of the kept file in seconds.
    :raises HungUp: when the caller hangs up during the beep.
    """
    takes: list[SpeechTake] = []

    def make(target: str, rate: int) -> Any:
        take = SpeechTake(writer(target, rate), rate, float(option(options, "min_seconds")))
        takes.append(take)
        return take

    recording = await channel.record(
        path, make,
        max_seconds=float(option(options, "max_seconds")),
        silence_timeout=float(option(options, "silence_seconds")),
        stop_digits=stop_digits,
        beep=True,
    )
    seconds = takes[0].seconds if takes and recording.path is not None else 0.0
    return recording, seconds


@implementer(IDialplanApplication)
class Deposit:
    """
    The ``voicemail`` application: greet the caller and take a message.

    Arguments of a call: ``{"mailbox": "1001", "reason": "busy"}``; the
    mailbox defaults to the number dialled, the reason (``busy``,
    ``no_answer``, ``dnd``, ``unavailable``) to ``unavailable``.

    :param voicemail: the mailboxes (:class:`~pbx.features.voicemail.mailbox.Voicemail`).
    :param pbx: the running PBX (``dial`` for the operator).
    :param options: the feature's options (see :func:`option`).
    :param on_deposit: called with each delivered
        :class:`~pbx.features.voicemail.mailbox.Message` (transcription,
        e-mail); a Deferred it returns is not waited for.
    :param writer: makes recording files; :func:`wav_writer` by default.
    """

    name = "voicemail"
    #: Calls voicemail answered are recorded as such (IDialplanApplication).
    disposition = "VOICEMAIL"
    log = Logger()

    def __init__(self, voicemail: Any, *, pbx: IPBX, options: Any,
                 on_deposit: Callable[[Any], Any] | None = None,
                 writer: WriterFactory | None = None) -> None:
        self.voicemail = voicemail
        self.pbx = pbx
        self.options = options
        self.on_deposit = on_deposit
        self.writer = writer if writer is not None else wav_writer(pbx)

    async def run(self, channel: IChannel, args: Any) -> None:
        """Greet, record, deliver, say goodbye and hang up."""
        args = args or {}
        mailbox = str(args.get("mailbox") or channel.callee)
        reason = str(args.get("reason") or "unavailable")
        await channel.answer()
        if not await self.voicemail.exists(mailbox):
            self.log.info("voicemail: no mailbox {mailbox} for {caller}", mailbox=mailbox,
                          caller=channel.caller or "unknown")
            await channel.play(["general/not-available"])
            await channel.hangup()
            return
        operator = str(option(self.options, "operator") or "")
        keys = "#*" + ("0" if operator else "")
        pressed = await channel.play(self.greeting(channel, mailbox, reason), interrupt=keys)
        if pressed == "0":
            outcome = await self._operator(channel, operator, [])
            if outcome in CONNECTED or channel.hung_up:
                await channel.hangup()
                return
            # Nobody took the call there: a message can still be left.
            await channel.play(["vm/leave-message"], interrupt="#*")
        recording, seconds = await record_speech(
            channel, self.voicemail.recording_path(mailbox), self.writer,
            options=self.options, stop_digits="#" + ("0" if operator else ""))
        message = None
        if recording.path is not None:
            message = await self.voicemail.deliver(
                mailbox, recording.path, caller=channel.caller,
                caller_name=channel.caller_name, duration=seconds)
            self._deposited(message)
        if channel.hung_up:
            return
        if recording.digit == "0" and operator:
            saved = ["vm/saved"] if message is not None else []
            if await self._operator(channel, operator, saved) in CONNECTED or channel.hung_up:
                await channel.hangup()
                return
            await channel.play(["vm/goodbye"])
        elif message is not None:
            await channel.play(["vm/saved", "vm/goodbye"])
        else:
            await channel.play(["vm/not-recorded", "vm/goodbye"])
        await channel.hangup()

    def greeting(self, channel: IChannel, mailbox: str, reason: str) -> list[str]:
        """
        What the caller hears first: the mailbox's own busy (for ``busy``)
        or unavailable greeting when recorded, else the standard one with
        the recorded name, or the number said digit by digit.
        """
        busy = reason == "busy"
        own = self.voicemail.greeting_path(mailbox, "busy" if busy else "unavailable")
        if own:
            return [own]
        name = self.voicemail.greeting_path(mailbox, "name")
        who = [name] if name else channel.prompts.say_digits(mailbox)
        return ["vm/unavailable", *who, "vm/is-busy" if busy else "vm/is-unavailable",
                "vm/leave-message"]

    async def _operator(self, channel: IChannel, operator: str, first: list[str]) -> str:
        """Put the caller through to the operator; the outcome of the attempt."""
        await channel.play([*first, "general/please-hold"])
        self.log.info("voicemail: {caller} to the operator {operator}",
                      caller=channel.caller or "unknown", operator=operator)
        outcome = await self.pbx.dial(channel, operator)
        return str(outcome)

    def _deposited(self, message: Any) -> None:
        """Hand a new message to ``on_deposit``; its failures are logged, never raised."""
        if self.on_deposit is None:
            return
        try:
            result = self.on_deposit(message)
        except Exception:
            self.log.failure("voicemail {id}: on_deposit failed", id=message.id)
            return
        if isinstance(result, Deferred):
            result.addErrback(lambda f: self.log.failure(
                "voicemail {id}: on_deposit failed", f, id=message.id))
