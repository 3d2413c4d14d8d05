"""
An adaptive jitter buffer for media pbx plays out or records itself.

Packets go in with :meth:`JitterBuffer.put` as they arrive, in any order; a
playout timer calls :meth:`JitterBuffer.get` once per frame (every ptime)
and gets, in timestamp order, a :class:`Frame` to decode, a :class:`Lost`
marker (the decoder conceals one frame, ``IDecoder.conceal``), or None (no
media this tick: before the first packet, or silence between talkspurts).

Playout runs on a virtual clock in RTP timestamp units, ``play_ts``, that
advances one frame per :meth:`~JitterBuffer.get`.  A packet whose timestamp
falls in the slot ``[play_ts, play_ts + frame)`` is due; a packet that
arrives after its slot was played is late and dropped.  When a stream (or a
talkspurt after silence) starts, ``play_ts`` is set the target delay behind
its first packet, so packets wait about that long in the buffer.

The target delay adapts to the interarrival jitter J of RFC 3550 §6.4.1,
estimated here from the arrival times the injected clock gives:
``target = 4 J``, rounded up to whole frames, within the configured bounds.
A new target is applied at the start of each talkspurt, and during
continuous speech by stretching (one concealed frame inserted) or skipping
(one frame dropped) when the smoothed time packets wait in the buffer is more
than a frame below, or half a frame above, the target.

When the buffer runs dry, up to ``max_delay`` of frames are concealed, then
playout stops until the next packet.  A new SSRC, a sequence jump beyond
3000 (RFC 3550 §A.1) and a run of late packets restart playout on the newest
packet; a timestamp jump does too once what is buffered has been played.

Packets are assumed to last one frame each (the negotiated ptime).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable

from attrs import frozen

from pbx.media.rtp import RTPPacket, seq_delta, ts_delta

__all__ = ["Frame", "JitterBuffer", "JitterStats", "Lost"]

JITTER_FACTOR = 4  # target delay in multiples of J
MAX_DROPOUT = 3000  # a larger sequence jump restarts the stream (RFC 3550 §A.1)
LATE_RESYNC = 5  # this many late packets in a row restart playout on the newest
ADAPT_HOLDOFF = 4  # ticks between two stretch/skip steps
SEEN_WINDOW = 512  # sequence numbers remembered for duplicate detection

_IDLE, _PREFILL, _PLAYING = "idle", "prefill", "playing"


@frozen
class Frame:
    """The media of one packet, due for playout now."""

    payload: bytes
    timestamp: int
    sequence: int
    payload_type: int
    marker: bool = False


@frozen
class Lost:
    """No packet for this slot: conceal ``samples`` samples of media."""

    timestamp: int
    sequence: int
    """The sequence number that is missing (a best guess during an underrun)."""
    samples: int


@frozen
class JitterStats:
    """Counters and delays of one :class:`JitterBuffer`."""

    received: int
    """Packets given to ``put``, duplicates and late ones included."""
    played: int
    lost: int
    """:class:`Lost` markers returned for missing packets."""
    late: int
    """Packets dropped because their slot had already been played."""
    duplicates: int
    reordered: int
    """Packets that arrived after one with a higher sequence number."""
    stretched: int
    """Frames inserted to grow the delay."""
    skipped: int
    """Frames dropped (or silence cut) to shrink the delay."""
    resyncs: int
    """Restarts: new SSRC, sequence or timestamp jump, a run of late packets."""
    delay_ms: float
    """Smoothed time packets wait in the buffer before their slot."""
    target_ms: float
    jitter_ms: float
    """The RFC 3550 §6.4.1 interarrival jitter estimate."""


class JitterBuffer:
    """
    Reorders one RTP stream and hands it out one frame per playout tick.

    :ivar target: the target delay, in RTP timestamp units.
    """

    def __init__(
        self,
        clock_rate: int,
        frame_samples: int,
        min_delay_ms: float = 20,
        max_delay_ms: float = 200,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        :param clock_rate: the RTP clock rate of the stream.
        :param frame_samples: RTP timestamp units per frame (and per ``get`` tick).
        :param min_delay_ms: the smallest target delay.
        :param max_delay_ms: the largest target delay.
        :param clock: seconds now; gives packets their arrival time.
        :raises ValueError: a non-positive rate or frame, or bad delay bounds.
        """
        if clock_rate <= 0 or frame_samples <= 0:
            raise ValueError("clock_rate and frame_samples must be positive")
        if not 0 <= min_delay_ms <= max_delay_ms:
            raise ValueError(f"bad delay bounds {min_delay_ms}-{max_delay_ms} ms")
        self._rate = clock_rate
        self._frame = frame_samples
        self._clock = clock
        self._min = self._frames(min_delay_ms * clock_rate / 1000)
        self._max = max(self._min, self._frames(max_delay_ms * clock_rate / 1000))
        self._max_conceal = max(1, self._max // frame_samples)
        self._resync_span = self._max + clock_rate  # 1 s beyond the largest delay
        self.target = self._min
        self._jitter = 0.0  # J, in timestamp units
        self._last_arrival: tuple[float, int] | None = None  # (seconds, timestamp)
        self._ssrc: int | None = None
        self._max_ext: int | None = None  # highest extended sequence number seen
        self._seen: set[int] = set()
        self._others: set[int] = set()  # sequence numbers of packets put aside (skip)
        self._reset_playout()
        self.received = self.played = self.lost = self.late = 0
        self.duplicates = self.reordered = self.stretched = self.skipped = 0
        self.resyncs = 0

    def _frames(self, samples: float) -> int:
        """``samples`` rounded up to whole frames."""
        return self._frame * math.ceil(samples / self._frame - 1e-9)

    def _reset_playout(self) -> None:
        self._heap: list[int] = []
        self._packets: dict[int, RTPPacket] = {}
        self._starts: set[int] = set()  # buffered packets after a timestamp jump
        self._jump_ts: int | None = None  # timestamp of the pending jump
        self._state = _IDLE
        self._play_ts = 0
        self._accounted = 0  # every sequence number up to this one is dealt with
        self._level: float = float(self.target)
        self._conceal_run = 0
        self._late_run = 0
        self._holdoff = 0

    def _restart(self, ssrc: int | None) -> None:
        self._ssrc = ssrc
        self._max_ext = None
        self._seen.clear()
        self._others.clear()
        self._last_arrival = None
        self._reset_playout()

    def _extend(self, packet: RTPPacket) -> int:
        """The extended sequence number of ``packet``; a new SSRC or a jump restarts."""
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                self.resyncs += 1
            self._restart(packet.ssrc)
        top = self._max_ext
        if top is None:
            ext = packet.sequence
        else:
            delta = seq_delta(packet.sequence, top)
            if abs(delta) > MAX_DROPOUT:  # the sender restarted its numbering
                self.resyncs += 1
                self._restart(packet.ssrc)
                ext = packet.sequence
            else:
                ext = top + delta
        return ext

    def _remember(self, ext: int) -> None:
        seen = self._seen
        seen.add(ext)
        if self._max_ext is None or ext > self._max_ext:
            self._max_ext = ext
        if len(seen) > 2 * SEEN_WINDOW:
            floor = self._max_ext - SEEN_WINDOW
            self._seen = {e for e in seen if e > floor}
            self._others = {e for e in self._others if e > floor}

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        """RFC 3550 §6.4.1: J += (|D(i-1, i)| - J) / 16, in timestamp units."""
        last = self._last_arrival
        self._last_arrival = (arrival, timestamp)
        if last is None:
            return
        d = abs((arrival - last[0]) * self._rate - ts_delta(timestamp, last[1]))
        if d > self._resync_span:  # a discontinuity (a jump, a new stream), not jitter
            return
        self._jitter += (d - self._jitter) / 16
        wanted = self._frames(JITTER_FACTOR * self._jitter)
        wanted = min(self._max, max(self._min, wanted))
        # grow at once; shrink by two frames or to the floor, so the target does not flap
        floor = max(self._min, self.target - 2 * self._frame)
        if wanted > self.target or wanted <= floor:
            self.target = wanted

    def _align(self, timestamp: int) -> None:
        """Start playout so that ``timestamp`` is due after the target delay."""
        self._play_ts = (timestamp - self.target) & 0xFFFFFFFF
        self._jump_ts = None
        self._state = _PREFILL
        self._level = float(self.target)
        self._conceal_run = self._late_run = 0

    def _flush(self) -> None:
        self._heap.clear()
        self._packets.clear()
        self._starts.clear()

    def put(self, packet: RTPPacket) -> bool:
        """
        A packet arrived (now, by the clock).

        :returns: whether it was buffered (False: a duplicate or too late).
        """
        self.received += 1
        ext = self._extend(packet)
        if ext in self._seen:
            self.duplicates += 1
            return False
        if self._max_ext is not None and ext < self._max_ext:
            self.reordered += 1
        self._remember(ext)
        ts, now = packet.timestamp, self._clock()
        if self._state == _IDLE:
            self._update_jitter(ts, now)
            self._align(ts)
            if self._max_ext == ext:
                self._accounted = ext - 1
            return self._buffer(ext, packet)
        d = ts_delta(ts, self._play_ts)
        span = self._resync_span
        if not -span <= d <= span:
            jump = self._jump_ts
            if jump is not None and abs(ts_delta(ts, jump)) <= span:
                self._update_jitter(ts, now)  # more of a segment after a jump
                return self._buffer(ext, packet, measure=False)
            if not (packet.marker and not self._packets):
                self.resyncs += 1  # a jump that does not start a talkspurt
            self._update_jitter(ts, now)
            if d > 0 and self._packets:  # play what is buffered, then jump
                self._starts.add(ext)
                self._jump_ts = ts
                return self._buffer(ext, packet, measure=False)
            self._flush()
            self._align(ts)
            return self._buffer(ext, packet)
        self._update_jitter(ts, now)
        if packet.marker and not self._packets and not 0 <= d <= self.target:
            self._align(ts)  # a talkspurt after silence, at the current target
        elif d < 0:
            self._level += (d - self._level) / 16
            self._late_run += 1
            if self._late_run < LATE_RESYNC:
                self.late += 1
                return False
            self.resyncs += 1  # the delay stepped up beyond what adapting catches
            self._flush()
            self._align(ts)
        return self._buffer(ext, packet)

    def _buffer(self, ext: int, packet: RTPPacket, measure: bool = True) -> bool:
        """Keep ``packet``; ``measure``: its margin counts towards the delay level."""
        self._late_run = 0
        if measure:
            margin = ts_delta(packet.timestamp, self._play_ts)
            self._level += (margin - self._level) / 16
        self._packets[ext] = packet
        heapq.heappush(self._heap, ext)
        return True

    def skip(self, packet: RTPPacket) -> None:
        """
        A packet of this stream that does not go through the buffer
        (telephone-event, RFC 4733): its sequence number is not a loss.
        """
        if packet.ssrc == self._ssrc and self._max_ext is not None:
            ext = self._max_ext + seq_delta(packet.sequence, self._max_ext)
            self._others.add(ext)
            self._remember(ext)

    def _head(self) -> tuple[int, RTPPacket] | None:
        """The earliest buffered packet; ones whose slot has passed are dropped as late."""
        heap, packets = self._heap, self._packets
        while heap:
            ext = heap[0]
            packet = packets[ext]
            if ts_delta(packet.timestamp, self._play_ts) >= 0:
                return ext, packet
            self._pop()
            self.late += 1
        return None

    def _pop(self) -> None:
        ext = heapq.heappop(self._heap)
        del self._packets[ext]
        self._starts.discard(ext)

    def _tick(self) -> None:
        self._play_ts = (self._play_ts + self._frame) & 0xFFFFFFFF

    def _lost(self, ext: int) -> Lost:
        self.lost += 1
        lost = Lost(self._play_ts, ext & 0xFFFF, self._frame)
        self._tick()
        return lost

    def _adapt(self) -> int:
        """+1: stretch this tick; -1: skip a frame; 0: play on."""
        if self._holdoff > 0:
            self._holdoff -= 1
            return 0
        frame = self._frame
        if self._level < self.target - frame:
            step = 1
        elif self._level > self.target + frame / 2 and len(self._heap) > 1:
            step = -1  # (two packets buffered: dropping one does not underrun)
        else:
            return 0
        self._holdoff = ADAPT_HOLDOFF
        self._level += step * frame
        return step

    def _due(self, packet: RTPPacket) -> bool:
        return ts_delta(packet.timestamp, self._play_ts) < self._frame

    def get(self) -> Frame | Lost | None:
        """
        What to play for the next frame (call once per ptime).

        :returns: a :class:`Frame`; :class:`Lost` when the packet for this slot
            is missing; None when there is nothing to play (no stream yet, or
            silence between talkspurts).
        """
        if self._state == _IDLE:
            return None
        head = self._head()
        if self._state == _PREFILL:
            if head is None:
                self._state = _IDLE
                return None
            if not self._due(head[1]):
                self._tick()
                return None
            self._state = _PLAYING
            return self._play(*head)
        step = self._adapt()
        if step > 0:  # hold the playout clock one tick: the delay grows by a frame
            self.stretched += 1
            if head is None or self._due(head[1]):
                return Lost(self._play_ts, (self._accounted + 1) & 0xFFFF, self._frame)
            return None
        if step < 0 and head is not None:  # a frame less: the delay shrinks
            self.skipped += 1
            if self._due(head[1]):
                self._pop()
                self._accounted = max(self._accounted, head[0])
            self._tick()
            head = self._head()
        if head is None:  # underrun: conceal a while, then wait for a new start
            if self._max_ext in self._others:  # events, not audio, are coming in
                self._tick()
                return None
            self._conceal_run += 1
            if self._conceal_run > self._max_conceal:
                self._state = _IDLE
                return None
            self._accounted += 1
            return self._lost(self._accounted)
        ext, packet = head
        if self._due(packet):
            return self._play(ext, packet)
        start = packet.marker or ext in self._starts
        if start and ts_delta(packet.timestamp, self._play_ts) > self.target:
            self._starts.discard(ext)
            self._align(packet.timestamp)  # the next talkspurt starts at the new target
            return self.get()
        acc = self._accounted
        while acc + 1 in self._others:
            acc += 1
        self._accounted = acc
        if ext > acc + 1:  # a sequence gap: the packet for this slot is lost
            self._accounted = acc + 1
            return self._lost(acc + 1)
        self._tick()  # contiguous numbering, later timestamp: silence
        return None

    def _play(self, ext: int, packet: RTPPacket) -> Frame:
        self._pop()
        self._accounted = ext
        self._conceal_run = 0
        self.played += 1
        self._tick()
        return Frame(
            packet.payload,
            packet.timestamp,
            packet.sequence,
            packet.payload_type,
            packet.marker,
        )

    def stats(self) -> JitterStats:
        """The counters and delays now."""
        ms = 1000 / self._rate
        return JitterStats(
            received=self.received,
            played=self.played,
            lost=self.lost,
            late=self.late,
            duplicates=self.duplicates,
            reordered=self.reordered,
            stretched=self.stretched,
            skipped=self.skipped,
            resyncs=self.resyncs,
            delay_ms=max(0.0, self._level) * ms if self._state != _IDLE else 0.0,
            target_ms=self.target * ms,
            jitter_ms=self._jitter * ms,
        )
