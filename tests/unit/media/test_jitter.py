"""Tests for the adaptive jitter buffer."""

from __future__ import annotations

import random
from collections.abc import Iterable

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.jitter import Frame, JitterBuffer, Lost
from pbx.media.rtp import RTPPacket

RATE, FRAME, PTIME = 8000, 160, 0.020


class FakeClock:
    """Seconds now, set by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def packet(
    seq: int, ts: int | None = None, ssrc: int = 1, marker: bool = False, pt: int = 0
) -> RTPPacket:
    """A 20 ms packet; by default its timestamp follows from its sequence number."""
    ts = seq * FRAME if ts is None else ts
    return RTPPacket(
        pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, b"%d" % seq, marker=marker
    )


def stream(
    first: int, count: int, start: float = 0.0, ssrc: int = 1, ts0: int | None = None
) -> list[tuple[float, RTPPacket]]:
    """``count`` packets sent every 20 ms from ``start``, each arriving on time."""
    base = first * FRAME if ts0 is None else ts0
    return [
        (start + i * PTIME, packet(first + i, base + i * FRAME, ssrc))
        for i in range(count)
    ]


class Playout:
    """Drives a buffer: packets arrive at their times; get() runs every 20 ms."""

    def __init__(self, buffer: JitterBuffer, clock: FakeClock, phase: float = 0.01):
        self.buffer, self.clock = buffer, clock
        self.pending: list[tuple[float, RTPPacket]] = []
        self.next_tick = phase
        self.put_results: list[bool] = []

    def feed(self, arrivals: Iterable[tuple[float, RTPPacket]]) -> None:
        """Queue packets with their arrival times."""
        self.pending.extend(arrivals)
        self.pending.sort(key=lambda a: a[0])

    def run(self, ticks: int) -> list[Frame | Lost | None]:
        """Advance ``ticks`` playout ticks; what get() returned at each."""
        out: list[Frame | Lost | None] = []
        for _ in range(ticks):
            while self.pending and self.pending[0][0] <= self.next_tick:
                self.clock.now, p = self.pending.pop(0)
                self.put_results.append(self.buffer.put(p))
            self.clock.now = self.next_tick
            out.append(self.buffer.get())
            self.next_tick += PTIME
        return out


def seqs(out: list[Frame | Lost | None]) -> list[int | str]:
    """
    Sequence numbers of frames, 'L<seq>' for Lost markers; Nones left out, and
    so are the Lost markers of the underrun after the last frame.
    """
    result: list[int | str] = [
        o.sequence if isinstance(o, Frame) else f"L{o.sequence}"
        for o in out
        if o is not None
    ]
    while result and isinstance(result[-1], str):
        result.pop()
    return result


def frames(out: list[Frame | Lost | None]) -> list[int]:
    """Sequence numbers of the frames played."""
    return [o.sequence for o in out if isinstance(o, Frame)]


class JitterTestCase(SynchronousTestCase):
    """A buffer for 8 kHz, 20 ms frames on a fake clock."""

    min_delay, max_delay = 20, 200

    def setUp(self) -> None:
        self.clock = FakeClock()
        self.buffer = JitterBuffer(
            RATE, FRAME, self.min_delay, self.max_delay, clock=self.clock
        )
        self.playout = Playout(self.buffer, self.clock)


class OrderTests(JitterTestCase):
    """Frames come out in sequence order, once each."""

    def test_nothing_before_first_packet(self) -> None:
        """With no packet yet, get() returns None."""
        self.assertEqual(self.playout.run(3), [None, None, None])

    def test_in_order(self) -> None:
        """An on-time stream plays out in order, without loss, after the target delay."""
        self.playout.feed(stream(100, 10))
        out = self.playout.run(11)
        self.assertEqual(seqs(out), list(range(100, 110)))
        self.assertEqual(out[0], None)  # one tick of buffering (20 ms)
        first = out[1]
        assert isinstance(first, Frame)
        self.assertEqual((first.payload, first.timestamp), (b"100", 100 * FRAME))
        stats = self.buffer.stats()
        self.assertEqual((stats.received, stats.played, stats.lost), (10, 10, 0))

    def test_reordering(self) -> None:
        """Packets that arrive swapped within the delay are played in sequence order."""
        arrivals = stream(0, 10)
        (t4, p3), p4 = (arrivals[4][0], arrivals[3][1]), arrivals[4]
        arrivals[3], arrivals[4] = (t4 + 0.003, p3), p4  # 3 is delayed past 4
        self.playout.feed(arrivals)
        self.assertEqual(seqs(self.playout.run(11)), list(range(10)))
        self.assertEqual(self.buffer.stats().reordered, 1)
        self.assertEqual(self.buffer.stats().lost, 0)

    def test_duplicates_dropped(self) -> None:
        """A packet received twice is played once and counted as a duplicate."""
        arrivals = stream(0, 5)
        arrivals.append((arrivals[2][0] + 0.002, arrivals[2][1]))
        self.playout.feed(arrivals)
        self.assertEqual(seqs(self.playout.run(10)), list(range(5)))
        self.assertEqual(self.buffer.stats().duplicates, 1)
        self.assertEqual(self.playout.put_results.count(False), 1)

    def test_duplicate_of_played_packet(self) -> None:
        """A copy of a packet that was already played is a duplicate, not a late packet."""
        arrivals = stream(0, 8)
        arrivals.append((0.130, arrivals[1][1]))
        self.playout.feed(arrivals)
        self.assertEqual(seqs(self.playout.run(12)), list(range(8)))
        self.assertEqual(
            (self.buffer.stats().duplicates, self.buffer.stats().late), (1, 0)
        )

    def test_sequence_wraparound(self) -> None:
        """Sequence numbers and timestamps wrapping around play out in order."""
        arrivals = stream(65530, 12, ts0=0xFFFFFFFF - 5 * FRAME)
        arrivals[5], arrivals[6] = (
            (arrivals[6][0], arrivals[5][1]),
            (
                arrivals[6][0] - 0.001,
                arrivals[6][1],
            ),
        )  # 0 arrives just before 65535
        self.playout.feed(arrivals)
        out = self.playout.run(13)
        self.assertEqual(seqs(out), [*range(65530, 65536), *range(6)])
        self.assertEqual(self.buffer.stats().lost, 0)
        self.assertEqual(self.buffer.stats().reordered, 1)


class LossTests(JitterTestCase):
    """Missing and late packets."""

    def test_lost_packet_concealed(self) -> None:
        """A packet that never arrives yields a Lost marker in its slot."""
        arrivals = [a for a in stream(0, 10) if a[1].sequence != 4]
        self.playout.feed(arrivals)
        out = self.playout.run(11)
        self.assertEqual(seqs(out), [0, 1, 2, 3, "L4", 5, 6, 7, 8, 9])
        lost = next(o for o in out if isinstance(o, Lost))
        self.assertEqual((lost.timestamp, lost.samples), (4 * FRAME, FRAME))
        self.assertEqual(self.buffer.stats().lost, 1)

    def test_burst_loss(self) -> None:
        """Each of several consecutive missing packets gets its own Lost marker."""
        arrivals = [a for a in stream(0, 10) if a[1].sequence not in (3, 4, 5)]
        self.playout.feed(arrivals)
        self.assertEqual(
            seqs(self.playout.run(15)), [0, 1, 2, "L3", "L4", "L5", 6, 7, 8, 9]
        )

    def test_late_packet_dropped(self) -> None:
        """A packet arriving after its slot was concealed is dropped and counted late."""
        arrivals = stream(0, 10)
        arrivals[4] = (arrivals[4][0] + 0.100, arrivals[4][1])
        self.playout.feed(arrivals)
        out = self.playout.run(12)
        self.assertEqual(seqs(out)[:6], [0, 1, 2, 3, "L4", 5])
        self.assertEqual(frames(out), [*range(4), *range(5, 10)])
        self.assertEqual(self.buffer.stats().late, 1)
        self.assertEqual(self.playout.put_results.count(False), 1)

    def test_underrun_stops_after_a_while(self) -> None:
        """When the stream stops, a few frames are concealed, then get() returns None."""
        self.playout.feed(stream(0, 3))
        out = self.playout.run(30)
        lost = [o for o in out if isinstance(o, Lost)]
        self.assertEqual(len(lost), 10)  # 200 ms (max_delay) of concealment
        self.assertEqual(out[-5:], [None] * 5)

    def test_stream_resumes_after_underrun(self) -> None:
        """After the buffer ran dry and went idle, the stream restarts on its next packet."""
        self.playout.feed(stream(0, 3))
        self.playout.feed(stream(3, 5, start=1.0))
        out = self.playout.run(70)
        self.assertEqual(frames(out), list(range(8)))
        self.assertEqual(self.buffer.stats().late, 0)

    def test_telephone_events_are_not_losses(self) -> None:
        """Sequence numbers taken by skipped (telephone-event) packets are silence, not loss."""
        audio = stream(0, 5)
        events = [(0.1 + i * PTIME, packet(5 + i, 5 * FRAME, pt=101)) for i in range(5)]
        resumed = (0.2, packet(10, 10 * FRAME, marker=True))
        pending = sorted([*audio, *events, resumed], key=lambda a: a[0])
        out: list[Frame | Lost | None] = []
        tick = 0.01
        for arrival, p in pending:
            while tick < arrival:
                self.clock.now = tick
                out.append(self.buffer.get())
                tick += PTIME
            self.clock.now = arrival
            if p.payload_type == 101:
                self.buffer.skip(p)
            else:
                self.buffer.put(p)
        for _ in range(2):
            out.append(self.buffer.get())
        self.assertEqual(seqs(out), [0, 1, 2, 3, 4, 10])
        self.assertEqual(out[-6:-1], [None] * 5)  # the digit: silence
        self.assertEqual(self.buffer.stats().lost, 0)


class ResyncTests(JitterTestCase):
    """New streams, talkspurts and jumps restart playout."""

    def test_ssrc_change(self) -> None:
        """A new SSRC with unrelated numbering is played right after the old stream."""
        self.playout.feed(stream(100, 5))
        self.playout.feed(stream(40000, 5, start=0.2, ssrc=2, ts0=123456))
        out = self.playout.run(16)
        self.assertEqual(frames(out), [*range(100, 105), *range(40000, 40005)])
        self.assertEqual(self.buffer.stats().resyncs, 1)

    def test_talkspurt_after_silence(self) -> None:
        """A marked packet after silence plays after the target delay, not at its timestamp."""
        self.playout.feed(stream(0, 5))
        spurt = stream(5, 5, start=0.5, ts0=5 * FRAME + 80000)  # 10 s timestamp gap
        spurt[0] = (spurt[0][0], packet(5, 5 * FRAME + 80000, marker=True))
        self.playout.feed(spurt)
        out = self.playout.run(40)
        self.assertEqual(frames(out), list(range(10)))
        played = [i for i, o in enumerate(out) if isinstance(o, Frame)]
        self.assertEqual(played[5], 26)  # arrives at 0.5 s, played at 0.53 s
        self.assertEqual(self.buffer.stats().resyncs, 0)

    def test_timestamp_jump_without_marker(self) -> None:
        """A large timestamp jump without a marker resyncs instead of waiting for it."""
        self.playout.feed(stream(0, 5))
        self.playout.feed(stream(5, 5, start=0.1, ts0=5 * FRAME + 10 * RATE))
        out = self.playout.run(15)
        self.assertEqual(seqs(out), list(range(10)))
        self.assertEqual(self.buffer.stats().resyncs, 1)

    def test_sequence_restart(self) -> None:
        """A sequence jump beyond MAX_DROPOUT with the same SSRC restarts the stream."""
        self.playout.feed(stream(0, 5))
        self.playout.feed(stream(20000, 5, start=0.2, ts0=5 * FRAME))
        self.assertEqual(
            frames(self.playout.run(16)), [*range(5), *range(20000, 20005)]
        )
        self.assertEqual(self.buffer.stats().resyncs, 1)

    def test_delay_step_absorbed(self) -> None:
        """After a 500 ms delay step the stream plays on and the extra delay is skipped away."""
        self.playout.feed(stream(0, 10))
        self.playout.feed(stream(10, 40, start=0.2 + 0.5))
        out = self.playout.run(80)
        stats = self.buffer.stats()
        self.assertEqual(stats.late, 0)
        self.assertGreater(stats.skipped, 0)
        self.assertEqual(len(frames(out)) + stats.skipped, 50)
        self.assertEqual(frames(out), sorted(frames(out)))

    def test_late_run_resyncs(self) -> None:
        """A run of late packets restarts playout on the newest one."""
        buffer, clock = self.buffer, self.clock
        for i in range(5):
            clock.now = i * PTIME
            buffer.put(packet(i))
            clock.now += 0.01
            buffer.get()
        # now five packets arrive 200 ms late while playout goes on concealing
        out = []
        for i in range(5, 12):
            clock.now = i * PTIME
            out.append(buffer.get())
        for i in range(5, 11):
            buffer.put(packet(i))
        self.assertEqual(buffer.stats().resyncs, 1)
        self.assertEqual(buffer.stats().late, 4)
        out = [buffer.get() for _ in range(6)]
        self.assertEqual(frames(out), [9, 10])
        self.assertEqual(out[0], None)  # played after the (grown) target delay


class AdaptiveDelayTests(JitterTestCase):
    """The target delay follows the interarrival jitter within its bounds."""

    def jittery(self, first: int, count: int, start: float, spread: float) -> list:
        """Packets sent every 20 ms, each delayed at random by up to ``spread``."""
        rng = random.Random(first)
        return [(t + rng.uniform(0, spread), p) for t, p in stream(first, count, start)]

    def test_grows_under_jitter_and_shrinks_when_calm(self) -> None:
        """Jitter raises the target and the delay; a calm network brings both back."""
        self.playout.feed(self.jittery(0, 500, 0.0, 0.080))  # 10 s of up to 80 ms
        self.playout.feed(stream(500, 1000, start=10.0))  # then 20 s without jitter
        self.playout.run(500)
        busy = self.buffer.stats()
        self.assertGreaterEqual(busy.target_ms, 80)
        self.assertGreaterEqual(busy.delay_ms, 60)
        self.assertGreater(busy.stretched, 0)
        self.assertLess(busy.late, 10)  # the grown delay absorbs the jitter
        self.playout.run(1001)
        calm = self.buffer.stats()
        self.assertEqual(calm.target_ms, 20)
        self.assertLessEqual(calm.delay_ms, 25)
        self.assertGreater(calm.skipped, busy.skipped)
        self.assertEqual((calm.lost, calm.resyncs), (0, 0))
        self.assertEqual(calm.played + calm.skipped + calm.late, 1500)

    def test_target_within_bounds(self) -> None:
        """Even under huge jitter the target stays at max_delay."""
        self.playout.feed(self.jittery(0, 300, 0.0, 1.0))
        self.playout.run(400)
        self.assertEqual(self.buffer.stats().target_ms, 200)

    def test_jitter_estimate(self) -> None:
        """J follows RFC 3550 §6.4.1: J += (|D| - J) / 16, in timestamp units."""
        for i, arrival in enumerate([0.0, 0.020, 0.045, 0.060]):
            self.clock.now = arrival
            self.buffer.put(packet(i))
        # D: 0, 40, 40 samples (5 ms = 40 samples at 8 kHz)
        j = 0.0
        for d in (0, 40, 40):
            j += (d - j) / 16
        self.assertAlmostEqual(self.buffer.stats().jitter_ms, j / 8)


class ValidationTests(SynchronousTestCase):
    """Bad parameters are refused."""

    def test_bad_bounds(self) -> None:
        """Negative or inverted delay bounds and non-positive frames raise ValueError."""
        self.assertRaises(ValueError, JitterBuffer, 8000, 160, 100, 50)
        self.assertRaises(ValueError, JitterBuffer, 8000, 160, -1, 50)
        self.assertRaises(ValueError, JitterBuffer, 8000, 0)
