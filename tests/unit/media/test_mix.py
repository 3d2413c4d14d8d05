"""
Tests for :mod:`pbx.media.mix`: N channels joined to one mixer.

Channels are driven as the shared media clock drives them: every 20 ms of a
:class:`task.Clock`, each channel's ``tick(frame)`` in turn, with a fake
endpoint that keeps what would have been sent.  The codecs are the real
PCMU, and a lossless 16 kHz linear codec standing in for a wideband one.
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from zope.interface import implementer

from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from pbx.interfaces import ICodec, IDecoder, IEncoder
from pbx.media import mix as mix_module
from pbx.media.channel import Channel, HungUp
from pbx.media.codecs import PCMU
from pbx.media.jitter import Frame
from pbx.media.mix import Mix
from pbx.media.mixer import Mixer
from pbx.media.prompts import PromptLibrary
from pbx.media.wav import load_wav

TICK = 0.02


# -- signals ------------------------------------------------------------------


def sine(freq: float, samples: int, rate: int = 8000, amplitude: float = 4000.0) -> np.ndarray:
    """``samples`` samples of a sine at ``freq`` Hz."""
    t = np.arange(samples) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def level_at(pcm: np.ndarray, freq: float, rate: int) -> float:
    """The amplitude of the ``freq`` Hz component of ``pcm`` (a whole number of its periods)."""
    t = np.arange(len(pcm)) / rate
    x = pcm.astype(np.float64)
    return float(abs(x @ np.exp(-2j * np.pi * freq * t)) * 2 / len(pcm))


def load(path: str) -> Deferred[Any]:
    """The channel's loader, synchronous."""
    return succeed(load_wav(path))


def write_wav(path: str, samples: np.ndarray, rate: int) -> None:
    """Write 16-bit mono ``samples`` to ``path`` (directories made)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(samples, dtype="<i2").tobytes())


# -- fakes ----------------------------------------------------------------------


@implementer(IEncoder)
class _L16Encoder:
    """Linear 16-bit little-endian samples."""

    def encode(self, pcm: np.ndarray) -> bytes:
        """The samples as bytes."""
        return np.asarray(pcm, dtype="<i2").tobytes()


@implementer(IDecoder)
class _L16Decoder:
    """Linear 16-bit little-endian samples; silence for a lost frame."""

    def decode(self, payload: bytes) -> np.ndarray:
        """The bytes as samples."""
        return np.frombuffer(payload, dtype="<i2").astype(np.int16)

    def conceal(self, samples: int) -> np.ndarray:
        """Silence."""
        return np.zeros(samples, dtype=np.int16)


@implementer(ICodec)
class Wideband:
    """A lossless 16 kHz codec: what G.722 or Opus would be without the coding noise."""

    name = "L16"
    clock_rate = 16000
    sample_rate = 16000
    channels = 1
    payload_type = None
    fmtp = None

    def new_encoder(self) -> _L16Encoder:
        """A fresh encoder."""
        return _L16Encoder()

    def new_decoder(self) -> _L16Decoder:
        """A fresh decoder."""
        return _L16Decoder()


class FakeEndpoint:
    """Stands in for an RTPEndpoint: keeps the payloads sent, counts silent advances."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec
        self.sent: list[bytes] = []
        self.advanced = 0

    def send(self, payload: bytes, samples: int | None = None) -> bool:
        """Keep one frame sent."""
        self.sent.append(payload)
        return True

    def advance(self, samples: int) -> None:
        """Count a frame of silence (nothing sent)."""
        self.advanced += 1

    def frames(self) -> list[np.ndarray]:
        """Every frame sent, decoded."""
        decoder = self.codec.new_decoder()
        return [np.asarray(decoder.decode(payload)) for payload in self.sent]

    def audio(self, last: int) -> np.ndarray:
        """The last ``last`` frames sent, decoded and joined."""
        return np.concatenate(self.frames()[-last:])


class CountingMixer(Mixer):
    """A Mixer that counts its :meth:`mix` calls (in a class attribute, reset per test)."""

    calls = 0

    def mix(self, frames: Mapping[Any, np.ndarray | None]) -> dict[Any, np.ndarray]:
        """Count, then mix."""
        CountingMixer.calls += 1
        return super().mix(frames)


# -- the harness ------------------------------------------------------------------


class MixTestCase(SynchronousTestCase):
    """Channels on one task.Clock, each with a fake endpoint and a voice of its own."""

    def setUp(self) -> None:
        """Write a prompt and make the clock."""
        self.root = self.mktemp()
        write_wav(os.path.join(self.root, "en", "8000", "test/long.wav"), sine(300.0, 3200), 8000)
        self.prompts = PromptLibrary([self.root])
        self.clock = task.Clock()
        self.voices: dict[Channel, _forever | None] = {}
        self.encoders: dict[Channel, Any] = {}
        self.endpoints: dict[Channel, FakeEndpoint] = {}

    def tearDown(self) -> None:
        """No timer is left behind."""
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def channel(self, voice: _forever | None = None, codec: Any = None) -> Channel:
        """A channel (PCMU unless ``codec``) whose caller says ``voice``, one frame per tick."""
        codec = codec or PCMU()
        endpoint = FakeEndpoint(codec)
        channel = Channel(self.clock, codec, self.prompts, load, endpoint=endpoint)
        self.voices[channel] = voice
        self.encoders[channel] = codec.new_encoder()
        self.endpoints[channel] = endpoint
        return channel

    def constant(self, value: int, codec: Any = None) -> Channel:
        """A channel whose caller sends the same sample value for ever."""
        rate = (codec or PCMU()).sample_rate
        return self.channel(_forever(np.full(rate // 50, value, dtype=np.int16)), codec)

    def tone(self, freq: float, codec: Any = None) -> Channel:
        """A channel whose caller sends a sine at ``freq`` for ever."""
        rate = (codec or PCMU()).sample_rate
        n = rate // 50
        wave_ = sine(freq, rate, rate)  # one second: whole periods of any whole-Hz tone
        return self.channel(_forever(*(wave_[i : i + n] for i in range(0, rate, n))), codec)

    def tick(self, count: int = 1, channels: Iterable[Channel] | None = None) -> None:
        """Let 20 ms pass and tick every channel (or ``channels``) in turn, ``count`` times."""
        for _ in range(count):
            self.clock.advance(TICK)
            for channel in list(channels or self.voices):
                voice = self.voices[channel]
                frame = None
                if voice is not None:
                    frame = Frame(self.encoders[channel].encode(next(voice)), 0, 0, 0)
                channel.tick(frame)

    def assert_level(self, level: float, expected: float) -> None:
        """``level`` is within 5 % of ``expected``."""
        self.assertLess(abs(level - expected), 0.05 * expected, f"level {level:.0f}, not {expected:.0f}")

    def heard(self, channel: Channel, last: int = 10) -> np.ndarray:
        """What ``channel``'s caller heard in the last ``last`` ticks."""
        return self.endpoints[channel].audio(last)


class _forever:
    """Frames repeated in order, for ever (an iterator)."""

    def __init__(self, *frames: np.ndarray) -> None:
        self._frames = frames
        self._next = 0

    def __iter__(self) -> _forever:
        return self

    def __next__(self) -> np.ndarray:
        frame = self._frames[self._next % len(self._frames)]
        self._next += 1
        return frame


def decoded(value: int) -> int:
    """A sample value as it comes out of a PCMU encoder and decoder."""
    pcm = np.full(160, value, dtype=np.int16)
    return int(PCMU().new_decoder().decode(PCMU().new_encoder().encode(pcm))[0])


# -- the tests --------------------------------------------------------------------


class ContractTests(MixTestCase):
    """What a mix is made of."""

    def test_mix_attribute(self) -> None:
        """A channel's ``mix`` is None until it joins one, then that mix."""
        channel = self.channel()
        self.assertIsNone(channel.mix)
        mix = Mix()
        channel.join(mix)
        self.assertIs(channel.mix, mix)
        self.assertEqual(mix.members, (channel,))

    def test_rates(self) -> None:
        """A mix runs at 8 or 16 kHz and nothing else."""
        self.assertEqual(Mix(16000).samples_per_frame, 320)
        self.assertRaises(ValueError, Mix, 44100)


class HearingTests(MixTestCase):
    """Three channels joined hear each other."""

    def test_sum_of_the_others(self) -> None:
        """Each caller hears exactly the sum of the other two callers' (decoded) audio, not their own."""
        a, b, c = self.constant(1000), self.constant(2000), self.constant(-500)
        mix = Mix()
        for channel in (a, b, c):
            channel.join(mix)
        self.tick(5)
        values = {ch: decoded(v) for ch, v in ((a, 1000), (b, 2000), (c, -500))}
        for channel, others in ((a, (b, c)), (b, (a, c)), (c, (a, b))):
            expected = decoded(sum(values[o] for o in others))
            self.assertEqual(set(self.heard(channel, 3).tolist()), {expected})

    def test_frequencies(self) -> None:
        """Three callers' tones: each hears the other two tones at full level and none of its own."""
        a, b, c = self.tone(400.0), self.tone(700.0), self.tone(1100.0)
        mix = Mix()
        for channel in (a, b, c):
            channel.join(mix)
        self.tick(30)
        for channel, own, others in ((a, 400.0, (700.0, 1100.0)), (b, 700.0, (400.0, 1100.0)),
                                     (c, 1100.0, (400.0, 700.0))):
            audio = self.heard(channel, 25)
            self.assertLess(level_at(audio, own, 8000), 40)
            for freq in others:
                self.assert_level(level_at(audio, freq, 8000), 4000)

    def test_one_mix_per_tick(self) -> None:
        """Ten channels cost one Mixer.mix per 20 ms tick, not one per channel."""
        self.patch(mix_module, "Mixer", CountingMixer)
        CountingMixer.calls = 0
        mix = Mix()
        for value in range(10):
            self.constant(100 * value).join(mix)
        self.tick(50)
        self.assertEqual(CountingMixer.calls, 50)

    def test_silent_caller(self) -> None:
        """A caller that sends nothing adds silence; the others still hear each other."""
        a, b, quiet = self.constant(1000), self.constant(2000), self.channel()
        mix = Mix()
        for channel in (a, b, quiet):
            channel.join(mix)
        self.tick(5)
        self.assertEqual(set(self.heard(a, 3).tolist()), {decoded(decoded(2000))})
        self.assertEqual(set(self.heard(quiet, 3).tolist()), {decoded(decoded(1000) + decoded(2000))})

    def test_stalled_member(self) -> None:
        """A member that stops ticking neither stalls the others nor makes them hear a frame twice."""
        a, b, stalled = self.tone(400.0), self.tone(700.0), self.constant(1000)
        mix = Mix()
        for channel in (a, b, stalled):
            channel.join(mix)
        self.tick(3)
        self.tick(30, channels=[a, b])
        audio = self.heard(a, 25)
        self.assert_level(level_at(audio, 700.0, 8000), 4000)
        self.assertLess(abs(float(np.mean(audio))), 10)  # the stalled caller's constant is gone

    def test_long_frame(self) -> None:
        """A caller's 30 ms frame is cut to the mix's 20 ms instead of failing the tick."""
        a, b = self.channel(_forever(np.full(240, 1000, dtype=np.int16))), self.constant(0)
        mix = Mix()
        a.join(mix)
        b.join(mix)
        self.tick(3)
        self.assertEqual(set(self.heard(b, 2).tolist()), {decoded(decoded(1000))})


class MuteAndGainTests(MixTestCase):
    """Mute and gain pass to the mixer."""

    def setUp(self) -> None:
        """Three constant callers in one mix."""
        super().setUp()
        self.a, self.b, self.c = self.constant(1000), self.constant(2000), self.constant(-500)
        self.mix = Mix()
        for channel in (self.a, self.b, self.c):
            channel.join(self.mix)

    def test_mute(self) -> None:
        """A muted caller is not heard but still hears the others; unmuted, it is heard again."""
        self.mix.set_muted(self.b, True)
        self.assertTrue(self.mix.is_muted(self.b))
        self.tick(4)
        self.assertEqual(set(self.heard(self.a, 2).tolist()), {decoded(decoded(-500))})
        self.assertEqual(set(self.heard(self.b, 2).tolist()), {decoded(decoded(1000) + decoded(-500))})
        self.mix.set_muted(self.b, False)
        self.tick(3)
        self.assertEqual(set(self.heard(self.a, 2).tolist()), {decoded(decoded(2000) + decoded(-500))})

    def test_gain(self) -> None:
        """A caller at gain 0.5 is heard at half its level."""
        self.mix.set_gain(self.b, 0.5)
        self.assertEqual(self.mix.gain(self.b), 0.5)
        self.tick(4)
        self.assertEqual(set(self.heard(self.a, 2).tolist()), {decoded(decoded(2000) // 2 + decoded(-500))})

    def test_unknown(self) -> None:
        """Muting a channel that is not in the mix is a KeyError."""
        self.assertRaises(KeyError, self.mix.set_muted, self.channel(), True)


class ListenerTests(MixTestCase):
    """A listener (a room's recording) hears the whole mix."""

    def test_whole_mix(self) -> None:
        """A listener gets one frame per round: every unmuted member summed; it is no member."""
        a, b, c = self.constant(1000), self.constant(2000), self.constant(-500)
        mix = Mix()
        for channel in (a, b, c):
            channel.join(mix)
        frames: list[np.ndarray] = []
        mix.listen("tape", frames.append)
        self.assertEqual(len(mix), 3)
        self.assertEqual(mix.members, (a, b, c))
        self.tick(5)
        self.assertIn(len(frames), (4, 5))
        everyone = decoded(1000) + decoded(2000) + decoded(-500)
        self.assertEqual(set(frames[-1].tolist()), {everyone})
        mix.set_muted(b, True)
        self.tick(3)
        self.assertEqual(set(frames[-1].tolist()), {decoded(1000) + decoded(-500)})
        mix.unlisten("tape")
        count = len(frames)
        self.tick(3)
        self.assertEqual(len(frames), count)
        self.assertEqual(len(mix._mixer), 3)

    def test_listener_twice(self) -> None:
        """A key listens once; unlistening a stranger does nothing."""
        mix = Mix()
        mix.listen("tape", lambda pcm: None)
        self.assertRaises(ValueError, mix.listen, "tape", lambda pcm: None)
        mix.unlisten("nobody")
        self.assertEqual(len(mix), 0)


class LeaveTests(MixTestCase):
    """Leaving and hanging up take a channel out of the mix."""

    def setUp(self) -> None:
        """Three constant callers in one mix."""
        super().setUp()
        self.a, self.b, self.c = self.constant(1000), self.constant(2000), self.constant(-500)
        self.mix = Mix()
        for channel in (self.a, self.b, self.c):
            channel.join(self.mix)
        self.tick(3)

    def test_leave(self) -> None:
        """A channel that leaves is no longer heard, hears nothing more, and has no mix."""
        self.b.leave()
        self.assertIsNone(self.b.mix)
        self.assertNotIn(self.b, self.mix)
        self.assertEqual(self.mix.members, (self.a, self.c))
        sent = len(self.endpoints[self.b].sent)
        self.tick(3)
        self.assertEqual(set(self.heard(self.a, 2).tolist()), {decoded(decoded(-500))})
        self.assertEqual(len(self.endpoints[self.b].sent), sent)
        self.b.leave()  # leaving again does nothing

    def test_hang_up(self) -> None:
        """A channel whose call ends leaves the mix."""
        self.b.closed()
        self.assertIsNone(self.b.mix)
        self.assertEqual(len(self.mix), 2)
        self.tick(3)
        self.assertEqual(set(self.heard(self.c, 2).tolist()), {decoded(decoded(1000))})

    def test_join_after_hang_up(self) -> None:
        """A channel whose call ended cannot join a mix."""
        self.b.closed()
        self.assertRaises(HungUp, self.b.join, self.mix)

    def test_join_again(self) -> None:
        """Joining the mix joined already changes nothing; joining another leaves the first."""
        self.a.join(self.mix)
        self.assertEqual(len(self.mix), 3)
        other = Mix()
        self.a.join(other)
        self.assertIs(self.a.mix, other)
        self.assertEqual(self.mix.members, (self.b, self.c))


class WidebandTests(MixTestCase):
    """A 16 kHz mix with an 8 kHz and a 16 kHz channel."""

    def test_both_ways(self) -> None:
        """Each caller's tone reaches the other at its frequency and level, resampled up and down."""
        narrow, wide = self.tone(500.0), self.tone(1200.0, Wideband())
        mix = Mix(16000)
        narrow.join(mix)
        wide.join(mix)
        self.tick(50)
        from_narrow = self.heard(wide, 25)
        self.assertEqual(len(from_narrow), 25 * 320)
        self.assert_level(level_at(from_narrow, 500.0, 16000), 4000)
        self.assertLess(level_at(from_narrow, 1200.0, 16000), 40)
        from_wide = self.heard(narrow, 25)
        self.assertEqual(len(from_wide), 25 * 160)
        self.assert_level(level_at(from_wide, 1200.0, 8000), 4000)
        self.assertLess(level_at(from_wide, 500.0, 8000), 40)


class PromptTests(MixTestCase):
    """A prompt or tone has priority over the mix."""

    def test_prompt_heard_instead(self) -> None:
        """A joined caller hears its prompt, not the mix, while the others still hear that caller."""
        a, b = self.constant(1000), self.constant(2000)
        mix = Mix()
        a.join(mix)
        b.join(mix)
        self.tick(3)
        done = a.play(["test/long"])  # 20 frames of 300 Hz
        self.tick(20)
        self.successResultOf(done)
        prompt = self.heard(a, 20)
        self.assert_level(level_at(prompt, 300.0, 8000), 4000)
        self.assertEqual(set(self.heard(b, 20).tolist()), {decoded(decoded(1000))})
        self.tick(3)
        self.assertEqual(set(self.heard(a, 2).tolist()), {decoded(decoded(2000))})

    def test_tone_heard_instead(self) -> None:
        """A tone played to a joined caller replaces the mix for its length."""
        a, b = self.constant(1000), self.constant(2000)
        mix = Mix()
        a.join(mix)
        b.join(mix)
        done = a.tone("beep", 0.2)
        self.tick(10)
        self.successResultOf(done)
        self.assertGreater(level_at(self.heard(a, 10), 1000.0, 8000), 3000)


class BridgeTests(MixTestCase):
    """bridge and join exclude each other."""

    def test_join_unbridges(self) -> None:
        """A bridged channel that joins a mix is unbridged on both sides."""
        a, b, c = self.constant(1000), self.constant(2000), self.constant(-500)
        a.bridge(b)
        mix = Mix()
        a.join(mix)
        c.join(mix)
        self.tick(3)
        self.assertEqual(set(self.heard(a, 2).tolist()), {decoded(decoded(-500))})
        self.assertEqual(self.endpoints[b].sent, [])

    def test_bridge_leaves(self) -> None:
        """Bridging two channels takes both out of their mixes."""
        a, b, c = self.constant(1000), self.constant(2000), self.constant(-500)
        mix = Mix()
        for channel in (a, b, c):
            channel.join(mix)
        a.bridge(b)
        self.assertEqual(mix.members, (c,))
        self.assertIsNone(a.mix)
        self.assertIsNone(b.mix)
        self.tick(3)
        self.assertEqual(set(self.heard(a, 2).tolist()), {decoded(decoded(2000))})
