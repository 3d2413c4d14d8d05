"""
Tests for :mod:`pbx.media.channel`: the media side of a call pbx answers.

A :class:`Channel` is driven here as its RTP endpoint drives it, one
``tick(frame)`` per 20 ms on a :class:`task.Clock`, with the real PCMU codec
and a fake endpoint that records what would have been sent.  Prompts are WAV
files written to a temporary prompt directory and loaded synchronously.
"""

from __future__ import annotations

import math
import os
import wave
from collections.abc import Iterable
from typing import Any

import numpy as np

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from pbx.interfaces import IChannel, ICodec, IDecoder
from pbx.media.channel import TONES, Channel, HungUp, Recording, channel_callbacks
from pbx.media.codecs import PCMA, PCMU
from pbx.media.dtmf import DigitEvent, RFC4733Sender, call_digits
from pbx.media.goertzel import COLUMNS, KEYPAD, ROWS
from pbx.media.jitter import Frame, Lost
from pbx.media.prompts import PromptLibrary
from pbx.media.rtp import RTPPacket
from pbx.media.wav import load_wav

RATE = 8000
FRAME = 160  # samples in 20 ms at 8 kHz
TICK = 0.02
TE_PT = 101


# -- signals ------------------------------------------------------------------


def sine(
    freqs: Iterable[float], samples: int, rate: int = RATE, amplitude: float = 6000.0
) -> np.ndarray:
    """``samples`` samples of the sum of sines at ``freqs``, each of ``amplitude``."""
    t = np.arange(samples) / rate
    wave_ = sum(np.sin(2 * np.pi * f * t) for f in freqs)
    return (np.asarray(wave_) * amplitude).astype(np.int16)


def dtmf(key: str, ms: float, amplitude: float = 7200.0) -> np.ndarray:
    """The two tones of a keypad key for ``ms`` milliseconds at 8 kHz."""
    row, column = divmod(KEYPAD.index(key), 4)
    return sine(
        (ROWS[row], COLUMNS[column]), int(ms * RATE / 1000), amplitude=amplitude
    )


def encode(pcm: np.ndarray) -> bytes:
    """``pcm`` in µ-law."""
    return PCMU().new_encoder().encode(np.asarray(pcm, dtype=np.int16))


def decode(payload: bytes) -> np.ndarray:
    """A µ-law payload as linear PCM."""
    return np.asarray(PCMU().new_decoder().decode(payload))


def round_trip(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` as it comes out of a PCMU encoder and decoder."""
    return decode(encode(pcm))


def strongest(pcm: np.ndarray, count: int, rate: int = RATE) -> list[float]:
    """The ``count`` strongest frequencies of ``pcm``, at least 30 Hz apart, ascending."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    found: list[float] = []
    for index in np.argsort(spectrum)[::-1]:
        if all(abs(freqs[index] - f) >= 30 for f in found):
            found.append(float(freqs[index]))
            if len(found) == count:
                break
    return sorted(found)


def rms(pcm: np.ndarray) -> float:
    """The root mean square level of ``pcm``."""
    return float(np.sqrt(np.mean(np.asarray(pcm, dtype=np.float64) ** 2)))


def write_wav(path: str, samples: np.ndarray, rate: int = RATE) -> str:
    """Write 16-bit mono ``samples`` to a WAV file at ``path`` (directories made)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


def load(path: str) -> Deferred[Any]:
    """The channel's loader, synchronous: the WAV is read before this returns."""
    return succeed(load_wav(path))


# -- fakes ----------------------------------------------------------------------


class FakeEndpoint:
    """Stands in for an RTPEndpoint: records sent frames and silent advances."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, int | None]] = []
        self.advanced: list[int] = []

    def send(self, payload: bytes, samples: int | None = None) -> bool:
        """Record one frame sent."""
        self.sent.append((payload, samples))
        return True

    def advance(self, samples: int) -> None:
        """Record a frame's worth of silence (nothing sent)."""
        self.advanced.append(samples)

    def audio(self) -> np.ndarray:
        """Everything sent so far, decoded and joined."""
        if not self.sent:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([decode(payload) for payload, _ in self.sent])


class FakeWriter:
    """A WavWriter double: keeps the frames written; close() fires at once."""

    def __init__(self, path: str, rate: int, broken: bool = False) -> None:
        self.path = path
        self.rate = rate
        self.broken = broken
        self.frames: list[np.ndarray] = []
        self.closed = False

    def write(self, samples: np.ndarray) -> None:
        """Keep a copy of one frame."""
        assert not self.closed
        self.frames.append(np.array(samples))

    def close(self) -> Deferred[str]:
        """Finish: the final path, or a failure when ``broken``."""
        self.closed = True
        if self.broken:
            return fail(OSError("disk full"))
        return succeed(self.path)


@implementer(IDecoder)
class SpyDecoder:
    """A PCMU decoder that records how many samples it was asked to conceal."""

    def __init__(self, concealed: list[int]) -> None:
        self._real = PCMU().new_decoder()
        self._concealed = concealed

    def decode(self, payload: bytes) -> Any:
        """Decode as PCMU does."""
        return self._real.decode(payload)

    def conceal(self, samples: int) -> Any:
        """Record the call, then conceal as PCMU does."""
        self._concealed.append(samples)
        return self._real.conceal(samples)


@implementer(ICodec)
class SpyPCMU:
    """PCMU whose decoders report their concealment."""

    name = "PCMU"
    clock_rate = 8000
    sample_rate = 8000
    channels = 1
    payload_type = 0
    fmtp = None

    def __init__(self) -> None:
        self.concealed: list[int] = []

    def new_encoder(self) -> Any:
        """A real µ-law encoder."""
        return PCMU().new_encoder()

    def new_decoder(self) -> SpyDecoder:
        """A µ-law decoder that records concealment."""
        return SpyDecoder(self.concealed)


# -- the harness ------------------------------------------------------------------

#: Prompts written for these tests: id -> samples at 8 kHz.
PROMPTS = {
    "test/short": sine((440.0,), 1000),  # 6.25 frames
    "test/long": sine((440.0,), 3200),  # 20 frames exactly
    "general/beep": sine((1000.0,), 800),  # 5 frames
}


class ChannelTestCase(SynchronousTestCase):
    """One PCMU channel on a task.Clock with a fake endpoint and test prompts."""

    def setUp(self) -> None:
        """Write the prompts and build the channel."""
        self.root = self.mktemp()
        for prompt_id, samples in PROMPTS.items():
            write_wav(
                os.path.join(self.root, "en", "8000", prompt_id + ".wav"), samples
            )
        self.prompts = PromptLibrary([self.root])
        self.clock = task.Clock()
        self.hangups: list[str] = []
        self.channel, self.endpoint = self.make_channel()
        self.sequence = 0
        self.timestamp = 0

    def tearDown(self) -> None:
        """No timer is left behind."""
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def make_channel(self, codec: Any = None) -> tuple[Channel, FakeEndpoint]:
        """A channel (PCMU unless ``codec``) with its own fake endpoint."""
        endpoint = FakeEndpoint()
        channel = Channel(
            self.clock,
            codec or PCMU(),
            self.prompts,
            load,
            endpoint=endpoint,
            on_hangup=self.hangups.append,
        )
        return channel, endpoint

    def frame(self, pcm: np.ndarray) -> Frame:
        """The next incoming PCMU frame carrying ``pcm``."""
        self.sequence += 1
        self.timestamp += len(pcm)
        return Frame(encode(pcm), self.timestamp, self.sequence, 0)

    def tick(
        self,
        frame: Frame | Lost | None = None,
        count: int = 1,
        channel: Channel | None = None,
    ) -> None:
        """Let 20 ms pass and give the channel one frame, ``count`` times."""
        for _ in range(count):
            self.clock.advance(TICK)
            (channel or self.channel).tick(frame)

    def feed(self, pcm: np.ndarray) -> None:
        """Give the channel ``pcm`` (a whole number of frames) one frame per tick."""
        for start in range(0, len(pcm), FRAME):
            self.tick(self.frame(pcm[start : start + FRAME]))

    def press(self, digit: str, channel: Channel | None = None) -> None:
        """One RFC 4733 key press as a phone at ptime 20 sends it (end packet three times)."""
        self.timestamp += 800
        for packet in RFC4733Sender(interval_ms=20).packets(digit, 60):
            self.sequence += 1
            (channel or self.channel).telephone_event(
                RTPPacket(
                    TE_PT,
                    self.sequence & 0xFFFF,
                    self.timestamp + packet.timestamp_offset,
                    0x5EED,
                    packet.payload,
                    packet.marker,
                )
            )


class ContractTests(ChannelTestCase):
    """The channel is what applications are promised."""

    def test_provides_ichannel(self) -> None:
        """A channel provides IChannel, every operation and attribute of it."""
        self.assertTrue(verifyObject(IChannel, self.channel))


# -- prompts ----------------------------------------------------------------------


class PlayTests(ChannelTestCase):
    """play(): prompts and WAV files sent one frame per tick."""

    def test_frames_then_fires(self) -> None:
        """A prompt of 1000 samples is sent as exactly 7 frames of 160, and play() fires after the 7th."""
        d = self.channel.play(["test/short"])
        self.tick(count=6)
        self.assertNoResult(d)
        self.assertEqual(len(self.endpoint.sent), 6)
        self.tick()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.endpoint.sent), math.ceil(1000 / FRAME))
        self.assertEqual([len(p) for p, _ in self.endpoint.sent], [FRAME] * 7)
        self.assertEqual({samples for _, samples in self.endpoint.sent}, {FRAME})
        self.tick()
        self.assertEqual(len(self.endpoint.sent), 7)
        self.assertEqual(self.endpoint.advanced, [FRAME])

    def test_last_frame_before_firing(self) -> None:
        """play() fires only after its last frame was sent, so hanging up at once does not cut it."""
        seen: list[int] = []
        d = self.channel.play(["test/short"])
        d.addCallback(lambda _: seen.append(len(self.endpoint.sent)))
        d.addCallback(lambda _: self.channel.hangup())
        self.tick(count=7)
        self.assertEqual(seen, [7])
        self.assertEqual(self.hangups, ["normal"])

    def test_audio_sent(self) -> None:
        """What is sent is the prompt through PCMU, its last frame padded with silence."""
        self.channel.play(["test/short"])
        self.tick(count=7)
        sent = self.endpoint.audio()
        np.testing.assert_array_equal(sent[:1000], round_trip(PROMPTS["test/short"]))
        self.assertFalse(sent[1000:].any())

    def test_several_items(self) -> None:
        """Items play in order, each padded to whole frames: 7 + 20 frames."""
        d = self.channel.play(["test/short", "test/long"])
        self.tick(count=26)
        self.assertNoResult(d)
        self.tick()
        self.successResultOf(d)
        sent = self.endpoint.audio()
        np.testing.assert_array_equal(
            sent[7 * FRAME :], round_trip(PROMPTS["test/long"])
        )

    def test_wav_path(self) -> None:
        """An item ending in .wav is played from that path rather than looked up."""
        path = write_wav(os.path.join(self.mktemp(), "hello.wav"), sine((600.0,), 480))
        d = self.channel.play([path])
        self.tick(count=3)
        self.successResultOf(d)
        self.assertEqual(strongest(self.endpoint.audio(), 1), [600.0])

    def test_resampled_prompt_whole(self) -> None:
        """A 16 kHz WAV on an 8 kHz channel is resampled whole: no silence in front, its end not cut."""
        path = write_wav(
            os.path.join(self.mktemp(), "wide.wav"),
            sine((500.0,), 3200, rate=16000),
            rate=16000,
        )
        d = self.channel.play([path])
        self.tick(count=10)
        self.successResultOf(d)
        self.assertEqual(len(self.endpoint.sent), 10)
        levels = [rms(decode(payload)) for payload, _ in self.endpoint.sent]
        self.assertTrue(all(level > 2000 for level in levels), levels)

    def test_missing_prompt(self) -> None:
        """An unknown prompt id fails play() with a KeyError and sends nothing."""
        d = self.channel.play(["no/such"])
        self.failureResultOf(d, KeyError)
        self.tick()
        self.assertEqual(self.endpoint.sent, [])

    def test_already_playing(self) -> None:
        """A second play() while one is playing fails with RuntimeError."""
        first = self.channel.play(["test/short"])
        second = self.channel.play(["test/short"])
        self.failureResultOf(second, RuntimeError)
        self.tick(count=7)
        self.successResultOf(first)

    def test_interrupt(self) -> None:
        """An interrupt digit stops playback at once and play() returns the digit."""
        d = self.channel.play(["test/long"], interrupt="5#")
        self.tick(count=3)
        self.press("5")
        self.assertEqual(self.successResultOf(d), "5")
        self.tick(count=5)
        self.assertEqual(len(self.endpoint.sent), 3)
        self.assertEqual(self.endpoint.advanced, [FRAME] * 5)

    def test_other_digit_does_not_interrupt(self) -> None:
        """A digit not in ``interrupt`` lets playback go on, and is kept for collect_digits."""
        d = self.channel.play(["test/short"], interrupt="#")
        self.press("5")
        self.tick(count=7)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(
            self.successResultOf(self.channel.collect_digits(max_digits=1)), "5"
        )

    def test_interrupt_digit_consumed(self) -> None:
        """The digit that interrupted is consumed: a later menu and collect_digits do not see it again."""
        first = self.channel.play(["test/long"], interrupt="12")
        self.tick()
        self.press("1")
        self.assertEqual(self.successResultOf(first), "1")
        second = self.channel.play(["test/short"], interrupt="12")
        self.assertNoResult(second)
        self.tick(count=7)
        self.assertIsNone(self.successResultOf(second))
        collected = self.channel.collect_digits(max_digits=1, timeout=1)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(collected), "")

    def test_pending_digit(self) -> None:
        """A digit pressed before play() returns at once without sending, and is consumed."""
        self.press("3")
        self.press("7")
        d = self.channel.play(["test/long"], interrupt="7")
        self.assertEqual(self.successResultOf(d), "7")
        self.tick()
        self.assertEqual(self.endpoint.sent, [])
        rest = self.channel.collect_digits(max_digits=2, timeout=1)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(rest), "3")


class ToneTests(ChannelTestCase):
    """tone(): call-progress tones."""

    def test_beep(self) -> None:
        """A 0.25 s beep is 13 frames (2000 samples) of 1000 Hz, and then fires."""
        d = self.channel.tone("beep", 0.25)
        self.tick(count=12)
        self.assertNoResult(d)
        self.tick()
        self.successResultOf(d)
        self.assertEqual(len(self.endpoint.sent), math.ceil(0.25 * RATE / FRAME))
        audio = self.endpoint.audio()
        self.assertEqual(strongest(audio[:2000], 1), [1000.0])
        self.assertFalse(audio[2000:].any())

    def test_busy(self) -> None:
        """One second of busy tone is 50 frames: 480 + 620 Hz for half a second, then silence."""
        self.assertEqual(TONES["busy"], ((480.0, 620.0), 0.5, 0.5))
        d = self.channel.tone("busy", 1.0)
        self.tick(count=50)
        self.successResultOf(d)
        self.assertEqual(len(self.endpoint.sent), 50)
        audio = self.endpoint.audio()
        self.assertEqual(strongest(audio[:4000], 2), [480.0, 620.0])
        self.assertGreater(rms(audio[:4000]), 3000)
        self.assertFalse(audio[4000:].any())


class EchoTests(ChannelTestCase):
    """echo(): the caller's audio sent back."""

    def test_echo(self) -> None:
        """With echo on, each frame sent is the frame received, decoded and re-encoded."""
        self.channel.echo(True)
        speech = sine((300.0, 1100.0), 3 * FRAME)
        self.feed(speech)
        self.assertEqual(len(self.endpoint.sent), 3)
        np.testing.assert_array_equal(self.endpoint.audio(), round_trip(speech))

    def test_echo_off(self) -> None:
        """With echo off (the default, or turned off) nothing is sent back."""
        self.feed(sine((300.0,), FRAME))
        self.channel.echo(True)
        self.channel.echo(False)
        self.feed(sine((300.0,), FRAME))
        self.assertEqual(self.endpoint.sent, [])
        self.assertEqual(self.endpoint.advanced, [FRAME, FRAME])

    def test_nothing_received(self) -> None:
        """With echo on but no frame from the caller, the endpoint only advances."""
        self.channel.echo(True)
        self.tick(count=2)
        self.assertEqual(self.endpoint.sent, [])
        self.assertEqual(self.endpoint.advanced, [FRAME, FRAME])

    def test_prompt_before_echo(self) -> None:
        """A prompt playing takes precedence over the echo."""
        self.channel.echo(True)
        d = self.channel.play(["test/long"])
        self.feed(np.zeros(20 * FRAME, dtype=np.int16))
        self.successResultOf(d)
        np.testing.assert_array_equal(
            self.endpoint.audio(), round_trip(PROMPTS["test/long"])
        )


class BridgeTests(ChannelTestCase):
    """bridge(): two channels' media connected both ways."""

    def test_both_ways(self) -> None:
        """Each channel sends what the other received."""
        other, other_endpoint = self.make_channel()
        self.channel.bridge(other)
        hello, world = sine((400.0,), FRAME), sine((900.0,), FRAME)
        self.tick(self.frame(hello))
        self.tick(self.frame(world), channel=other)
        np.testing.assert_array_equal(other_endpoint.audio(), round_trip(hello))
        self.tick(self.frame(world))
        np.testing.assert_array_equal(self.endpoint.audio(), round_trip(world))

    def test_other_codec(self) -> None:
        """A PCMU channel bridged to a PCMA one sends the PCMU caller's audio in A-law."""
        other, other_endpoint = self.make_channel(PCMA())
        self.channel.bridge(other)
        hello = sine((400.0,), FRAME)
        self.tick(self.frame(hello))
        self.tick(channel=other)
        [(payload, samples)] = other_endpoint.sent
        self.assertEqual(samples, FRAME)
        self.assertEqual(payload, PCMA().new_encoder().encode(round_trip(hello)))

    def test_silent_side_not_repeated(self) -> None:
        """When one side stops sending, the other side gets silence, not its last frame again and again."""
        other, other_endpoint = self.make_channel()
        self.channel.bridge(other)
        self.tick(self.frame(sine((400.0,), FRAME)))
        self.tick(channel=other)
        self.tick(count=3)
        self.tick(count=3, channel=other)
        self.assertEqual(len(other_endpoint.sent), 1)
        self.assertEqual(other_endpoint.advanced, [FRAME] * 3)

    def test_hung_up_side_not_repeated(self) -> None:
        """When one side hangs up, the other stops getting its audio."""
        other, other_endpoint = self.make_channel()
        self.channel.bridge(other)
        self.tick(self.frame(sine((400.0,), FRAME)))
        self.channel.closed()
        self.tick(count=2, channel=other)
        self.assertEqual(other_endpoint.sent, [])
        self.assertEqual(other_endpoint.advanced, [FRAME] * 2)


# -- digits -------------------------------------------------------------------------


class CollectDigitsTests(ChannelTestCase):
    """collect_digits(): maximum, terminator, timeout and type-ahead."""

    def test_max_digits(self) -> None:
        """Collection stops at max_digits; further digits are kept for the next collection."""
        d = self.channel.collect_digits(max_digits=2, timeout=5)
        self.press("1")
        self.assertNoResult(d)
        self.press("2")
        self.assertEqual(self.successResultOf(d), "12")
        self.press("3")
        self.assertEqual(
            self.successResultOf(self.channel.collect_digits(max_digits=1)), "3"
        )

    def test_terminator(self) -> None:
        """The terminator ends collection early and is not returned."""
        d = self.channel.collect_digits(max_digits=10, timeout=5, terminator="#")
        for digit in "42#":
            self.press(digit)
        self.assertEqual(self.successResultOf(d), "42")

    def test_no_terminator(self) -> None:
        """With terminator="" a # is an ordinary digit."""
        d = self.channel.collect_digits(max_digits=3, timeout=5, terminator="")
        for digit in "4#2":
            self.press(digit)
        self.assertEqual(self.successResultOf(d), "4#2")

    def test_timeout(self) -> None:
        """Collection ends ``timeout`` seconds after the last digit with what was entered."""
        d = self.channel.collect_digits(max_digits=4, timeout=5)
        self.clock.advance(3)
        self.press("9")
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), "9")

    def test_timeout_nothing(self) -> None:
        """Collection with no digit at all ends after ``timeout`` with an empty string."""
        d = self.channel.collect_digits(max_digits=4, timeout=2)
        self.clock.advance(1.99)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        self.assertEqual(self.successResultOf(d), "")

    def test_type_ahead(self) -> None:
        """Digits pressed before collect_digits are collected at once."""
        for digit in "123":
            self.press(digit)
        self.assertEqual(
            self.successResultOf(self.channel.collect_digits(max_digits=3)), "123"
        )

    def test_type_ahead_beyond_max(self) -> None:
        """Type-ahead "1234#" gives at most max_digits ("12"); "34" is left for the next collection."""
        for digit in "1234#":
            self.press(digit)
        first = self.channel.collect_digits(max_digits=2, terminator="#")
        self.assertEqual(self.successResultOf(first), "12")
        second = self.channel.collect_digits(max_digits=5, terminator="#")
        self.assertEqual(self.successResultOf(second), "34")


class DigitSourceTests(ChannelTestCase):
    """Digits from RFC 4733 packets, SIP INFO and in-band tones."""

    def test_rfc4733_once(self) -> None:
        """The start, update and three end packets of one RFC 4733 press give one digit."""
        d = self.channel.collect_digits(max_digits=2, timeout=1)
        self.press("7")
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(d), "7")

    def test_rfc4733_two_presses(self) -> None:
        """Two presses of the same key (two event timestamps) give two digits."""
        d = self.channel.collect_digits(max_digits=2, timeout=1)
        self.press("7")
        self.press("7")
        self.assertEqual(self.successResultOf(d), "77")

    def test_rfc4733_malformed(self) -> None:
        """A telephone-event packet whose payload is not 4 bytes is dropped, and later presses still count."""
        self.channel.telephone_event(RTPPacket(TE_PT, 1, 160, 0x5EED, b"\x05\x80"))
        self.press("5")
        self.assertEqual(
            self.successResultOf(self.channel.collect_digits(max_digits=1)), "5"
        )

    def test_info(self) -> None:
        """A SIP INFO digit comes out after the 0.25 s wait for a better source, on a media tick."""
        d = self.channel.collect_digits(max_digits=1, timeout=5)
        self.channel.info_digit(DigitEvent("5", 160, "info"))
        self.tick(count=12)
        self.assertNoResult(d)
        self.tick()
        self.assertEqual(self.successResultOf(d), "5")

    def test_inband(self) -> None:
        """A DTMF tone in the caller's PCMU audio is detected as a digit."""
        d = self.channel.collect_digits(max_digits=2, timeout=5)
        self.feed(
            np.concatenate([dtmf("5", 100), np.zeros(30 * FRAME, dtype=np.int16)])
        )
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(d), "5")

    def test_inband_sequence(self) -> None:
        """Several in-band key presses come out in order; an in-band # terminates."""
        d = self.channel.collect_digits(max_digits=3, timeout=5)
        gap = np.zeros(5 * FRAME, dtype=np.int16)
        self.feed(
            np.concatenate(
                [
                    dtmf("1", 100),
                    gap,
                    dtmf("9", 100),
                    gap,
                    dtmf("#", 100),
                    gap,
                    gap,
                    gap,
                ]
            )
        )
        self.assertEqual(self.successResultOf(d), "19")

    def test_inband_and_rfc4733_once(self) -> None:
        """A press reported both by RFC 4733 and by its tone in the audio counts once."""
        d = self.channel.collect_digits(max_digits=2, timeout=2)
        self.press("5")
        self.feed(
            np.concatenate([dtmf("5", 100), np.zeros(20 * FRAME, dtype=np.int16)])
        )
        self.clock.advance(2)
        self.assertEqual(self.successResultOf(d), "5")

    def test_no_inband_with_telephone_events(self) -> None:
        """
        A call that negotiated telephone-event (call_digits(True)) takes no
        tone in its audio for a key, not even a clean DTMF pair (talk-off),
        and does not run the detector; its RFC 4733 presses count.
        """
        self.channel.digits = call_digits(True)
        fed: list[Any] = []

        class Detector:
            def feed(self, pcm: Any) -> list[Any]:
                fed.append(pcm)
                return []

        self.channel._detector = Detector()  # type: ignore[assignment]
        d = self.channel.collect_digits(max_digits=1, timeout=2)
        self.feed(np.concatenate([dtmf("5", 100), np.zeros(20 * FRAME, dtype=np.int16)]))
        self.assertEqual(fed, [])
        self.assertNoResult(d)
        self.press("7")
        self.assertEqual(self.successResultOf(d), "7")

    def test_inband_without_telephone_events(self) -> None:
        """Without telephone-event (call_digits(False)) in-band tones are keys, and SIP INFO still counts."""
        self.channel.digits = call_digits(False)
        d = self.channel.collect_digits(max_digits=2, timeout=5)
        self.feed(np.concatenate([dtmf("5", 100), np.zeros(20 * FRAME, dtype=np.int16)]))
        self.channel.info_digit(DigitEvent("6", 160, "info"))
        self.tick(count=20)
        self.assertEqual(self.successResultOf(d), "56")

    def test_speech_no_digit(self) -> None:
        """A single tone (not a DTMF pair) gives no digit."""
        d = self.channel.collect_digits(max_digits=1, timeout=2)
        self.feed(
            np.concatenate(
                [sine((770.0,), 20 * FRAME), np.zeros(20 * FRAME, dtype=np.int16)]
            )
        )
        self.clock.advance(2)
        self.assertEqual(self.successResultOf(d), "")


# -- recording ---------------------------------------------------------------------


class RecordTests(ChannelTestCase):
    """record(): stops on silence, length, a digit, or hang-up."""

    def setUp(self) -> None:
        """Writers made by record() are kept."""
        super().setUp()
        self.writers: list[FakeWriter] = []

    def writer(self, path: str, rate: int) -> FakeWriter:
        """Make a fake writer and keep it."""
        writer = FakeWriter(path, rate)
        self.writers.append(writer)
        return writer

    def test_silence(self) -> None:
        """After speech, ``silence_timeout`` seconds of quiet ends the recording (reason "silence")."""
        d = self.channel.record("msg.wav", self.writer, silence_timeout=1.0, beep=False)
        self.feed(sine((300.0,), 10 * FRAME))
        self.feed(np.zeros(49 * FRAME, dtype=np.int16))
        self.assertNoResult(d)
        self.feed(np.zeros(FRAME, dtype=np.int16))
        self.assertEqual(self.successResultOf(d), Recording("msg.wav", 1.2, "silence"))
        [writer] = self.writers
        self.assertEqual(
            (writer.rate, len(writer.frames), writer.closed), (RATE, 60, True)
        )
        np.testing.assert_array_equal(
            writer.frames[0], round_trip(sine((300.0,), 10 * FRAME))[:FRAME]
        )

    def test_max_seconds(self) -> None:
        """Continuous speech is cut at ``max_seconds`` (reason "max")."""
        d = self.channel.record("msg.wav", self.writer, max_seconds=0.5, beep=False)
        self.feed(sine((300.0,), 24 * FRAME))
        self.assertNoResult(d)
        self.feed(sine((300.0,), FRAME))
        self.assertEqual(self.successResultOf(d), Recording("msg.wav", 0.5, "max"))
        self.feed(sine((300.0,), FRAME))
        self.assertEqual(len(self.writers[0].frames), 25)

    def test_stop_digit(self) -> None:
        """A # ends the recording (reason "digit", digit "#") and is not left for collect_digits."""
        d = self.channel.record("msg.wav", self.writer, beep=False)
        self.feed(sine((300.0,), 10 * FRAME))
        self.press("#")
        self.assertEqual(
            self.successResultOf(d), Recording("msg.wav", 0.2, "digit", "#")
        )
        menu = self.channel.collect_digits(max_digits=1, timeout=3, terminator="#")
        self.press("1")
        self.assertEqual(self.successResultOf(menu), "1")

    def test_other_digit(self) -> None:
        """A digit not in ``stop_digits`` does not end the recording."""
        d = self.channel.record("msg.wav", self.writer, stop_digits="#", beep=False)
        self.press("5")
        self.feed(sine((300.0,), 5 * FRAME))
        self.assertNoResult(d)
        self.channel.closed()
        self.assertEqual(self.successResultOf(d).reason, "hangup")

    def test_hangup(self) -> None:
        """Hanging up ends the recording with what was recorded (reason "hangup")."""
        d = self.channel.record("msg.wav", self.writer, beep=False)
        self.feed(sine((300.0,), 15 * FRAME))
        self.channel.closed()
        self.assertEqual(self.successResultOf(d), Recording("msg.wav", 0.3, "hangup"))
        self.assertTrue(self.writers[0].closed)

    def test_beep_first(self) -> None:
        """With beep, the beep prompt is played first and the caller is recorded only after it."""
        d = self.channel.record("msg.wav", self.writer, max_seconds=0.1)
        self.assertEqual(self.writers, [])
        self.feed(sine((300.0,), 5 * FRAME))
        self.assertEqual(len(self.endpoint.sent), 5)
        self.assertEqual(strongest(self.endpoint.audio(), 1), [1000.0])
        self.assertEqual(len(self.writers), 1)
        self.feed(sine((300.0,), 5 * FRAME))
        self.assertEqual(self.successResultOf(d), Recording("msg.wav", 0.1, "max"))

    def test_writer_fails(self) -> None:
        """A recording whose file cannot be written ends with path None, and the failure is logged."""
        d = self.channel.record(
            "msg.wav",
            lambda path, rate: FakeWriter(path, rate, broken=True),
            max_seconds=0.1,
            beep=False,
        )
        self.feed(sine((300.0,), 5 * FRAME))
        self.assertEqual(self.successResultOf(d), Recording(None, 0.1, "max"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class RecordArrivalsTests(RecordTests):
    """
    With ``record_arrivals`` the recording is made of the packets as they
    arrive, in sequence order: the jitter buffer's concealment and drops do
    not reach it.
    """

    def setUp(self) -> None:
        """The channel records arrivals; its ticks get what playout would give."""
        super().setUp()
        self.channel.record_arrivals = True

    def packet(self, seq: int, pcm: np.ndarray) -> RTPPacket:
        """The PCMU packet ``seq`` carrying ``pcm`` (one frame)."""
        return RTPPacket(0, seq, seq * FRAME, 0x5EED, encode(pcm))

    def feed(self, pcm: np.ndarray) -> None:
        """Each frame of ``pcm`` arrives as a packet and is played out in the same tick."""
        for start in range(0, len(pcm), FRAME):
            frame = self.frame(pcm[start : start + FRAME])
            self.channel.packet(self.packet(frame.sequence, pcm[start : start + FRAME]))
            self.tick(frame)

    def test_late_packets_recorded(self) -> None:
        """
        Frames 3-5 come 120 ms late, after 6: playout concealed them, the
        recording has them in their place.
        """
        speech = sine((300.0, 700.0), 8 * FRAME)
        frames = [speech[i * FRAME : (i + 1) * FRAME] for i in range(8)]
        d = self.channel.record("msg.wav", self.writer, beep=False)
        for seq in (1, 2, 6, 7, 8, 3, 4, 5):
            self.channel.packet(self.packet(seq, frames[seq - 1]))
            self.tick(Lost(seq * FRAME, seq, FRAME) if seq in (3, 4, 5) else None)
        self.channel.closed()
        self.assertEqual(self.successResultOf(d), Recording("msg.wav", 0.16, "hangup"))
        np.testing.assert_array_equal(np.concatenate(self.writers[0].frames), round_trip(speech))

    def test_lost_packet_concealed_at_hangup(self) -> None:
        """A packet that never came is concealed in its place when the call ends with later ones held."""
        speech = sine((300.0,), 4 * FRAME)
        d = self.channel.record("msg.wav", self.writer, beep=False)
        for seq in (1, 3, 4):
            self.channel.packet(self.packet(seq, speech[(seq - 1) * FRAME : seq * FRAME]))
        self.channel.closed()
        self.assertEqual(self.successResultOf(d).seconds, 0.08)
        written = self.writers[0].frames
        self.assertEqual(len(written), 4)
        np.testing.assert_array_equal(written[2], round_trip(speech[2 * FRAME : 3 * FRAME]))

    def test_packets_before_and_after_ignored(self) -> None:
        """Packets before record() or after the recording ended are not written."""
        speech = sine((300.0,), 3 * FRAME)
        self.channel.packet(self.packet(1, speech[:FRAME]))
        d = self.channel.record("msg.wav", self.writer, max_seconds=0.02, beep=False)
        self.channel.packet(self.packet(2, speech[FRAME : 2 * FRAME]))
        self.assertEqual(self.successResultOf(d).reason, "max")
        self.channel.packet(self.packet(3, speech[2 * FRAME :]))
        [written] = self.writers[0].frames
        np.testing.assert_array_equal(written, round_trip(speech[FRAME : 2 * FRAME]))


# -- hanging up ----------------------------------------------------------------------


class HangupTests(ChannelTestCase):
    """hangup() and closed(): waiting coroutines are woken, media stops."""

    def test_hangup_asks_signalling(self) -> None:
        """hangup() asks the signalling side to end the call, once."""
        self.successResultOf(self.channel.hangup("busy"))
        self.channel.hangup("again")
        self.assertEqual(self.hangups, ["busy"])
        self.assertTrue(self.channel.hung_up)

    def test_remote_close(self) -> None:
        """closed() (the caller hung up) does not ask the signalling side to hang up."""
        self.channel.closed("BYE")
        self.assertEqual(self.hangups, [])
        self.assertTrue(self.channel.hung_up)

    def test_playing_fails(self) -> None:
        """A play() in progress fails with HungUp; nothing more is sent."""
        d = self.channel.play(["test/long"])
        self.tick(count=2)
        self.channel.closed()
        self.failureResultOf(d, HungUp)
        self.tick(count=3)
        self.assertEqual(len(self.endpoint.sent), 2)
        self.assertEqual(self.endpoint.advanced, [])

    def test_collect_fails(self) -> None:
        """A collect_digits() in progress fails with HungUp and leaves no timer behind."""
        d = self.channel.collect_digits(max_digits=3, timeout=10)
        self.press("1")
        self.channel.hangup()
        self.failureResultOf(d, HungUp)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_wait_for_hangup(self) -> None:
        """wait_for_hangup() fires when the call ends, and at once afterwards."""
        d = self.channel.wait_for_hangup()
        self.assertNoResult(d)
        self.channel.closed()
        self.assertIsNone(self.successResultOf(d))
        self.assertIsNone(self.successResultOf(self.channel.wait_for_hangup()))

    def test_after_hangup(self) -> None:
        """play() and tone() after the call ended fail with HungUp."""
        self.channel.closed()
        self.failureResultOf(self.channel.play(["test/short"]), HungUp)
        self.assertRaises(HungUp, self.channel.tone, "beep", 1)

    def test_answer(self) -> None:
        """answer() marks the channel answered and fires at once."""
        self.assertIsNone(self.successResultOf(self.channel.answer()))
        self.assertTrue(self.channel.answered)


# -- what comes in -----------------------------------------------------------------------


class InboundTests(ChannelTestCase):
    """Lost frames, odd frame sizes, undecodable payloads."""

    def test_lost_concealed(self) -> None:
        """A Lost slot is concealed by the decoder: the last frame is repeated, fading."""
        codec = SpyPCMU()
        verifyObject(ICodec, codec)
        verifyObject(IDecoder, codec.new_decoder())
        channel, endpoint = self.make_channel(codec)
        channel.echo(True)
        speech = sine((300.0,), FRAME)
        self.tick(self.frame(speech), channel=channel)
        self.tick(
            Lost(self.timestamp + FRAME, self.sequence + 1, FRAME), channel=channel
        )
        self.assertEqual(codec.concealed, [FRAME])
        self.assertEqual(channel.frames_in, 2)
        [(first, _), (second, _)] = endpoint.sent
        # Repeated at full level for 10 ms, then fading (G.711 Appendix I style).
        np.testing.assert_array_equal(decode(second)[:80], decode(first)[:80])
        self.assertLess(rms(decode(second)[80:]), rms(decode(first)[80:]))

    def test_short_frame_padded(self) -> None:
        """A received frame shorter than 20 ms is echoed padded with silence to 160 samples."""
        self.channel.echo(True)
        short = sine((300.0,), 100)
        self.tick(self.frame(short))
        [(payload, samples)] = self.endpoint.sent
        self.assertEqual((len(payload), samples), (FRAME, FRAME))
        np.testing.assert_array_equal(decode(payload)[:100], round_trip(short))
        self.assertFalse(decode(payload)[100:].any())

    def test_long_frame_cut(self) -> None:
        """A received frame longer than 20 ms is echoed cut to 160 samples."""
        self.channel.echo(True)
        long = sine((300.0,), 240)
        self.tick(self.frame(long))
        [(payload, _)] = self.endpoint.sent
        np.testing.assert_array_equal(decode(payload), round_trip(long)[:FRAME])

    def test_frames_counted(self) -> None:
        """Frames received are counted; ticks without a frame are not."""
        self.feed(np.zeros(3 * FRAME, dtype=np.int16))
        self.tick(count=2)
        self.assertEqual(self.channel.frames_in, 3)

    def test_no_endpoint(self) -> None:
        """A channel without an endpoint yet takes ticks without sending anywhere."""
        channel = Channel(self.clock, PCMU(), self.prompts, load)
        d = channel.play(["test/short"])
        self.tick(count=7, channel=channel)
        self.successResultOf(d)


class ChannelCallbacksTests(SynchronousTestCase):
    """channel_callbacks: endpoint callbacks that reach a call's channel once it exists."""

    def test_forwarded_once_set(self) -> None:
        """Before the owner has a channel nothing happens; then frames, packets and events go to it."""

        class Recorder:
            def __init__(self) -> None:
                self.calls: list[tuple[str, Any]] = []

            def tick(self, frame: Any) -> None:
                self.calls.append(("tick", frame))

            def packet(self, packet: Any) -> None:
                self.calls.append(("packet", packet))

            def telephone_event(self, packet: Any) -> None:
                self.calls.append(("event", packet))

        class Owner:
            channel: Recorder | None = None

        owner = Owner()
        callbacks = channel_callbacks(owner)
        for callback in callbacks.values():
            callback("early")
        owner.channel = Recorder()
        callbacks["on_frame"](1)
        callbacks["on_packet"](2)
        callbacks["on_telephone_event"](3)
        self.assertEqual(owner.channel.calls, [("tick", 1), ("packet", 2), ("event", 3)])
