"""
WAV files for call recording and prompts, without blocking the reactor.

Formats: RIFF/WAVE, linear PCM, 16-bit, mono or stereo, 8 kHz or 16 kHz.
Anything else is rejected with a :class:`ValueError` that says why.

Every file operation (open, write, fsync, rename, read) runs in a thread pool
through an injected ``deferToThreadPool``-shaped callable, so the reactor
thread only copies samples into memory:

* :class:`WavWriter` queues frames on the reactor thread and hands them to
  the pool in batches, one job at a time (jobs stay in order; frames that
  arrive while a job runs join the next batch).  It writes to a temporary
  file beside the final path; :meth:`WavWriter.close` finalises the header,
  fsyncs and atomically renames it into place, so a crash mid-recording never
  leaves a half-written file at the final path (only a hidden ``.part`` file
  beside it).  :meth:`WavWriter.abort` removes the temporary file.
* :class:`StereoRecorder` records the two legs of a call as the left and
  right channels of one file, aligned by the media clock's frame number.
* :class:`WavReader` / :func:`read_wav` read a whole file in a thread;
  :class:`Player` cuts what they return into 20 ms frames.  Resampling is the
  caller's business: the player only checks the format and exposes
  ``sample_rate``.

The stdlib :mod:`wave` module does the parsing and the header, inside the
worker thread.
"""

from __future__ import annotations

import os
import secrets
import wave
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

SAMPLE_RATES = (8000, 16000)
CHANNELS = (1, 2)
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM
FRAME_MS = 20
PCM = np.dtype("<i2")  # WAV samples are little-endian (RIFF)
SILENCE_CHUNK = 1 << 20  # bytes of zeros written at a time for a long silence

DeferToThreadPool = Callable[..., "Deferred[Any]"]
"""The shape of :func:`twisted.internet.threads.deferToThreadPool`:
``(reactor, threadpool, f, *args) -> Deferred`` firing, in the reactor thread,
with what ``f(*args)`` returned in a pool thread."""


def _check_format(sample_rate: int, channels: int, where: str) -> None:
    """Reject a sample rate or channel count this module does not handle.

    :raises ValueError: naming ``where`` and the problem.
    """
    if channels not in CHANNELS:
        raise ValueError(f"{where}: {channels} channels; only mono or stereo")
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(
            f"{where}: sample rate {sample_rate} Hz; only 8000 or 16000 Hz"
        )


def _check_samples(samples: np.ndarray, channels: int, where: str) -> None:
    """Reject samples that are not int16 ``(n,)`` (mono) or ``(n, 2)`` (stereo).

    :raises ValueError: naming ``where`` and the problem.
    """
    if channels == 1:
        shape_ok = samples.ndim == 1
    else:
        shape_ok = samples.ndim == 2 and samples.shape[1] == 2
    if samples.dtype != np.int16 or not shape_ok:
        want = "(n,)" if channels == 1 else "(n, 2)"
        raise ValueError(
            f"{where}: samples must be int16 of shape {want}, "
            f"not {samples.dtype} {samples.shape}"
        )


def _frame_samples(sample_rate: int, frame_ms: int) -> int:
    """Samples (per channel) in one frame."""
    if frame_ms <= 0 or sample_rate * frame_ms % 1000:
        raise ValueError(f"frame_ms {frame_ms!r} is not a whole number of samples")
    return sample_rate * frame_ms // 1000


class WavAudio(NamedTuple):
    """A whole decoded WAV file."""

    sample_rate: int
    channels: int
    samples: np.ndarray
    """int16; shape ``(n,)`` for mono, ``(n, 2)`` for stereo; read-only."""


# ---------------------------------------------------------------------------
# Blocking parts: these run in pool threads only.


def load_wav(path: str, max_seconds: float = 3600.0) -> WavAudio:
    """Read and validate a whole WAV file (blocking: call it in a thread).

    :param path: the file.
    :param max_seconds: longer files are refused rather than loaded.
    :raises ValueError: if the file is not 16-bit PCM WAV, mono or stereo,
        at 8 or 16 kHz, or is longer than ``max_seconds``.
    :raises OSError: if it cannot be read.
    """
    try:
        reader = wave.open(path, "rb")
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{path}: not a PCM WAV file ({e})") from None
    with reader:
        sample_width = reader.getsampwidth()
        channels = reader.getnchannels()
        sample_rate = reader.getframerate()
        if sample_width != SAMPLE_WIDTH:
            raise ValueError(f"{path}: {8 * sample_width}-bit samples; only 16-bit PCM")
        _check_format(sample_rate, channels, path)
        frames = reader.getnframes()
        if frames > max_seconds * sample_rate:
            raise ValueError(
                f"{path}: {frames / sample_rate:.0f} s long; at most {max_seconds:.0f} s"
            )
        data = reader.readframes(frames)
    usable = len(data) - len(data) % (SAMPLE_WIDTH * channels)  # a truncated file
    samples = np.frombuffer(data[:usable], dtype=PCM).astype(np.int16)
    if channels == 2:
        samples = samples.reshape(-1, 2)
    samples.setflags(write=False)
    return WavAudio(sample_rate, channels, samples)


@define(eq=False)
class _WavFile:
    """The blocking half of a :class:`WavWriter`: one temporary file.

    Its methods are called in pool threads, one at a time, in order.
    """

    temp_path: str
    final_path: str
    sample_rate: int
    channels: int
    _file: Any = field(init=False, default=None)
    _wave: wave.Wave_write | None = field(init=False, default=None)

    def _open(self) -> wave.Wave_write:
        if self._wave is None:
            self._file = open(self.temp_path, "xb")  # closed in commit/discard
            w = wave.open(self._file, "wb")
            w.setnchannels(self.channels)
            w.setsampwidth(SAMPLE_WIDTH)
            w.setframerate(self.sample_rate)
            self._wave = w
        return self._wave

    def append(self, chunks: list[bytes | int]) -> None:
        """Append raw interleaved little-endian samples.

        :param chunks: sample bytes, or an int for that many samples (per
            channel) of silence.
        """
        w = self._open()
        block = SAMPLE_WIDTH * self.channels
        data: list[bytes] = []
        for chunk in chunks:
            if isinstance(chunk, bytes):
                data.append(chunk)
                continue
            w.writeframesraw(b"".join(data))
            data.clear()
            left = chunk * block
            while left:
                n = min(left, SILENCE_CHUNK)
                w.writeframesraw(bytes(n))
                left -= n
        w.writeframesraw(b"".join(data))

    def commit(self, chunks: list[bytes | int]) -> str:
        """Append the last samples, finalise, fsync and rename into place.

        :returns: the final path.
        """
        try:
            self.append(chunks)
            w = self._open()
            w.close()  # writes the final RIFF and data sizes
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self.temp_path, self.final_path)
        except BaseException:
            self.discard()
            raise
        fsync_directory(os.path.dirname(self.final_path) or ".")
        return self.final_path

    def discard(self) -> None:
        """Close and remove the temporary file, if any; never raises."""
        f, self._file, self._wave = self._file, None, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass


def fsync_directory(path: str) -> None:
    """Make a rename in ``path`` durable, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Reactor-side parts.


@define(eq=False)
class WavWriter:
    """
    Records 16-bit PCM to a WAV file from the reactor thread.

    :param path: the final path; it appears only when :meth:`close` succeeds
        (an existing file there is replaced).
    :param reactor: where results are delivered.
    :param threadpool: where the file work runs; ``reactor.getThreadPool()``
        when ``None``.
    :param sample_rate: 8000 or 16000.
    :param channels: 1 (mono) or 2 (stereo).
    :param batch_frames: how many :meth:`write` calls are gathered into one
        thread-pool job (25 frames of 20 ms: one job per half second).
    :param max_pending_seconds: audio held in memory while the disk is slow;
        beyond it frames are dropped (counted in :attr:`dropped_frames`)
        rather than growing without bound.
    :param defer_to_thread_pool: :func:`~twisted.internet.threads.deferToThreadPool`
        or a test double with its signature.
    :raises ValueError: if the format is not supported.
    """

    log = Logger()

    path: str
    reactor: IReactorFromThreads
    threadpool: ThreadPool | None = None
    sample_rate: int = 8000
    channels: int = 1
    batch_frames: int = 25
    max_pending_seconds: float = 30.0
    defer_to_thread_pool: DeferToThreadPool = deferToThreadPool
    temp_path: str = field(init=False)
    """The hidden file samples go to until :meth:`close` renames it."""
    samples_written: int = field(init=False, default=0)
    """Samples per channel accepted so far (what the file will hold)."""
    dropped_frames: int = field(init=False, default=0)
    """:meth:`write` calls dropped because too much audio was pending."""
    _sink: _WavFile = field(init=False)
    _pending: list[bytes | int] = field(init=False, factory=list)
    _pending_samples: int = field(init=False, default=0)
    _max_pending_samples: int = field(init=False)
    _busy: bool = field(init=False, default=False)
    _ending: str | None = field(init=False, default=None)  # "close" or "abort"
    _ended: Deferred[Any] | None = field(init=False, default=None)
    _error: Failure | None = field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        _check_format(self.sample_rate, self.channels, self.path)
        if self.batch_frames < 1:
            raise ValueError(
                f"batch_frames must be at least 1, not {self.batch_frames}"
            )
        if self.threadpool is None:
            self.threadpool = self.reactor.getThreadPool()  # type: ignore[attr-defined]
        directory, name = os.path.split(self.path)
        self.temp_path = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.part")
        self._sink = _WavFile(
            self.temp_path, self.path, self.sample_rate, self.channels
        )
        self._max_pending_samples = int(self.max_pending_seconds * self.sample_rate)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`abort` was called."""
        return self._ending is not None

    def write(self, samples: np.ndarray) -> None:
        """Queue samples; returns at once, the file is written in the pool.

        :param samples: int16; shape ``(n,)`` for mono, ``(n, 2)`` (left,
            right) for stereo.  They are copied: the caller may reuse the array.
        :raises ValueError: if the array has the wrong type or shape.
        :raises RuntimeError: after :meth:`close` or :meth:`abort`.
        """
        if self._ending is not None:
            raise RuntimeError(f"{self.path}: write after close")
        _check_samples(samples, self.channels, self.path)
        if self._error is not None:
            return  # the file is already lost; close() reports why
        n = samples.shape[0]
        if self._busy and self._pending_samples + n > self._max_pending_samples:
            if not self.dropped_frames:
                self.log.warn(
                    "recording {path}: disk too slow, dropping audio", path=self.path
                )
            self.dropped_frames += 1
            return
        self._pending.append(samples.astype(PCM, copy=False).tobytes())
        self._pending_samples += n
        self.samples_written += n
        if len(self._pending) >= self.batch_frames:
            self._pump()

    def write_silence(self, samples: int) -> None:
        """Queue ``samples`` samples (per channel) of silence.

        A long silence (a call on hold) costs no memory: the zeros are made
        in the pool thread, and are never dropped for lack of room.

        :raises ValueError: if ``samples`` is negative.
        :raises RuntimeError: after :meth:`close` or :meth:`abort`.
        """
        if self._ending is not None:
            raise RuntimeError(f"{self.path}: write after close")
        if samples < 0:
            raise ValueError(f"{self.path}: {samples} samples of silence")
        if self._error is not None or not samples:
            return
        self._pending.append(samples)
        self.samples_written += samples
        if len(self._pending) >= self.batch_frames:
            self._pump()

    def close(self) -> Deferred[str]:
        """Write what is pending, finalise the header, fsync, rename into place.

        :returns: a Deferred firing with the final path, or failing (with the
            temporary file removed) if any write failed.
        :raises RuntimeError: if already closed or aborted.
        """
        return self._end("close")

    def abort(self) -> Deferred[None]:
        """Drop what is pending and remove the temporary file.

        :returns: a Deferred firing with ``None`` once the file is gone.
        :raises RuntimeError: if already closed or aborted.
        """
        return self._end("abort").addCallback(lambda _: None)

    def _end(self, how: str) -> Deferred[Any]:
        if self._ending is not None:
            raise RuntimeError(f"{self.path}: already {self._ending}d")
        self._ending = how
        ended: Deferred[Any] = Deferred()
        self._ended = ended
        if how == "abort":
            self._pending, self._pending_samples = [], 0
        self._pump()  # may fire ``ended`` at once
        return ended

    def _pump(self) -> None:
        """Start the next thread-pool job unless one is running."""
        if self._busy:
            return
        sink = self._sink
        kind: str
        job: Callable[..., Any]
        args: tuple[Any, ...] = ()
        if self._ending is None:
            if not self._pending:
                return
            kind, job, args = "append", sink.append, (self._take(),)
        elif self._ending == "close" and self._error is None:
            kind, job, args = "commit", sink.commit, (self._take(),)
        else:
            kind, job = "discard", sink.discard
        self._busy = True
        d = self.defer_to_thread_pool(self.reactor, self.threadpool, job, *args)
        d.addCallbacks(
            self._job_done,
            self._job_failed,
            callbackArgs=(kind,),
            errbackArgs=(kind,),
        )

    def _take(self) -> list[bytes | int]:
        chunks, self._pending, self._pending_samples = self._pending, [], 0
        return chunks

    def _job_done(self, result: Any, kind: str) -> None:
        self._busy = False
        if kind == "append":
            self._pump()
        elif kind == "commit":
            self._finish(result)
        elif self._ending == "close" and self._error is not None:
            self._finish(self._error)  # discarded after a failed append
        else:
            self._finish(None)

    def _job_failed(self, failure: Failure, kind: str) -> None:
        self._busy = False
        self.log.failure("recording {path} failed", failure=failure, path=self.path)
        if kind == "append":
            # The file is lost; later writes are ignored and close() fails.
            self._error = failure
            self._pending, self._pending_samples = [], 0
            self._pump()
        else:
            self._finish(failure)  # commit removes the temporary file itself

    def _finish(self, result: object) -> None:
        ended, self._ended = self._ended, None
        assert ended is not None
        if isinstance(result, Failure):
            ended.errback(result)
        else:
            ended.callback(result)


@define(eq=False)
class StereoRecorder:
    """
    Records two call legs as the left and right channels of one WAV file.

    Frames are aligned by their frame number on the media clock (the 20 ms
    tick the frame belongs to, not an RTP timestamp).  A frame number is
    written once both sides have it, or once the newest frame seen is
    ``max_delay_frames`` ahead of it (jitter allowance); a side that has no
    frame for it then records silence.  A gap in the frame numbers is
    recorded as silence on both sides.  A frame that arrives after its number
    was written is dropped and counted in :attr:`late_frames`.

    :param writer: a stereo :class:`WavWriter`.
    :param frame_ms: length of one frame.
    :param max_delay_frames: how long to wait for the other side.
    """

    writer: WavWriter
    frame_ms: int = FRAME_MS
    max_delay_frames: int = 3
    samples_per_frame: int = field(init=False)
    late_frames: int = field(init=False, default=0)
    """Frames dropped because their frame number was already written."""
    _pending: dict[int, list[np.ndarray | None]] = field(init=False, factory=dict)
    _next: int | None = field(init=False, default=None)
    _newest: int | None = field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.writer.channels != 2:
            raise ValueError(f"{self.writer.path}: a stereo recorder needs 2 channels")
        self.samples_per_frame = _frame_samples(self.writer.sample_rate, self.frame_ms)

    def left(self, frame_number: int, frame: np.ndarray) -> None:
        """Add the left leg's frame for ``frame_number``.

        :raises ValueError: if the frame is not int16 of one frame's length.
        """
        self._add(0, frame_number, frame)

    def right(self, frame_number: int, frame: np.ndarray) -> None:
        """Add the right leg's frame for ``frame_number``.

        :raises ValueError: if the frame is not int16 of one frame's length.
        """
        self._add(1, frame_number, frame)

    def _add(self, side: int, number: int, frame: np.ndarray) -> None:
        n = self.samples_per_frame
        if frame.dtype != np.int16 or frame.shape != (n,):
            raise ValueError(
                f"{self.writer.path}: frame must be int16 of shape ({n},), "
                f"not {frame.dtype} {frame.shape}"
            )
        if self._next is not None and number < self._next:
            self.late_frames += 1
            return
        slot = self._pending.setdefault(number, [None, None])
        if slot[side] is not None:
            self.late_frames += 1  # a duplicate
            return
        slot[side] = frame.copy()
        if self._newest is None or number > self._newest:
            self._newest = number
        self._emit(self._newest - self.max_delay_frames)

    def _emit(self, through: int) -> None:
        """Write every frame number up to ``through``, and any complete ones after."""
        pending = self._pending
        if not pending:
            return
        # Until the first write, a slightly earlier frame may still arrive.
        start = number = self._next if self._next is not None else min(pending)
        while pending and (number <= through or _complete(pending.get(number))):
            if number not in pending:
                # A gap on both sides: silence up to the next frame we have.
                upto = min(min(pending), through + 1)
                self.writer.write_silence((upto - number) * self.samples_per_frame)
                number = upto
                continue
            left, right = pending.pop(number)
            stereo = np.zeros((self.samples_per_frame, 2), np.int16)
            if left is not None:
                stereo[:, 0] = left
            if right is not None:
                stereo[:, 1] = right
            self.writer.write(stereo)
            number += 1
        if number != start:
            self._next = number

    def close(self) -> Deferred[str]:
        """Write every frame still waiting (missing sides as silence), then close.

        :returns: :meth:`WavWriter.close`'s Deferred.
        """
        if self._pending:
            self._emit(max(self._pending))
        return self.writer.close()

    def abort(self) -> Deferred[None]:
        """Drop the recording: :meth:`WavWriter.abort`."""
        self._pending.clear()
        return self.writer.abort()


def _complete(slot: list[np.ndarray | None] | None) -> bool:
    return slot is not None and slot[0] is not None and slot[1] is not None


@define(eq=False)
class WavReader:
    """
    Reads WAV files in a thread pool.

    :param reactor: where results are delivered.
    :param threadpool: where files are read; ``reactor.getThreadPool()`` when
        ``None``.
    :param max_seconds: longer files are refused.
    :param defer_to_thread_pool: :func:`~twisted.internet.threads.deferToThreadPool`
        or a test double with its signature.
    """

    reactor: IReactorFromThreads
    threadpool: ThreadPool | None = None
    max_seconds: float = 3600.0
    defer_to_thread_pool: DeferToThreadPool = deferToThreadPool

    def __attrs_post_init__(self) -> None:
        if self.threadpool is None:
            self.threadpool = self.reactor.getThreadPool()  # type: ignore[attr-defined]

    def read(self, path: str) -> Deferred[WavAudio]:
        """Read and validate a whole file.

        :returns: a Deferred firing with ``(sample_rate, channels, samples)``,
            or failing with :class:`ValueError` (bad format) or :class:`OSError`.
        """
        return self.defer_to_thread_pool(
            self.reactor, self.threadpool, load_wav, path, self.max_seconds
        )


def read_wav(
    path: str,
    reactor: IReactorFromThreads,
    threadpool: ThreadPool | None = None,
    *,
    defer_to_thread_pool: DeferToThreadPool = deferToThreadPool,
) -> Deferred[WavAudio]:
    """Read and validate a whole WAV file in a thread.

    :returns: a Deferred firing with ``(sample_rate, channels, samples)``
        (a :class:`WavAudio`), or failing with :class:`ValueError` if the file
        is not 16-bit PCM, mono or stereo, 8 or 16 kHz.
    """
    return WavReader(
        reactor, threadpool, defer_to_thread_pool=defer_to_thread_pool
    ).read(path)


@define(eq=False)
class Player:
    """
    Cuts decoded audio into frames, one per tick.

    Iterating yields int16 frames of :attr:`samples_per_frame` samples
    (shape ``(n,)`` mono, ``(n, 2)`` stereo) at :attr:`sample_rate`; the last
    one is padded with silence.  With ``loop`` it starts over forever (music
    on hold).  Frames are read-only views: no copy per tick.

    :param audio: ``(sample_rate, channels, samples)`` as :func:`read_wav`
        returns it, so ``read_wav(...).addCallback(Player)`` works.
    :raises ValueError: if the format is not supported.
    """

    audio: tuple[int, int, np.ndarray]
    frame_ms: int = FRAME_MS
    loop: bool = False
    sample_rate: int = field(init=False)
    channels: int = field(init=False)
    samples_per_frame: int = field(init=False)
    _samples: np.ndarray = field(init=False)
    _position: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        sample_rate, channels, samples = self.audio
        _check_format(sample_rate, channels, "player")
        _check_samples(samples, channels, "player")
        self.sample_rate, self.channels = sample_rate, channels
        self.samples_per_frame = _frame_samples(sample_rate, self.frame_ms)
        n = self.samples_per_frame
        short = -samples.shape[0] % n
        if short:
            pad = np.zeros((short,) + samples.shape[1:], np.int16)
            samples = np.concatenate([samples, pad])
        samples = samples.view()
        samples.setflags(write=False)
        self._samples = samples

    @property
    def frames(self) -> int:
        """Frames in one pass through the audio."""
        return self._samples.shape[0] // self.samples_per_frame

    def __iter__(self) -> Iterator[np.ndarray]:
        """The player is its own iterator."""
        return self

    def __next__(self) -> np.ndarray:
        """The next frame.

        :raises StopIteration: at the end, unless looping (or if empty).
        """
        samples, start = self._samples, self._position
        if start >= samples.shape[0]:
            if not self.loop or not samples.shape[0]:
                raise StopIteration
            start = 0
        end = start + self.samples_per_frame
        self._position = end
        return samples[start:end]

    def rewind(self) -> None:
        """Start again from the first frame."""
        self._position = 0
