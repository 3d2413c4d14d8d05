"""
Helpers for the voicemail call-flow tests (``unit/features/voicemail/``:
``test_deposit.py``, ``test_retrieval.py``).

- :class:`Caller`: a :class:`Channel` on a :class:`task.Clock` driven one
  20 ms tick at a time, with a scripted caller: when a prompt (or a WAV
  path) starts playing, the caller presses keys, speaks, stays silent or
  hangs up.  Every item played is logged by id (:attr:`Caller.played`), so
  tests assert on what the caller heard.  Prompts are the shipped ones
  (so a missing prompt fails), but their audio is replaced by a few frames
  of silence.
- :class:`FakeVoicemail`: the mailbox storage contract in memory.
- :class:`FakeWriter`: a recording writer that keeps frames in memory;
  :func:`real_writer` and :func:`real_voicemail` for tests against the
  real WAV writer and :class:`~pbx.features.voicemail.mailbox.Voicemail`, with
  thread work done at once.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from attrs import evolve

from twisted.internet import task
from twisted.internet.defer import Deferred, maybeDeferred, succeed

from pbx.features.voicemail.mailbox import Message
from pbx.media.channel import Channel
from pbx.media.codecs import PCMU
from pbx.media.dtmf import RFC4733Sender
from pbx.media.jitter import Frame
from pbx.media.prompts import PromptLibrary
from pbx.media.rtp import RTPPacket
from pbx.media.wav import WavAudio, WavWriter

TICK = 0.02
FRAME = 160
TE_PT = 101
#: Frames of silence each prompt is replaced by.
PROMPT_FRAMES = 5
PROMPTS = PromptLibrary()
_PROMPT_IDS = {PROMPTS.path(i, 8000): i for i in PROMPTS.ids() if 8000 in PROMPTS.rates(i)}
_ENCODER = PCMU().new_encoder()
SILENT = _ENCODER.encode(np.zeros(FRAME, dtype=np.int16))
#: A loud 300 Hz tone: "speech" for the recorder.
SPOKEN = _ENCODER.encode(
    (np.sin(2 * np.pi * 300 * np.arange(FRAME) / 8000) * 6000).astype(np.int16)
)


def sync_thread(reactor: Any, pool: Any, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """A ``deferToThreadPool`` double that runs ``f`` at once."""
    return maybeDeferred(f, *args)


def fast_hash(pin: str) -> Deferred[str]:
    """PBKDF2 with few iterations, so tests stay quick."""
    from pbx.security.passwords import hash_password

    return succeed(hash_password(pin, iterations=1000))


def check(pin: str, encoded: str) -> Deferred[bool]:
    """Synchronous PIN verification."""
    from pbx.security.passwords import verify_password

    return succeed(verify_password(pin, encoded))


def write_wav(path: str, seconds: float = 1.0, rate: int = 8000) -> str:
    """A mono 16-bit WAV of silence at ``path``."""
    import wave

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(int(seconds * rate) * 2))
    return path


class Caller:
    """
    One call into an application, driven tick by tick.

    Script the caller with :meth:`on` before :meth:`run`.  Steps of a
    script: ``("press", "12#")``, ``("wait", seconds)``,
    ``("speak", seconds)``, ``("hangup",)``.
    """

    def __init__(self, caller: str = "1002", caller_name: str = "Bob",
                 callee: str = "1001") -> None:
        self.clock = task.Clock()
        self.played: list[str] = []
        #: (clock time, item) of every item played.
        self.timeline: list[tuple[float, str]] = []
        self.hangups: list[str] = []
        self.channel = Channel(self.clock, PCMU(), PROMPTS, self._load,
                               on_hangup=self.hangups.append, caller=caller,
                               caller_name=caller_name, callee=callee)
        self._triggers: dict[str, deque[list[tuple[Any, ...]]]] = {}
        self._scripts: list[list[Any]] = []
        self._sequence = 0
        self._timestamp = 0
        self._event_timestamp = 0
        self._speaking = False

    # -- scripting ------------------------------------------------------------

    def on(self, item: str, *steps: tuple[Any, ...]) -> Caller:
        """When ``item`` next starts playing, run ``steps`` (each registration once)."""
        self._triggers.setdefault(item, deque()).append(list(steps))
        return self

    def press_on(self, item: str, digits: str) -> Caller:
        """When ``item`` next starts playing, press ``digits``."""
        return self.on(item, ("press", digits))

    def after_beep(self, speak: float, then: tuple[Any, ...] | None = None,
                   silence: float = 0.0) -> Caller:
        """After the next beep: speak for ``speak`` seconds, stay silent, then ``then``."""
        # The beep plays for PROMPT_FRAMES ticks; recording starts after it.
        steps: list[tuple[Any, ...]] = [("wait", TICK * PROMPT_FRAMES), ("speak", speak)]
        if silence:
            steps.append(("wait", silence))
        if then is not None:
            steps.append(then)
        return self.on("general/beep", *steps)

    def unused(self) -> list[str]:
        """Items whose scripted reactions never ran (the call took another path)."""
        return sorted(item for item, waiting in self._triggers.items() for _ in waiting)

    # -- running --------------------------------------------------------------

    def run(self, application: Any, args: Any, max_seconds: float = 900.0) -> Deferred[Any]:
        """Run ``application`` on the channel until it returns (or ``max_seconds`` pass)."""
        d = Deferred.fromCoroutine(application.run(self.channel, args))
        for _ in range(int(max_seconds / TICK)):
            if d.called:
                break
            self._step()
            if d.called:
                break
            self.clock.advance(TICK)
            self._sequence += 1
            self._timestamp += FRAME
            payload = SPOKEN if self._speaking else SILENT
            self.channel.tick(Frame(payload, self._timestamp, self._sequence, 0))
        return d

    def press(self, digits: str) -> None:
        """Press keys now (RFC 4733, as a phone at ptime 20 sends them)."""
        for digit in digits:
            self._event_timestamp += 800
            for packet in RFC4733Sender(interval_ms=20).packets(digit, 60):
                self._sequence += 1
                self.channel.telephone_event(RTPPacket(
                    TE_PT, self._sequence & 0xFFFF,
                    self._event_timestamp + packet.timestamp_offset, 0x5EED,
                    packet.payload, packet.marker))

    def _load(self, path: str) -> Deferred[Any]:
        item = _PROMPT_IDS.get(path, path)
        self.played.append(item)
        self.timeline.append((self.clock.seconds(), item))
        waiting = self._triggers.get(item)
        if waiting:
            self._scripts.append(waiting.popleft())
        return succeed(WavAudio(8000, 1, np.zeros(FRAME * PROMPT_FRAMES, dtype=np.int16)))

    def _step(self) -> None:
        """Advance every script by one tick; set whether the caller speaks in it."""
        self._speaking = False
        for script in list(self._scripts):
            while script:
                step = script[0]
                if step[0] == "press":
                    script.pop(0)
                    self.press(step[1])
                elif step[0] == "hangup":
                    script.pop(0)
                    self.channel.closed("remote")
                else:
                    ticks = step[2] if len(step) > 2 else round(step[1] / TICK)
                    if ticks <= 0:
                        script.pop(0)
                        continue
                    script[0] = (step[0], step[1], ticks - 1)
                    self._speaking = self._speaking or step[0] == "speak"
                    break
            if not script and script in self._scripts:
                self._scripts.remove(script)


# -- fakes --------------------------------------------------------------------------


class FakeVoicemail:
    """
    The mailbox storage contract in memory.

    :param pins: mailbox -> PIN of every mailbox.
    :param spool: a directory for recording paths (nothing is written there).
    """

    def __init__(self, pins: dict[str, str], spool: str = "/spool", now: float = 1704466800.0) -> None:
        self.pins = dict(pins)
        self.spool = spool
        self.now = now
        self.store: dict[str, list[Message]] = {m: [] for m in pins}
        self.greetings: dict[tuple[str, str], str] = {}
        self.locked: set[str] = set()
        self.checks: list[tuple[str, str, str]] = []
        self.forwards: list[tuple[str, str, str, str]] = []
        self._count = 0

    def add(self, mailbox: str, caller: str = "1002", folder: str = "new",
            received: float | None = None) -> Message:
        """Put a message in a mailbox directly."""
        self._count += 1
        message = Message(f"{self._count:013d}-abcdef", mailbox, folder, caller, "Bob",
                          self.now if received is None else received, 3.0,
                          f"{self.spool}/{mailbox}/{self._count}.wav")
        self.store[mailbox].append(message)
        return message

    def recording_path(self, mailbox: str) -> str:
        """A fresh temporary path."""
        self._count += 1
        return os.path.join(self.spool, "tmp", f"{mailbox}.{self._count}.wav")

    async def exists(self, mailbox: str) -> bool:
        """Whether there is such a mailbox."""
        return mailbox in self.pins

    async def deliver(self, mailbox: str, recorded_path: str, *, caller: str,
                      caller_name: str, duration: float) -> Message:
        """Add the recording as a new message."""
        self._count += 1
        message = Message(f"{self._count:013d}-abcdef", mailbox, "new", caller, caller_name,
                          self.now, round(duration, 3), recorded_path)
        self.store[mailbox].append(message)
        return message

    async def messages(self, mailbox: str, folder: str | None = None) -> list[Message]:
        """New first, then old; oldest first within each."""
        found = [m for m in self.store.get(mailbox, []) if folder in (None, m.folder)]
        return sorted(found, key=lambda m: (m.folder != "new", m.id))

    async def counts(self, mailbox: str) -> tuple[int, int]:
        """(new, old)."""
        found = self.store.get(mailbox, [])
        new = sum(1 for m in found if m.folder == "new")
        return new, len(found) - new

    async def get(self, mailbox: str, id: str) -> Message | None:
        """One message."""
        return next((m for m in self.store.get(mailbox, []) if m.id == id), None)

    async def mark(self, mailbox: str, id: str, folder: str) -> bool:
        """Move a message to ``folder``."""
        for i, m in enumerate(self.store.get(mailbox, [])):
            if m.id == id:
                self.store[mailbox][i] = evolve(m, folder=folder)
                return True
        return False

    async def delete(self, mailbox: str, id: str) -> bool:
        """Remove a message."""
        before = len(self.store.get(mailbox, []))
        self.store[mailbox] = [m for m in self.store.get(mailbox, []) if m.id != id]
        return len(self.store[mailbox]) < before

    async def forward(self, mailbox: str, id: str, to_mailbox: str, *, by: str) -> Message | None:
        """Copy a message into another mailbox as new."""
        message = await self.get(mailbox, id)
        if message is None or to_mailbox not in self.pins:
            return None
        self.forwards.append((mailbox, id, to_mailbox, by))
        self._count += 1
        copy = evolve(message, id=f"{self._count:013d}-abcdef", mailbox=to_mailbox, folder="new")
        self.store[to_mailbox].append(copy)
        return copy

    def greeting_path(self, mailbox: str, kind: str) -> str | None:
        """The recorded greeting, or None."""
        return self.greetings.get((mailbox, kind))

    async def save_greeting(self, mailbox: str, kind: str, recorded_path: str) -> None:
        """Keep the greeting."""
        self.greetings[(mailbox, kind)] = recorded_path

    async def delete_greeting(self, mailbox: str, kind: str) -> bool:
        """Forget a greeting."""
        return self.greetings.pop((mailbox, kind), None) is not None

    async def check_pin(self, mailbox: str, pin: str, source: str) -> str:
        """"ok", "wrong" (also for an unknown mailbox) or "locked"."""
        self.checks.append((mailbox, pin, source))
        if mailbox in self.locked:
            return "locked"
        return "ok" if self.pins.get(mailbox) == pin else "wrong"

    async def set_pin(self, mailbox: str, pin: str) -> str | None:
        """Refuse short, repeated, sequential PINs and the mailbox number."""
        steps = {int(b) - int(a) for a, b in zip(pin, pin[1:], strict=False)}
        if len(pin) < 4 or len(set(pin)) == 1 or steps in ({1}, {-1}) or pin == mailbox:
            return "too easy"
        self.pins[mailbox] = pin
        return None


class FakeWriter:
    """A recording writer in memory: ``close`` fires with the path, ``abort`` with None."""

    def __init__(self, path: str, rate: int) -> None:
        self.path = path
        self.rate = rate
        self.frames: list[np.ndarray] = []
        self.ended = ""

    def write(self, samples: np.ndarray) -> None:
        """Keep one frame."""
        assert not self.ended
        self.frames.append(np.array(samples))

    def close(self) -> Deferred[str]:
        """Finish."""
        self.ended = "closed"
        return succeed(self.path)

    def abort(self) -> Deferred[None]:
        """Drop the recording."""
        self.ended = "aborted"
        return succeed(None)

    @property
    def seconds(self) -> float:
        """Audio written."""
        return sum(len(f) for f in self.frames) / self.rate


class Writers:
    """A writer factory that keeps every :class:`FakeWriter` it made."""

    def __init__(self) -> None:
        self.made: list[FakeWriter] = []

    def __call__(self, path: str, rate: int) -> FakeWriter:
        """Make one."""
        writer = FakeWriter(path, rate)
        self.made.append(writer)
        return writer


def real_writer(clock: Any) -> Callable[[str, int], WavWriter]:
    """A factory of real :class:`WavWriter` s whose file work runs at once."""

    def make(path: str, rate: int) -> WavWriter:
        return WavWriter(path, clock, object(), sample_rate=rate,  # type: ignore[arg-type]
                         defer_to_thread_pool=sync_thread)

    return make


def real_voicemail(clock: Any, spool: str, pins: dict[str, str]) -> Any:
    """
    The real :class:`~pbx.features.voicemail.mailbox.Voicemail` on a
    :class:`~pbx.testing.MemoryStore` holding extensions with ``pins``;
    PIN hashing and file work run at once.
    """
    from pbx.features.voicemail.mailbox import Voicemail
    from pbx.records import ExtensionRecord
    from pbx.security.lockout import Lockout
    from pbx.security.passwords import hash_password
    from pbx.testing import MemoryStore

    store = MemoryStore()
    for number, pin in pins.items():
        store.extensions[number] = ExtensionRecord(
            number, pin_hash=hash_password(pin, iterations=1000))
    voicemail = Voicemail(store, spool, clock, in_thread=maybeDeferred, lockout=Lockout(clock),
                          hasher=fast_hash, verifier=check)
    Deferred.fromCoroutine(voicemail.recover())  # makes <spool>/tmp
    return voicemail
