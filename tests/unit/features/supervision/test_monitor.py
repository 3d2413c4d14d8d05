"""
Tests for :mod:`pbx.features.supervision.monitor`: both parties' audio
from the relay's taps mixed for the supervisor, and the feeds that carry
the supervisor's voice to a party, on a :class:`task.Clock`.
"""

from __future__ import annotations

import numpy as np

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from pbx.features.supervision.monitor import Monitor, fed_legs
from pbx.media.codecs import PCMU
from pbx.media.leg_audio import MAX_QUEUED, LegInput, NoAudio
from pbx.media.media_clock import MediaClock
from pbx.media.rtp import RTPPacket

from support.conference import TICK
from support.supervision import SUPERVISOR_TONE, TONES, FakeCallTap


def tone(frequency: float, samples: int = 160, amplitude: int = 6000) -> np.ndarray:
    """One frame of a tone."""
    return (
        np.sin(2 * np.pi * frequency * np.arange(samples) / 8000) * amplitude
    ).astype(np.int16)


def level(frames: list[np.ndarray], frequency: float) -> float:
    """How loud ``frequency`` is in ``frames``, relative to a phone's tone (6000)."""
    audio = np.concatenate(frames).astype(np.float64) if frames else np.zeros(1)
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    hz = np.fft.rfftfreq(len(audio), 1 / 8000)
    return (
        float(np.sqrt(spectrum[np.abs(hz - frequency) <= 50].sum()) * 2 / len(audio))
        / 6000
    )


class Supervisor:
    """The supervisor's place in a monitor's mix: puts its tone, keeps what it takes."""

    def __init__(self, monitor: Monitor) -> None:
        self.member = monitor.mix.add(self, 8000)
        self.heard: list[np.ndarray] = []

    def tick(self) -> None:
        """One 20 ms tick of its channel."""
        self.member.put(tone(SUPERVISOR_TONE))
        frame = self.member.take()
        if frame is not None:
            self.heard.append(frame)


class MonitorTestCase(SynchronousTestCase):
    """A monitor on a fake call, its supervisor, and a way to run them."""

    def setUp(self) -> None:
        """The call, the clock and a monitor with agent leg a."""
        self.clock = task.Clock()
        self.tap = FakeCallTap()
        self.monitor = Monitor(self.tap, "a", MediaClock(self.clock))
        self.supervisor = Supervisor(self.monitor)

    def talk(self, seconds: float) -> None:
        """The parties talk, the clock ticks, the supervisor's channel ticks."""
        for _ in range(round(seconds / TICK)):
            self.tap.talk()
            self.clock.advance(TICK)
            self.supervisor.tick()

    def heard_by_supervisor(self, frequency: float) -> float:
        """How loud ``frequency`` was in the last 0.4 s the supervisor heard."""
        return level(self.supervisor.heard[-20:], frequency)


class ListenTests(MonitorTestCase):
    """Listening: the supervisor hears both parties; the call's relay is not touched."""

    def test_supervisor_hears_both_parties(self) -> None:
        """Once started, both legs are tapped and the supervisor hears each party's tone; no leg is fed."""
        self.monitor.start()
        self.assertEqual(set(self.tap.taps), {"a", "b"})
        self.talk(1.0)
        self.assertGreater(self.heard_by_supervisor(TONES["a"]), 0.8)
        self.assertGreater(self.heard_by_supervisor(TONES["b"]), 0.8)
        self.assertLess(self.heard_by_supervisor(SUPERVISOR_TONE), 0.01)
        self.assertEqual(self.tap.feeds, {})
        self.assertEqual(self.monitor.fed, frozenset())

    def test_stop_restores(self) -> None:
        """Stopping untaps both legs, stops the clock and calls back; a second stop does nothing."""
        stopped: list[bool] = []
        self.monitor.when_stopped(lambda: stopped.append(True))
        self.monitor.start()
        self.talk(0.2)
        self.monitor.stop()
        self.monitor.stop()
        self.assertEqual((self.tap.taps, self.tap.feeds, stopped), ({}, {}, [True]))
        self.assertFalse(self.monitor.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class WhisperTests(MonitorTestCase):
    """Whispering: only the agent's leg hears the supervisor."""

    def test_agent_hears_supervisor_and_other_party(self) -> None:
        """The agent's leg is fed the other party and the supervisor, in its payload type; the other leg is not fed."""
        self.monitor.set_mode("whisper")
        self.monitor.start()
        self.talk(1.0)
        self.assertEqual(set(self.tap.feeds), {"a"})
        self.assertEqual(self.tap.feeds["a"][1], 0)
        self.assertEqual(self.tap.feeds["a"][0].timestamp_step, 160)
        self.assertGreater(self.tap.hears("a", SUPERVISOR_TONE), 0.8)
        self.assertGreater(self.tap.hears("a", TONES["b"]), 0.8)
        self.assertLess(self.tap.hears("a", TONES["a"]), 0.01)
        self.assertEqual(self.tap.heard["b"], [])
        self.assertGreater(self.heard_by_supervisor(TONES["a"]), 0.8)

    def test_agent_on_leg_b(self) -> None:
        """When the agent is the callee, leg b is the one fed."""
        monitor = Monitor(self.tap, "b", MediaClock(self.clock), "whisper")
        monitor.start()
        self.assertEqual(set(self.tap.feeds), {"b"})
        monitor.stop()
        self.assertEqual(self.tap.feeds, {})

    def test_back_to_listen_unfeeds(self) -> None:
        """Switching from whisper back to listen unfeeds the agent at once; the supervisor still hears."""
        self.monitor.start()
        self.monitor.set_mode("whisper")
        self.talk(0.2)
        self.monitor.set_mode("listen")
        self.assertEqual(self.tap.feeds, {})
        sent = len(self.tap.heard["a"])
        self.talk(0.4)
        self.assertEqual(len(self.tap.heard["a"]), sent)
        self.assertGreater(self.heard_by_supervisor(TONES["b"]), 0.8)
        self.monitor.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class BargeTests(MonitorTestCase):
    """Barging in: both parties hear the supervisor, and each other through the mix."""

    def test_three_way(self) -> None:
        """Both legs are fed: each hears the other party and the supervisor, not itself."""
        self.monitor.start()
        self.monitor.set_mode("barge")
        self.talk(1.0)
        self.assertEqual(set(self.tap.feeds), {"a", "b"})
        for leg, other in (("a", "b"), ("b", "a")):
            self.assertGreater(self.tap.hears(leg, SUPERVISOR_TONE), 0.8, leg)
            self.assertGreater(self.tap.hears(leg, TONES[other]), 0.8, leg)
            self.assertLess(self.tap.hears(leg, TONES[leg]), 0.01, leg)
        self.monitor.stop()
        self.assertEqual(self.tap.feeds, {})

    def test_unknown_mode(self) -> None:
        """An unknown mode is a ValueError; the modes feed what they should."""
        self.assertRaises(ValueError, self.monitor.set_mode, "shout")
        self.assertEqual(fed_legs("listen", "a"), frozenset())
        self.assertEqual(fed_legs("whisper", "b"), frozenset({"b"}))
        self.assertEqual(fed_legs("barge", "a"), frozenset({"a", "b"}))


class InputTests(SynchronousTestCase):
    """What a tapped leg's packets become."""

    def test_no_decodable_codec(self) -> None:
        """A call whose legs send nothing pbx decodes cannot be monitored; a bad agent leg is a ValueError."""
        tap = FakeCallTap(types={101: ("telephone-event", 8000), 96: ("speex", 8000)})
        self.assertRaises(NoAudio, Monitor, tap, "a", MediaClock(task.Clock()))
        self.assertRaises(
            ValueError, Monitor, FakeCallTap(), "c", MediaClock(task.Clock())
        )

    def test_other_packets_skipped(self) -> None:
        """RTCP, garbage and other payload types are skipped; audio frames are queued, the oldest dropped beyond the limit."""
        leg = LegInput(0, PCMU())
        leg.packet(b"\x80\xc8\x00\x06" + bytes(24))  # an RTCP sender report
        leg.packet(b"junk")
        leg.packet(RTPPacket(101, 1, 0, 7, b"\x01\x00\x00\xa0").to_bytes())
        self.assertIsNone(leg.pop())
        encoder = PCMU().new_encoder()
        for n in range(MAX_QUEUED + 2):
            leg.packet(
                RTPPacket(
                    0,
                    n,
                    n * 160,
                    7,
                    encoder.encode(np.full(160, n * 100, dtype=np.int16)),
                ).to_bytes()
            )
        self.assertEqual(leg.dropped, 2)
        first = leg.pop()
        assert first is not None
        self.assertLess(abs(float(first.mean()) - 200), 10)


class HoldTests(MonitorTestCase):
    """A whispered leg put on hold hears music on hold, which the supervisor leaving does not end."""

    def test_replaced_feed_left_alone(self) -> None:
        """When another feed replaced the whisper, stopping the monitor leaves that feed in place."""
        self.monitor.set_mode("whisper")
        self.monitor.start()

        class Music:
            timestamp_step = 160

            def add(self, sink: object) -> object:
                return lambda: None

        music = Music()
        self.tap.feed("a", music, 0)
        self.monitor.stop()
        self.assertIs(self.tap.feeds["a"][0], music)
        self.tap.unfeed("a")
