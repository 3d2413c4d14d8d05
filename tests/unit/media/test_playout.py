"""Tests for :mod:`pbx.media.playout`: one encoder per class and codec, every listener fed from it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.interfaces import ICodec, IEncoder
from pbx.media.codecs import G722, PCMU
from pbx.media.g711 import ulaw_decode
from pbx.media.media_clock import MediaClock
from pbx.media.music import MusicClass
from pbx.media.playout import MAX_BURST, HoldMusic, Playout


@implementer(IEncoder)
class RawEncoder:
    """Encodes a frame as its int16 bytes, so tests can read it back."""

    def encode(self, pcm: np.ndarray) -> bytes:
        """The samples' bytes."""
        return pcm.astype("<i2").tobytes()


@implementer(ICodec)
class RawCodec:
    """An 8 kHz codec that counts the encoders made."""

    name = "RAW"
    clock_rate = 8000
    sample_rate = 8000
    channels = 1
    payload_type = None
    fmtp = None

    def __init__(self) -> None:
        self.encoders = 0

    def new_encoder(self) -> RawEncoder:
        """A new encoder (counted)."""
        self.encoders += 1
        return RawEncoder()

    def new_decoder(self) -> None:
        """Not needed by a playout."""


def counting_class(samples: int = 1000) -> MusicClass:
    """A class whose sample i is i (as a fraction of full scale), at 8 kHz."""
    return MusicClass("count", 8000, np.arange(samples) / 32768.0)


class PlayoutTests(SynchronousTestCase):
    """One frame per tick, encoded once, to every sink, looping over the track."""

    def setUp(self) -> None:
        """A playout of a 1000-sample counting class in the raw codec, on a task.Clock."""
        self.clock = Clock()
        self.media_clock = MediaClock(self.clock)
        self.codec = RawCodec()
        verifyObject(ICodec, self.codec)
        self.playout = Playout(counting_class(), self.codec, self.media_clock)

    def test_one_encoder_many_sinks(self) -> None:
        """A thousand sinks get the same payload each tick from one encoder."""
        heard: list[list[bytes]] = [[] for _ in range(1000)]
        for box in heard:
            self.playout.add(box.append)
        self.clock.advance(0.02)
        self.clock.advance(0.02)
        self.assertEqual(self.codec.encoders, 1)
        self.assertEqual(self.playout.frames_played, 2)
        self.assertEqual({tuple(box) for box in heard}, {tuple(heard[0])})
        self.assertEqual(len(heard[0]), 2)

    def test_frames_loop(self) -> None:
        """Frames are 160 samples in track order; the last is padded with silence; then it starts over."""
        frames: list[bytes] = []
        self.playout.add(frames.append)
        for _ in range(8):
            self.clock.advance(0.02)
        samples = [np.frombuffer(f, "<i2") for f in frames]
        self.assertEqual(list(samples[0][:3]), [0, 1, 2])
        self.assertEqual(list(samples[5][:3]), [800, 801, 802])
        self.assertEqual(list(samples[6][:3]), [960, 961, 962])
        self.assertEqual(int(samples[6][40]), 0)  # sample 1000: padding
        self.assertEqual(list(samples[7][:3]), [0, 1, 2])

    def test_ticks_only_with_listeners(self) -> None:
        """The playout subscribes to the media clock with its first sink and leaves with its last."""
        self.assertEqual(self.media_clock.subscribers, 0)
        first = self.playout.add(lambda payload: None)
        second = self.playout.add(lambda payload: None)
        self.assertEqual((self.media_clock.subscribers, self.playout.listeners), (1, 2))
        first()
        first()
        self.assertEqual((self.media_clock.subscribers, self.playout.listeners), (1, 1))
        second()
        self.assertEqual(self.media_clock.subscribers, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_keeps_its_place(self) -> None:
        """A class resumes where it was when the next listener comes, with the same encoder."""
        frames: list[bytes] = []
        remove = self.playout.add(frames.append)
        self.clock.advance(0.02)
        remove()
        self.playout.add(frames.append)
        self.clock.advance(0.02)
        self.assertEqual(int(np.frombuffer(frames[1], "<i2")[0]), 160)
        self.assertEqual(self.codec.encoders, 1)

    def test_sink_leaving_during_tick(self) -> None:
        """A sink that removes itself while being fed does not stop the others."""
        heard: list[bytes] = []
        remove: list[object] = []
        remove.append(self.playout.add(lambda payload: remove[0]()))  # type: ignore[operator]
        self.playout.add(heard.append)
        self.clock.advance(0.02)
        self.clock.advance(0.02)
        self.assertEqual(len(heard), 2)
        self.assertEqual(self.playout.listeners, 1)

    def test_real_codecs(self) -> None:
        """PCMU gets 160 samples a frame (timestamp step 160); G.722 320 at 16 kHz, RTP step still 160."""
        music = MusicClass(
            "tone", 8000, 0.3 * np.sin(np.arange(8000) * 2 * np.pi * 400 / 8000)
        )
        pcmu = Playout(music, PCMU(), self.media_clock)
        g722 = Playout(music, G722(), self.media_clock)
        frames: list[bytes] = []
        pcmu.add(frames.append)
        g722.add(frames.append)
        self.clock.advance(0.02)
        self.assertEqual((pcmu.timestamp_step, g722.timestamp_step), (160, 160))
        self.assertEqual([len(f) for f in frames], [160, 160])
        decoded = ulaw_decode(frames[0]).astype(float)
        self.assertGreater(
            np.corrcoef(decoded, music.pcm(8000)[:160].astype(float))[0, 1], 0.99
        )


class ManualClock:
    """A media clock whose ticks the test fires, at the times it sets."""

    ptime = 0.02

    def __init__(self) -> None:
        self.now = 0.0
        self.ticks: list[Callable[[int], object]] = []

    def seconds(self) -> float:
        """The time the test set."""
        return self.now

    def add(self, tick: Callable[[int], object]) -> Callable[[], None]:
        """Keep ``tick`` until the returned function is called."""
        self.ticks.append(tick)
        return lambda: self.ticks.remove(tick)

    def tick_at(self, now: float) -> None:
        """One tick (of count 1) at ``now``."""
        self.now = now
        for tick in list(self.ticks):
            tick(1)


class CatchUpTests(SynchronousTestCase):
    """Frames follow the clock even when ticks are lost, a burst at most MAX_BURST long."""

    def setUp(self) -> None:
        """A playout on a clock whose ticks the test fires."""
        self.clock = ManualClock()
        self.playout = Playout(counting_class(100_000), RawCodec(), self.clock)  # type: ignore[arg-type]
        self.frames: list[int] = []
        self.playout.add(
            lambda payload: self.frames.append(
                int(np.frombuffer(payload, "<i2")[0]) // 160
            )
        )

    def test_on_time(self) -> None:
        """One frame a tick when ticks come every 20 ms, a little early or late."""
        for i, jitter in enumerate([0.0, 0.004, -0.006, 0.009, 0.0], start=1):
            self.clock.tick_at(0.02 * i + jitter)
        self.assertEqual(self.frames, [0, 1, 2, 3, 4])

    def test_lost_ticks(self) -> None:
        """A tick that comes 60 ms after the one before sends the three frames due."""
        self.clock.tick_at(0.02)
        self.clock.tick_at(0.08)
        self.assertEqual(self.frames, [0, 1, 2, 3])

    def test_long_stall(self) -> None:
        """After a one-second stall, MAX_BURST frames go at once, then one a tick, the music where it was."""
        self.clock.tick_at(0.02)
        self.clock.tick_at(1.02)
        self.assertEqual(self.frames, list(range(1 + MAX_BURST)))
        self.clock.tick_at(1.04)
        self.assertEqual(self.frames[-1], MAX_BURST + 1)

    def test_early_first_tick(self) -> None:
        """A clock already running may tick right after the first listener comes: the first frame waits for the next."""
        self.clock.tick_at(0.001)
        self.assertEqual(self.frames, [])
        self.clock.tick_at(0.021)
        self.assertEqual(self.frames, [0])


class HoldMusicTests(SynchronousTestCase):
    """Which class an extension's held party hears, and one playout per class and codec."""

    def setUp(self) -> None:
        """Classes ``default`` and ``sales``; 1001 uses sales."""
        self.media_clock = MediaClock(Clock())
        self.classes = {"default": counting_class(), "sales": counting_class(500)}
        self.music = HoldMusic(
            self.classes, {"1001": "sales"}, {"pcmu": PCMU()}, self.media_clock
        )

    def test_class_for(self) -> None:
        """An extension with a class gets it; any other the default."""
        self.assertEqual(self.music.class_for("1001"), "sales")
        self.assertEqual(self.music.class_for("1002"), "default")

    def test_line_class_wins(self) -> None:
        """An outside line's class wins over the extension's; a line class we do not have is passed over."""
        self.assertEqual(self.music.class_for("1002", "sales"), "sales")
        self.assertEqual(self.music.class_for("1001", "default"), "default")
        self.assertEqual(self.music.class_for("1001", "gone"), "sales")
        self.assertEqual(self.music.class_for("1002", "gone"), "default")

    def test_one_playout_per_class_and_codec(self) -> None:
        """Asking twice (any case) gives the same playout; another class another one."""
        first = self.music.playout("sales", "PCMU")
        self.assertIs(self.music.playout("sales", "pcmu"), first)
        self.assertIsNot(self.music.playout("default", "PCMU"), first)
        self.assertEqual(self.music.listeners(), {"sales/pcmu": 0, "default/pcmu": 0})

    def test_unknown(self) -> None:
        """A codec we lack, or a class not loaded, has no playout."""
        self.assertIsNone(self.music.playout("sales", "G729"))
        self.assertIsNone(self.music.playout("jazz", "PCMU"))
