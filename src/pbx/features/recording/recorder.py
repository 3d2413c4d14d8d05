"""
One recording of one relayed call: the packets each leg sends (from the
relay's tap) decoded, placed in time and written to a WAV file.

Each leg's packets go back into sequence order (:class:`ArrivalOrder`:
late packets are kept, a packet that never came is concealed by the leg's
decoder); telephone-event packets (RFC 4733) and comfort noise carry no
speech and are left out; what remains is decoded with the leg's negotiated
codec and resampled to the recording's rate.  A packet's place in the file
comes from its RTP timestamp (RFC 3550 §5.1: it counts samples), anchored
to the clock when the leg's stream starts and re-anchored when they
disagree (a new SSRC; timestamps a second ahead of the clock, or ten behind
it: packets read late by a busy reactor keep their place), so jitter
never moves audio and a silence-suppressing phone leaves silence where it
was quiet.  The two legs meet in a :class:`StereoRecorder` by 20 ms frame
number: the caller (leg ``a``) on the left channel and the callee on the
right, or summed into one channel for ``mixed``.

Paused spans (card numbers) are recorded as silence: every frame whose
number falls in one is written as zeros, so the file keeps its timing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.media.arrival_order import ArrivalOrder, Gap
from pbx.media.resample import Resampler
from pbx.media.rtp import looks_like_rtcp, parse_rtp, ts_delta
from pbx.media.wav import StereoRecorder, WavWriter

__all__ = ["CallRecorder", "Downmix", "LegStream"]

FRAMES_PER_SECOND = 50
#: Frames the two legs may be apart before the slower one's frame is late:
#: three seconds.  A reactor that stalls (a starved CPU) then reads each
#: socket's whole backlog in turn, one leg's seconds of packets before the
#: other's; frames wait here only while one leg sends and the other does
#: not (about 100 KB per such call at most).
MAX_DELAY_FRAMES = 150
#: How far behind the clock a leg's packets may be read before its stream is
#: taken to have restarted (its timestamps jumped back).
LATE_SECONDS = 10
#: Comfort noise (RFC 3389) and events carry no speech to decode.
_NOT_AUDIO = frozenset({"telephone-event", "cn"})


@define(eq=False)
class Downmix:
    """
    A stereo :class:`WavWriter` look-alike that writes both channels summed
    into a mono writer: what a ``mixed`` recording's :class:`StereoRecorder`
    writes to.
    """

    inner: WavWriter
    channels: int = 2

    @property
    def path(self) -> str:
        """The inner writer's final path."""
        return self.inner.path

    @property
    def sample_rate(self) -> int:
        """The inner writer's rate."""
        return self.inner.sample_rate

    @property
    def temp_path(self) -> str:
        """Where the inner writer writes until it is closed."""
        return self.inner.temp_path

    @property
    def samples_written(self) -> int:
        """Samples accepted so far."""
        return self.inner.samples_written

    def write(self, stereo: np.ndarray) -> None:
        """Write ``(n, 2)`` samples as their clipped sum."""
        total = stereo.astype(np.int32).sum(axis=1)
        self.inner.write(np.clip(total, -32768, 32767).astype(np.int16))

    def write_silence(self, samples: int) -> None:
        """Silence, as the inner writer makes it."""
        self.inner.write_silence(samples)

    def close(self) -> Deferred[str]:
        """Close the inner writer."""
        return self.inner.close()

    def abort(self) -> Deferred[None]:
        """Abort the inner writer."""
        return self.inner.abort()


@define(eq=False)
class LegStream:
    """
    One leg's RTP as 20 ms frames of PCM at ``rate``, numbered from the
    recording's start.

    :param rate: the recording's sample rate.
    :param payload_types: what the leg's payload types mean now
        (``{pt: (encoding, clock rate)}``); asked again for an unknown one.
    :param codecs: codec plugins by lower-case encoding name.
    :param position: the sample position (at ``rate``) of "now" on the clock.
    :param on_frame: ``(frame number, frame)`` for each complete frame.
    :ivar undecodable: audio packets whose payload type has no codec here.
    """

    rate: int
    payload_types: Callable[[], dict[int, tuple[str, int]]]
    codecs: Any
    position: Callable[[], int]
    on_frame: Callable[[int, np.ndarray], None]
    undecodable: int = 0
    _types: dict[int, tuple[str, int]] = field(factory=dict)
    _decoders: dict[int, Any] = field(factory=dict)
    _resamplers: dict[int, Resampler] = field(factory=dict)
    _order: ArrivalOrder = field(factory=ArrivalOrder)
    _anchor: tuple[int, int, int] | None = None  # ssrc, RTP timestamp, sample position
    _cursor: int = 0  # the sample position buffered samples start at (a frame boundary)
    _buffer: list[np.ndarray] = field(factory=list)
    _buffered: int = 0
    _last: tuple[int, int] | None = (
        None  # payload type and length of the last decoded frame
    )
    _skip: int = 0  # samples of the next decoded packet already written (an overlap)

    @property
    def frame_samples(self) -> int:
        """Samples in one 20 ms frame at :attr:`rate`."""
        return self.rate // FRAMES_PER_SECOND

    def packet(self, data: bytes) -> None:
        """One datagram the leg sent; RTCP (RFC 5761 §4) and garbage are ignored."""
        if looks_like_rtcp(data):
            return
        try:
            packet = parse_rtp(data)
        except ValueError:
            return
        for item in self._order.push(packet):
            self._take(item)

    def flush(self) -> None:
        """The recording ends: what is held is written, the last frame padded with silence."""
        for item in self._order.flush():
            self._take(item)
        if self._buffered:
            self._pad_to_boundary()

    def _meaning(self, pt: int) -> tuple[str, int] | None:
        meaning = self._types.get(pt)
        if meaning is None:
            self._types = dict(self.payload_types())
            meaning = self._types.get(pt)
        return meaning

    def _take(self, item: Any) -> None:
        if isinstance(item, Gap):
            if (
                self._last is not None
            ):  # conceal with the decoder of the lost frame's stream
                pt, samples = self._last
                self._append(self._decoders[pt].conceal(samples), pt)
            return
        meaning = self._meaning(item.payload_type)
        if meaning is None or meaning[0] in _NOT_AUDIO:
            return
        encoding, clock_rate = meaning
        decoder = self._decoders.get(item.payload_type)
        if decoder is None:
            codec = self.codecs.get(encoding)
            if codec is None:
                self.undecodable += 1
                return
            decoder = self._decoders[item.payload_type] = codec.new_decoder()
            if codec.sample_rate != self.rate:
                self._resamplers[item.payload_type] = Resampler(
                    codec.sample_rate, self.rate
                )
        try:
            pcm = np.asarray(decoder.decode(item.payload), dtype=np.int16)
        except ValueError:
            return
        self._place(item.ssrc, item.timestamp, clock_rate)
        self._last = (item.payload_type, len(pcm))
        self._append(pcm, item.payload_type)

    def _place(self, ssrc: int, timestamp: int, clock_rate: int) -> None:
        """Move the cursor to where this packet's audio belongs."""
        now = self.position()
        anchor = self._anchor
        where = None
        if anchor is not None and anchor[0] == ssrc:
            where = anchor[2] + ts_delta(timestamp, anchor[1]) * self.rate // clock_rate
            # The RTP clock and ours disagree: restart.  A packet may be read
            # late (a busy reactor works through a backlog), never early.
            if where - now > self.rate or now - where > LATE_SECONDS * self.rate:
                where = None
        if where is None:
            # Anchored on a frame boundary: a 20 ms packet then fills one
            # frame of the file exactly (10 ms of placement error at most).
            where = round(now / self.frame_samples) * self.frame_samples
            self._anchor = (ssrc, timestamp, where)
        end = self._cursor + self._buffered
        if anchor is None and not self._buffered:
            # The first audio: start at the frame this packet falls in.
            self._cursor = where - where % self.frame_samples
            end = self._cursor
        if where > end:
            if (
                where - end < self.frame_samples
                or where // self.frame_samples == end // self.frame_samples
            ):
                self._push(np.zeros(where - end, dtype=np.int16))
            else:
                # A longer silence: finish this frame; the recorder fills the frames in between.
                self._pad_to_boundary()
                self._cursor = where - where % self.frame_samples
                self._push(np.zeros(where - self._cursor, dtype=np.int16))
        elif where < end:
            self._skip = end - where  # overlap: drop what was already written
            return
        self._skip = 0

    def _append(self, pcm: np.ndarray, pt: int) -> None:
        out = self._resamplers[pt](pcm) if pt in self._resamplers else pcm
        if self._skip:
            cut, self._skip = min(self._skip, len(out)), 0
            out = out[cut:]
        if len(out):
            self._push(out)

    def _push(self, pcm: np.ndarray) -> None:
        n = self.frame_samples
        if (
            not self._buffered and len(pcm) == n
        ):  # the usual case: one packet, one frame
            self.on_frame(self._cursor // n, pcm)
            self._cursor += n
            return
        self._buffer.append(pcm)
        self._buffered += len(pcm)
        n = self.frame_samples
        if self._buffered < n:
            return
        joined = np.concatenate(self._buffer)
        whole = len(joined) - len(joined) % n
        for start in range(0, whole, n):
            self.on_frame(self._cursor // n, joined[start : start + n])
            self._cursor += n
        rest = joined[whole:]
        self._buffer = [rest] if len(rest) else []
        self._buffered = len(rest)

    def _pad_to_boundary(self) -> None:
        if self._buffered:
            self._push(np.zeros(self.frame_samples - self._buffered, dtype=np.int16))


@define(eq=False)
class CallRecorder:
    """
    Records one call's two legs into one file (see the module docstring).

    :param writer: a stereo :class:`WavWriter`, or a :class:`Downmix` of a mono one.
    :param clock: the time source frames are numbered by.
    :param payload_types: ``payload_types(leg)`` (:meth:`pbx.calls.tap.CallTap.payload_types`).
    :param codecs: codec plugins by lower-case encoding name.
    """

    log = Logger()

    writer: Any
    clock: IReactorTime
    payload_types: Callable[[str], dict[int, tuple[str, int]]]
    codecs: Any
    started: float = field(init=False)
    paused_spans: list[list[int | None]] = field(init=False, factory=list)
    """``[first frame, frame after the last]`` of each pause; None while it lasts."""
    _stereo: StereoRecorder = field(init=False)
    _legs: dict[str, LegStream] = field(init=False, factory=dict)
    _closed: bool = field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.started = self.clock.seconds()
        self._stereo = StereoRecorder(self.writer, max_delay_frames=MAX_DELAY_FRAMES)
        rate = self.writer.sample_rate
        for leg, put in (("a", self._stereo.left), ("b", self._stereo.right)):
            self._legs[leg] = LegStream(
                rate, self._types_of(leg), self.codecs, self._position, self._frame(put)
            )

    def _types_of(self, leg: str) -> Callable[[], dict[int, tuple[str, int]]]:
        return lambda: self.payload_types(leg)

    @property
    def rate(self) -> int:
        """The file's sample rate."""
        return int(self.writer.sample_rate)

    @property
    def paused(self) -> bool:
        """Whether a pause is in force."""
        return bool(self.paused_spans) and self.paused_spans[-1][1] is None

    @property
    def seconds(self) -> float:
        """Audio written so far."""
        return float(self.writer.samples_written) / self.rate

    def _position(self) -> int:
        return round((self.clock.seconds() - self.started) * self.rate)

    def _frame_now(self) -> int:
        return round((self.clock.seconds() - self.started) * FRAMES_PER_SECOND)

    def _frame(
        self, put: Callable[[int, np.ndarray], None]
    ) -> Callable[[int, np.ndarray], None]:
        def frame(number: int, pcm: np.ndarray) -> None:
            if self._in_pause(number):
                pcm = np.zeros_like(pcm)
            put(number, pcm)

        return frame

    def _in_pause(self, number: int) -> bool:
        for first, after in reversed(self.paused_spans):
            if number >= first and (after is None or number < after):  # type: ignore[operator]
                return True
        return False

    def packet(self, leg: str, data: bytes) -> None:
        """A packet ``leg`` sent (the relay tap's listener)."""
        if not self._closed:
            self._legs[leg].packet(data)

    def pause(self) -> bool:
        """Record silence from now on; False if already paused."""
        if self.paused or self._closed:
            return False
        self.paused_spans.append([self._frame_now(), None])
        return True

    def resume(self) -> bool:
        """Record the call again from now on; False if not paused."""
        if not self.paused or self._closed:
            return False
        self.paused_spans[-1][1] = self._frame_now()
        return True

    def close(self) -> Deferred[str]:
        """Write what the legs still hold, finalise and rename the file: fires with its path."""
        self._closed = True
        for leg in self._legs.values():
            leg.flush()
        if self.paused:
            self.paused_spans[-1][1] = self._frame_now()
        return self._stereo.close()

    def abort(self) -> Deferred[None]:
        """Drop the recording (its temporary file is removed)."""
        self._closed = True
        return self._stereo.abort()
