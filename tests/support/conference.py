"""
Helpers for the conference unit tests (``unit/features/conference/``).

- :class:`Meeting`: the ``conference`` application on a
  :class:`task.Clock`, with the rooms of a YAML snippet, and every phone
  ticked together one 20 ms frame at a time.
- :class:`Phone`: one caller, a real :class:`~pbx.media.channel.Channel`
  (G.711 or G.722) whose endpoint is the phone itself: it sends a steady
  tone of its own frequency (unless silent), keeps the audio pbx sends it
  decoded, presses keys as RFC 4733 events, hangs up.  Prompts and sounds
  are logged by id or file name (:attr:`Phone.played`) and play as a few
  frames of silence.
- :func:`level`: how loud one frequency is in a stretch of audio.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from twisted.internet import task
from twisted.internet.defer import Deferred, succeed

from pbx.features.conference.app import Conference
from pbx.features.conference.options import parse_options
from pbx.features.conference.room import Rooms
from pbx.features.conference.sounds import Sounds
from pbx.features.recording.interfaces import IRoomRecordings
from pbx.interfaces import ICodec
from pbx.media.channel import Channel
from pbx.media.codecs import PCMU
from pbx.media.dtmf import RFC4733Sender
from pbx.media.jitter import Frame
from pbx.media.prompts import PromptLibrary
from pbx.media.rtp import RTPPacket
from pbx.media.wav import WavAudio
from pbx.testing import FakePBX

from support.prompt_files import PROMPTS as SHIPPED_PROMPTS

TICK = 0.02
TE_PT = 101
#: Frames of silence each prompt or sound is replaced by.
PROMPT_FRAMES = 5
#: The checkout's prompts (an installed copy may be older than the checkout).
PROMPTS = PromptLibrary([str(SHIPPED_PROMPTS)])
_PROMPT_IDS = {PROMPTS.path(i, r): i for i in PROMPTS.ids() for r in PROMPTS.rates(i)}
SOUNDS = Sounds("/conference-sounds")
#: The amplitude of every phone's tone.
AMPLITUDE = 6000


def level(samples: np.ndarray, frequency: float, rate: int) -> float:
    """The amplitude of the part of ``samples`` within 50 Hz of ``frequency`` (a full-scale sine: 32767)."""
    x = np.asarray(samples, dtype=np.float64)
    if not len(x):
        return 0.0
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    hz = np.fft.rfftfreq(len(x), 1 / rate)
    return float(np.sqrt(spectrum[np.abs(hz - frequency) <= 50].sum()) * 2 / len(x))


class Phone:
    """One caller: a Channel whose endpoint this is."""

    def __init__(self, clock: task.Clock, number: str, room: str, codec: ICodec,
                 frequency: float | None) -> None:
        self.number = number
        self.codec = codec
        self.frequency = frequency
        self.talking = frequency is not None
        self.played: list[str] = []
        self.received: list[np.ndarray] = []
        self.hangups: list[str] = []
        self.done: Deferred[None] | None = None
        self.channel = Channel(clock, codec, PROMPTS, self._load, on_hangup=self.hangups.append,
                               caller=number, callee=room)
        self.channel.endpoint = self
        self._encoder = codec.new_encoder()
        self._decoder = codec.new_decoder()
        self._clock = clock
        self._sequence = 0
        self._timestamp = 0
        self._event_timestamp = 0
        self._phase = 0

    @property
    def rate(self) -> int:
        """The codec's PCM rate."""
        return int(self.codec.sample_rate)

    # -- the endpoint side ----------------------------------------------------

    def send(self, payload: bytes, samples: int | None = None, **kwargs: Any) -> bool:
        """A frame pbx sent: kept decoded."""
        self.received.append(np.asarray(self._decoder.decode(payload), dtype=np.int16))
        return True

    def advance(self, samples: int) -> None:
        """pbx sent nothing this tick: kept as silence."""
        self.received.append(np.zeros(self.rate // 50, dtype=np.int16))

    def _load(self, path: str) -> Deferred[Any]:
        self.played.append(_PROMPT_IDS.get(path, os.path.basename(path)))
        return succeed(WavAudio(self.rate, 1, np.zeros(self.rate // 50 * PROMPT_FRAMES, dtype=np.int16)))

    # -- the caller side --------------------------------------------------------

    def frame(self) -> Frame:
        """This tick's frame from the phone: its tone, or silence."""
        n = self.rate // 50
        pcm = np.zeros(n, dtype=np.int16)
        if self.talking and self.frequency is not None:
            t = (self._phase + np.arange(n)) / self.rate
            pcm = (np.sin(2 * np.pi * self.frequency * t) * AMPLITUDE).astype(np.int16)
        self._phase += n
        self._sequence += 1
        self._timestamp += n
        return Frame(self._encoder.encode(pcm), self._timestamp, self._sequence, 0)

    def press(self, digits: str) -> None:
        """Press keys now (RFC 4733, as a phone at ptime 20 sends them)."""
        for digit in digits:
            self._event_timestamp += 800
            for packet in RFC4733Sender(interval_ms=20).packets(digit, 60):
                self._sequence += 1
                self.channel.telephone_event(RTPPacket(
                    TE_PT, self._sequence & 0xFFFF, self._event_timestamp + packet.timestamp_offset,
                    0x5EED, packet.payload, packet.marker))

    def hang_up(self) -> None:
        """The caller hangs up."""
        self.channel.closed("remote")

    def heard(self, seconds: float = 0.4) -> np.ndarray:
        """The last ``seconds`` of what pbx sent this phone."""
        frames = self.received[-round(seconds / TICK):]
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)

    def hears(self, frequency: float, seconds: float = 0.4) -> float:
        """
        How loud ``frequency`` was in the last ``seconds`` heard, relative
        to a phone's tone (1: a phone's tone, unchanged; 0: not there).
        """
        return level(self.heard(seconds), frequency, self.rate) / AMPLITUDE


class Meeting:
    """
    The conference application with the rooms of ``rooms_yaml``, and phones.

    :ivar pbx: a :class:`FakePBX` on the meeting's clock (its lockout counts
        PINs; rooms look the recording feature's room recorder up in it), or
        the one given.
    """

    def __init__(self, rooms_yaml: str, pbx: FakePBX | None = None) -> None:
        import yaml

        self.pbx = pbx if pbx is not None else FakePBX(clock=task.Clock())
        self.clock = self.pbx.clock
        lookup = self.pbx.lookup
        self.rooms = Rooms(parse_options(yaml.safe_load(rooms_yaml)), SOUNDS, self.clock,
                           recordings=lambda: lookup(IRoomRecordings))
        self.app = Conference(self.rooms, SOUNDS, self.pbx.lockout)
        self.phones: list[Phone] = []

    def call(self, number: str, room: str = "800", *, codec: ICodec | None = None,
             frequency: float | None = None, args: Any = None) -> Phone:
        """A phone of ``number`` dials ``room``; the application starts at once."""
        phone = Phone(self.clock, number, room, codec or PCMU(), frequency)
        self.phones.append(phone)
        phone.done = self.app.run(phone.channel, {} if args is None else args)
        return phone

    def run(self, seconds: float) -> None:
        """Let ``seconds`` pass, every phone sending and receiving each tick."""
        for _ in range(round(seconds / TICK)):
            self.clock.advance(TICK)
            for phone in self.phones:
                if not phone.channel.hung_up:
                    phone.channel.tick(phone.frame())

    def hang_up_all(self) -> None:
        """Everyone still on the line hangs up."""
        for phone in self.phones:
            phone.hang_up()
