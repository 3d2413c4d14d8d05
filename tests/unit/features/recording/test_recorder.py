"""
Tests for :mod:`pbx.features.recording.recorder`: a relayed call's packets
to a stereo or mixed WAV file, in time, with loss concealed, events left
out and paused spans silent.
"""

from __future__ import annotations

import os
import wave
from typing import Any

import numpy as np

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from pbx.features.recording.recorder import CallRecorder, Downmix
from pbx.media import g711
from pbx.media.codecs import G722, PCMU, CodecUnavailable
from pbx.media.dtmf import encode_event
from pbx.media.rtp import RTPSender
from pbx.media.wav import WavWriter

TYPES = {0: ("pcmu", 8000), 101: ("telephone-event", 8000)}
CODECS = {"pcmu": PCMU()}


def inline(reactor: Any, pool: Any, f: Any, *args: Any) -> Deferred[Any]:
    """Run file work at once (a thread pool stand-in)."""
    return maybeDeferred(f, *args)


def tone(frequency: float, frames: int, amplitude: int = 8000) -> np.ndarray:
    """``frames`` 20 ms frames of a tone at 8 kHz."""
    t = np.arange(frames * 160) / 8000
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def read(path: str) -> tuple[int, np.ndarray]:
    """A WAV file's channels and samples (frames x channels)."""
    with wave.open(path, "rb") as w:
        channels = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return channels, data.reshape(-1, channels)


class Phone:
    """One leg's RTP stream of G.711 µ-law packets."""

    def __init__(self, audio: np.ndarray) -> None:
        self.sender = RTPSender(0)
        self.payloads = [
            g711.ulaw_encode(audio[i : i + 160]) for i in range(0, len(audio), 160)
        ]

    def packet(self, i: int) -> bytes:
        """Packet ``i`` (numbered by its place in the stream)."""
        sender = self.sender
        return (sender.next_packet(self.payloads[i], 160)).to_bytes()

    def decoded(self) -> np.ndarray:
        """What the packets decode to."""
        return np.concatenate([g711.ulaw_decode(p) for p in self.payloads])


class RecorderTestCase(SynchronousTestCase):
    """A recorder on a clock, writing into a temporary directory."""

    def make(self, mixed: bool = False) -> CallRecorder:
        """A recorder of a G.711 call."""
        self.clock = Clock()
        self.clock.advance(1000)
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "r.wav")
        writer = WavWriter(
            self.path,
            self.clock,
            threadpool=object(),
            channels=1 if mixed else 2,  # type: ignore[arg-type]
            defer_to_thread_pool=inline,
        )
        return CallRecorder(
            Downmix(writer) if mixed else writer, self.clock, lambda leg: TYPES, CODECS
        )

    def deliver(
        self,
        recorder: CallRecorder,
        packets: list[tuple[str, bytes]] | list[list[tuple[str, bytes]]],
    ) -> None:
        """Deliver each tick's packets, 20 ms apart."""
        for tick in packets:
            for leg, data in tick if isinstance(tick, list) else [tick]:
                recorder.packet(leg, data)
            self.clock.advance(0.02)

    def finish(self, recorder: CallRecorder) -> tuple[int, np.ndarray]:
        """Close and read the file."""
        self.assertEqual(self.successResultOf(recorder.close()), self.path)
        return read(self.path)


class StereoTests(RecorderTestCase):
    """Each party in its own channel, in time."""

    def test_each_party_its_channel(self) -> None:
        """The caller's audio is the left channel and the callee's the right, sample for sample."""
        recorder = self.make()
        a, b = Phone(tone(440, 50)), Phone(tone(1000, 50, 5000))
        self.deliver(
            recorder, [[("a", a.packet(i)), ("b", b.packet(i))] for i in range(50)]
        )
        channels, audio = self.finish(recorder)
        self.assertEqual(channels, 2)
        self.assertEqual(len(audio), 50 * 160)
        np.testing.assert_array_equal(audio[:, 0], a.decoded())
        np.testing.assert_array_equal(audio[:, 1], b.decoded())

    def test_reordered_packets_kept_in_place(self) -> None:
        """Packets that arrive out of order are written in sequence order, none lost."""
        recorder = self.make()
        a = Phone(tone(440, 20))
        packets = [a.packet(i) for i in range(20)]
        packets[5], packets[7] = packets[7], packets[5]
        self.deliver(recorder, [[("a", p)] for p in packets])
        _, audio = self.finish(recorder)
        np.testing.assert_array_equal(audio[:, 0], a.decoded())
        self.assertFalse(audio[:, 1].any())

    def test_loss_concealed(self) -> None:
        """A packet that never comes is concealed in its place; what follows keeps its timing."""
        recorder = self.make()
        a = Phone(tone(440, 30))
        packets = [a.packet(i) for i in range(30)]
        self.deliver(
            recorder, [[("a", p)] if i != 10 else [] for i, p in enumerate(packets)]
        )
        _, audio = self.finish(recorder)
        left, sent = audio[:, 0], a.decoded()
        self.assertEqual(len(left), len(sent))
        np.testing.assert_array_equal(left[:1600], sent[:1600])
        np.testing.assert_array_equal(left[1760:], sent[1760:])
        self.assertTrue(
            left[1600:1760].any(), "the lost frame is concealed, not silent"
        )

    def test_late_start_of_one_leg(self) -> None:
        """A leg whose audio starts later is placed later, by the clock."""
        recorder = self.make()
        a, b = Phone(tone(440, 40)), Phone(tone(1000, 20))
        self.deliver(
            recorder,
            [
                [("a", a.packet(i))] + ([("b", b.packet(i - 20))] if i >= 20 else [])
                for i in range(40)
            ],
        )
        _, audio = self.finish(recorder)
        self.assertFalse(audio[: 20 * 160, 1].any())
        np.testing.assert_array_equal(audio[20 * 160 :, 1], b.decoded())

    def test_events_and_rtcp_left_out(self) -> None:
        """Telephone-event packets and RTCP are not audio: the event's time is silence."""
        recorder = self.make()
        a = Phone(tone(440, 30))
        ticks: list[list[tuple[str, bytes]]] = []
        for i in range(30):
            if 10 <= i < 15:
                event = a.sender.next_event_packet(
                    encode_event("1", i == 14, 10, 160 * (i - 9)), pt=101, start=i == 10
                )
                if i == 14:
                    a.sender.advance(
                        5 * 160
                    )  # the event stood for five frames of audio
                ticks.append([("a", event.to_bytes()), ("a", b"\x80\xc8" + bytes(26))])
            else:
                ticks.append([("a", a.packet(i))])
        self.deliver(recorder, ticks)
        _, audio = self.finish(recorder)
        left, sent = audio[:, 0], a.decoded()
        np.testing.assert_array_equal(left[:1600], sent[:1600])
        self.assertFalse(left[1600:2400].any())

    def test_pause_records_silence(self) -> None:
        """Between pause and resume both channels are silent; before and after the call is as sent."""
        recorder = self.make()
        a, b = Phone(tone(440, 60)), Phone(tone(1000, 60))
        ticks = [[("a", a.packet(i)), ("b", b.packet(i))] for i in range(60)]
        self.deliver(recorder, ticks[:20])
        self.assertTrue(recorder.pause())
        self.assertFalse(recorder.pause())
        self.deliver(recorder, ticks[20:40])
        self.assertTrue(recorder.resume())
        self.deliver(recorder, ticks[40:])
        _, audio = self.finish(recorder)
        self.assertEqual(len(audio), 60 * 160)
        self.assertFalse(audio[20 * 160 : 40 * 160].any())
        np.testing.assert_array_equal(audio[: 20 * 160, 0], a.decoded()[: 20 * 160])
        np.testing.assert_array_equal(audio[40 * 160 :, 1], b.decoded()[40 * 160 :])
        self.assertEqual(recorder.paused_spans, [[20, 40]])

    def test_long_silence_kept_as_time(self) -> None:
        """A leg that stops sending for two seconds (silence suppression) resumes at its time."""
        recorder = self.make()
        a = Phone(tone(440, 150))
        self.deliver(recorder, [[("a", a.packet(i))] for i in range(20)])
        # The RTP clock runs on through the silence.
        a.sender.timestamp += 100 * 160
        self.deliver(recorder, [[] for _ in range(100)])
        self.deliver(
            recorder,
            [
                [("a", a.sender.next_packet(a.payloads[i], 160).to_bytes())]
                for i in range(120, 150)
            ],
        )
        _, audio = self.finish(recorder)
        self.assertEqual(len(audio), 150 * 160)
        self.assertFalse(audio[20 * 160 : 120 * 160, 0].any())
        np.testing.assert_array_equal(audio[120 * 160 :, 0], a.decoded()[120 * 160 :])


class MixedTests(RecorderTestCase):
    """Both parties summed into one channel."""

    def test_mixed_is_the_sum(self) -> None:
        """A mixed recording is mono and holds the clipped sum of both legs."""
        recorder = self.make(mixed=True)
        a, b = Phone(tone(440, 25)), Phone(tone(1000, 25))
        self.deliver(
            recorder, [[("a", a.packet(i)), ("b", b.packet(i))] for i in range(25)]
        )
        channels, audio = self.finish(recorder)
        self.assertEqual(channels, 1)
        total = a.decoded().astype(np.int32) + b.decoded()
        np.testing.assert_array_equal(audio[:, 0], np.clip(total, -32768, 32767))


class WidebandTests(SynchronousTestCase):
    """A G.722 call is recorded at 16 kHz."""

    def test_g722(self) -> None:
        """G.722 packets (8 kHz RTP clock, 16 kHz audio) fill 20 ms frames of a 16 kHz file, in time."""
        codec = G722()
        try:
            codec.probe()
        except CodecUnavailable as e:
            raise SkipTest(f"G.722 is not installed: {e}") from None
        clock = Clock()
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "w.wav")
        writer = WavWriter(
            path,
            clock,
            threadpool=object(),
            sample_rate=16000,
            channels=2,  # type: ignore[arg-type]
            defer_to_thread_pool=inline,
        )
        recorder = CallRecorder(
            writer, clock, lambda leg: {9: ("g722", 8000)}, {"g722": codec}
        )
        encoder, sender = codec.new_encoder(), RTPSender(9)
        t = np.arange(50 * 320) / 16000
        audio = (8000 * np.sin(2 * np.pi * 3000 * t)).astype(np.int16)
        for i in range(50):
            recorder.packet(
                "b",
                sender.next_packet(
                    encoder.encode(audio[i * 320 : (i + 1) * 320]), 160
                ).to_bytes(),
            )
            clock.advance(0.02)
        self.successResultOf(recorder.close())
        channels, recorded = read(path)
        with wave.open(path) as w:
            self.assertEqual(w.getframerate(), 16000)
        self.assertEqual(len(recorded), 50 * 320)
        right = recorded[:, 1].astype(np.float64)
        # A 3 kHz tone (beyond G.711's band) survives: the file is wideband.
        spectrum = np.abs(np.fft.rfft(right[3200:]))
        self.assertEqual(round(np.argmax(spectrum) * 16000 / len(right[3200:])), 3000)
        self.assertFalse(recorded[:, 0].any())
