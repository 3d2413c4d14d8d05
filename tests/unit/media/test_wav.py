"""Tests for :mod:`pbx.media.wav`."""

from __future__ import annotations

import os
import queue
import struct
import threading
import wave
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from zope.interface import implementer

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from pbx.media.wav import (
    Player,
    StereoRecorder,
    WavAudio,
    WavReader,
    WavWriter,
    load_wav,
    read_wav,
)

REACTOR = cast(IReactorFromThreads, object())  # only handed to the fake below


class FakeThreads:
    """A ``deferToThreadPool`` double: runs jobs at once, or queues them until asked."""

    def __init__(self, immediate: bool = True) -> None:
        self.immediate = immediate
        self.calls: list[str] = []
        self.queued: list[
            tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]
        ] = []

    def __call__(
        self, reactor: object, threadpool: object, f: Callable[..., Any], *args: Any
    ) -> Deferred[Any]:
        """Record the job and run it now or queue it."""
        self.calls.append(f.__name__)
        if self.immediate:
            return maybeDeferred(f, *args)
        d: Deferred[Any] = Deferred()
        self.queued.append((d, f, args))
        return d

    def run_next(self) -> None:
        """Run the oldest queued job and deliver its result."""
        d, f, args = self.queued.pop(0)
        maybeDeferred(f, *args).chainDeferred(d)

    def run_all(self) -> None:
        """Run queued jobs, including those they cause, until none is left."""
        while self.queued:
            self.run_next()


@implementer(IReactorFromThreads)
class QueueReactor:
    """Just enough reactor for a real thread pool: calls from threads wait in a queue."""

    def __init__(self) -> None:
        self.calls: queue.Queue[
            tuple[Callable[..., Any], tuple[object, ...], dict[str, object]]
        ] = queue.Queue()

    def callFromThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None:
        """Queue ``callable`` to run in the test's thread."""
        self.calls.put((callable, args, kwargs))

    def run_until(self, d: Deferred[Any]) -> None:
        """Run queued calls, waiting for each, until ``d`` has fired."""
        while not d.called:
            f, args, kwargs = self.calls.get(timeout=30)
            f(*args, **kwargs)


def frame(seed: int, samples: int = 160, channels: int = 1) -> np.ndarray:
    """A reproducible random int16 frame."""
    rng = np.random.default_rng(seed)
    shape = (samples,) if channels == 1 else (samples, 2)
    return rng.integers(-20000, 20000, shape, dtype=np.int16)


def write_wav_file(
    path: str, rate: int, channels: int, width: int, data: bytes = b""
) -> str:
    """Write a WAV file with the stdlib, in any format it allows."""
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data or bytes(width * channels * 160))
    return path


def write_float_wav(path: str) -> str:
    """Write a WAV file with IEEE float samples (format tag 3): not PCM."""
    data = struct.pack("<160f", *([0.0] * 160))
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


class WriterCase(SynchronousTestCase):
    """Helpers for tests that write files."""

    def directory(self) -> str:
        """A fresh empty directory."""
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        return path

    def writer(
        self, threads: FakeThreads, path: str | None = None, **kwargs: Any
    ) -> WavWriter:
        """A writer on the fake thread pool."""
        if path is None:
            path = os.path.join(self.directory(), "call.wav")
        return WavWriter(
            path,
            REACTOR,
            ThreadPool(),  # never started: the fake runs the jobs
            defer_to_thread_pool=threads,
            **kwargs,
        )


class WavWriterTests(WriterCase):
    """Recording to a file in the thread pool."""

    def test_round_trip_mono(self) -> None:
        """Mono 8 kHz frames written are read back unchanged."""
        frames = [frame(i) for i in range(60)]
        w = self.writer(FakeThreads())
        for f in frames:
            w.write(f)
        path = self.successResultOf(w.close())
        self.assertEqual(path, w.path)
        rate, channels, samples = load_wav(path)
        self.assertEqual((rate, channels), (8000, 1))
        np.testing.assert_array_equal(samples, np.concatenate(frames))

    def test_round_trip_stereo(self) -> None:
        """Stereo 16 kHz frames written are read back unchanged, left and right."""
        frames = [frame(i, 320, 2) for i in range(30)]
        w = self.writer(FakeThreads(), sample_rate=16000, channels=2)
        for f in frames:
            w.write(f)
        audio = load_wav(self.successResultOf(w.close()))
        self.assertEqual((audio.sample_rate, audio.channels), (16000, 2))
        np.testing.assert_array_equal(audio.samples, np.concatenate(frames))
        with wave.open(w.path) as r:
            self.assertEqual(r.getnframes(), 30 * 320)

    def test_empty_recording(self) -> None:
        """Closing a writer that got no samples leaves a valid, empty WAV file."""
        w = self.writer(FakeThreads())
        audio = load_wav(self.successResultOf(w.close()))
        self.assertEqual(audio.samples.shape, (0,))

    def test_no_file_work_on_calling_thread(self) -> None:
        """write() and close() touch no file: everything waits for the pool."""
        threads = FakeThreads(immediate=False)
        w = self.writer(threads, batch_frames=5)
        for i in range(12):
            w.write(frame(i))
        d = w.close()
        self.assertEqual(os.listdir(os.path.dirname(w.path)), [])
        self.assertNoResult(d)
        threads.run_all()
        self.assertEqual(self.successResultOf(d), w.path)

    def test_final_path_appears_only_on_close(self) -> None:
        """Samples go to a hidden temporary file; the final path exists only after close."""
        threads = FakeThreads(immediate=False)
        w = self.writer(threads, batch_frames=5)
        for i in range(12):
            w.write(frame(i))
        threads.run_all()
        self.assertTrue(os.path.exists(w.temp_path))
        self.assertFalse(os.path.exists(w.path))
        self.assertEqual(os.path.dirname(w.temp_path), os.path.dirname(w.path))
        self.assertTrue(os.path.basename(w.temp_path).startswith(".call.wav."))
        d = w.close()
        self.assertFalse(os.path.exists(w.path))
        threads.run_all()
        self.successResultOf(d)
        self.assertTrue(os.path.exists(w.path))
        self.assertFalse(os.path.exists(w.temp_path))

    def test_crash_leaves_final_path_untouched(self) -> None:
        """A recording abandoned mid-way leaves an existing file at the final path as it was."""
        path = os.path.join(self.directory(), "call.wav")
        with open(path, "wb") as f:
            f.write(b"previous")
        w = self.writer(FakeThreads(), path, batch_frames=1)
        self.addCleanup(w.abort)  # the "crashed" writer still holds the file open
        w.write(frame(1))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"previous")
        self.assertTrue(os.path.exists(w.temp_path))

    def test_close_replaces_existing_file(self) -> None:
        """Closing replaces a file already at the final path."""
        path = os.path.join(self.directory(), "call.wav")
        with open(path, "wb") as f:
            f.write(b"previous")
        w = self.writer(FakeThreads(), path)
        w.write(frame(1))
        self.successResultOf(w.close())
        np.testing.assert_array_equal(load_wav(path).samples, frame(1))

    def test_abort_removes_temporary_file(self) -> None:
        """abort() removes the temporary file and never creates the final path."""
        w = self.writer(FakeThreads(), batch_frames=2)
        for i in range(5):
            w.write(frame(i))
        self.assertTrue(os.path.exists(w.temp_path))
        self.assertIsNone(self.successResultOf(w.abort()))
        self.assertEqual(os.listdir(os.path.dirname(w.path)), [])

    def test_abort_while_writing(self) -> None:
        """abort() during a pool job waits for it, then removes the temporary file."""
        threads = FakeThreads(immediate=False)
        w = self.writer(threads, batch_frames=2)
        w.write(frame(1))
        w.write(frame(2))
        d = w.abort()
        self.assertNoResult(d)
        threads.run_all()
        self.assertEqual(threads.calls, ["append", "discard"])
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(os.listdir(os.path.dirname(w.path)), [])

    def test_batches(self) -> None:
        """Frames are handed to the pool batch_frames at a time, the rest on close."""
        threads = FakeThreads()
        w = self.writer(threads, batch_frames=10)
        for i in range(35):
            w.write(frame(i))
        self.assertEqual(threads.calls, ["append"] * 3)
        self.successResultOf(w.close())
        self.assertEqual(threads.calls, ["append"] * 3 + ["commit"])
        self.assertEqual(load_wav(w.path).samples.shape, (35 * 160,))

    def test_one_job_at_a_time(self) -> None:
        """Frames arriving while a job runs join one later job, in order."""
        threads = FakeThreads(immediate=False)
        w = self.writer(threads, batch_frames=2)
        frames = [frame(i) for i in range(9)]
        for f in frames:
            w.write(f)
        self.assertEqual(len(threads.queued), 1)
        threads.run_next()  # the first batch; the 7 frames since go together
        self.assertEqual(len(threads.queued), 1)
        d = w.close()
        threads.run_all()
        self.successResultOf(d)
        self.assertEqual(threads.calls, ["append", "append", "commit"])
        np.testing.assert_array_equal(load_wav(w.path).samples, np.concatenate(frames))

    def test_samples_are_copied(self) -> None:
        """The caller may reuse its array right after write()."""
        w = self.writer(FakeThreads())
        buf = frame(1)
        w.write(buf)
        buf[:] = 0
        self.successResultOf(w.close())
        np.testing.assert_array_equal(load_wav(w.path).samples, frame(1))
        self.assertEqual(w.samples_written, 160)

    def test_drops_when_disk_too_slow(self) -> None:
        """While a job is stuck, audio beyond max_pending_seconds is dropped and counted."""
        threads = FakeThreads(immediate=False)
        w = self.writer(threads, batch_frames=1, max_pending_seconds=0.1)
        for i in range(10):  # 1 in flight, 5 pending (0.1 s), 4 dropped
            w.write(frame(i))
        self.assertEqual(w.dropped_frames, 4)
        d = w.close()
        threads.run_all()
        self.successResultOf(d)
        self.assertEqual(load_wav(w.path).samples.shape, (6 * 160,))
        self.assertEqual(w.samples_written, 6 * 160)

    def test_silence(self) -> None:
        """write_silence() records that many zero samples between the frames."""
        w = self.writer(FakeThreads(), channels=2)
        w.write(frame(1, channels=2))
        w.write_silence(1000)
        w.write(frame(2, channels=2))
        samples = load_wav(self.successResultOf(w.close())).samples
        self.assertEqual(samples.shape, (1320, 2))
        np.testing.assert_array_equal(samples[160:1160], 0)
        np.testing.assert_array_equal(samples[1160:], frame(2, channels=2))

    def test_long_silence_never_dropped(self) -> None:
        """A minute of silence while the disk is busy is kept whole, not dropped."""
        threads = FakeThreads(immediate=False)
        w = self.writer(threads, batch_frames=1, max_pending_seconds=0.1)
        w.write(frame(1))
        w.write_silence(60 * 8000)
        w.write(frame(2))
        self.assertEqual(w.dropped_frames, 0)
        d = w.close()
        threads.run_all()
        samples = load_wav(self.successResultOf(d)).samples
        self.assertEqual(samples.shape, (60 * 8000 + 320,))
        np.testing.assert_array_equal(samples[-160:], frame(2))
        self.assertFalse(samples[160:-160].any())

    def test_failed_write_fails_close(self) -> None:
        """If the file cannot be written, close() fails with the error and leaves no file."""
        path = os.path.join(self.directory(), "missing", "call.wav")
        w = self.writer(FakeThreads(), path, batch_frames=1)
        w.write(frame(1))
        w.write(frame(2))  # ignored: the recording is already lost
        self.failureResultOf(w.close(), FileNotFoundError)
        self.assertFalse(os.path.exists(os.path.dirname(path)))
        self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)

    def test_failed_rename_removes_temporary_file(self) -> None:
        """If the final rename fails, close() fails and the temporary file is removed."""
        directory = self.directory()
        path = os.path.join(directory, "call.wav")
        os.makedirs(os.path.join(path, "occupied"))
        w = self.writer(FakeThreads(), path)
        w.write(frame(1))
        self.failureResultOf(w.close(), OSError)
        self.assertEqual(os.listdir(directory), ["call.wav"])
        self.assertTrue(os.path.isdir(path))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_use_after_close(self) -> None:
        """write(), close() and abort() after close raise RuntimeError."""
        w = self.writer(FakeThreads())
        self.successResultOf(w.close())
        self.assertTrue(w.closed)
        self.assertRaises(RuntimeError, w.write, frame(1))
        self.assertRaises(RuntimeError, w.write_silence, 160)
        self.assertRaises(RuntimeError, w.close)
        self.assertRaises(RuntimeError, w.abort)

    def test_bad_samples(self) -> None:
        """Samples of the wrong type or shape raise ValueError."""
        mono = self.writer(FakeThreads())
        stereo = self.writer(FakeThreads(), channels=2)
        self.assertRaises(ValueError, mono.write, frame(1).astype(np.float32))
        self.assertRaises(ValueError, mono.write, frame(1, channels=2))
        self.assertRaises(ValueError, stereo.write, frame(1))
        self.assertRaises(ValueError, stereo.write, np.zeros((160, 3), np.int16))

    def test_bad_format(self) -> None:
        """Unsupported channel counts and sample rates are refused up front."""
        for kwargs in ({"channels": 3}, {"sample_rate": 44100}):
            e = self.assertRaises(ValueError, self.writer, FakeThreads(), **kwargs)
            self.assertIn("call.wav", str(e))


class RealThreadPoolTests(WriterCase):
    """The writer on a real thread pool, with results brought back through a queue."""

    def test_round_trip_in_pool_threads(self) -> None:
        """Every file job runs in a pool thread and the file comes out whole."""
        pool = ThreadPool(minthreads=1, maxthreads=2)
        pool.start()
        self.addCleanup(pool.stop)
        reactor = QueueReactor()
        threads: set[int] = set()

        def recording(r: Any, p: Any, f: Callable[..., Any], *args: Any) -> Any:
            def job(*a: Any) -> Any:
                threads.add(threading.get_ident())
                return f(*a)

            return deferToThreadPool(r, p, job, *args)

        path = os.path.join(self.directory(), "call.wav")
        w = WavWriter(
            path, reactor, pool, batch_frames=4, defer_to_thread_pool=recording
        )
        frames = [frame(i) for i in range(50)]
        for f in frames:
            w.write(f)
        d = w.close()
        reactor.run_until(d)
        self.assertEqual(self.successResultOf(d), path)
        self.assertNotIn(threading.get_ident(), threads)
        self.assertTrue(threads)
        np.testing.assert_array_equal(load_wav(path).samples, np.concatenate(frames))


class StereoRecorderTests(WriterCase):
    """Two legs as left and right channels."""

    def recorder(self, **kwargs: Any) -> StereoRecorder:
        """A recorder on a stereo 8 kHz writer."""
        return StereoRecorder(self.writer(FakeThreads(), channels=2), **kwargs)

    def recorded(self, recorder: StereoRecorder) -> np.ndarray:
        """Close the recorder and read back its samples."""
        return load_wav(self.successResultOf(recorder.close())).samples

    def test_aligned(self) -> None:
        """Frames with the same number end up side by side."""
        r = self.recorder()
        for n in range(10):
            r.left(n, frame(n))
            r.right(n, frame(100 + n))
        samples = self.recorded(r)
        np.testing.assert_array_equal(
            samples[:, 0], np.concatenate([frame(n) for n in range(10)])
        )
        np.testing.assert_array_equal(
            samples[:, 1], np.concatenate([frame(100 + n) for n in range(10)])
        )

    def test_one_side_late(self) -> None:
        """A side lagging by less than max_delay_frames is still aligned by frame number."""
        r = self.recorder(max_delay_frames=3)
        for n in range(10):
            r.left(n, frame(n))
            if n >= 2:
                r.right(n - 2, frame(100 + n - 2))
        r.right(8, frame(108))
        r.right(9, frame(109))
        samples = self.recorded(r)
        self.assertEqual(r.late_frames, 0)
        np.testing.assert_array_equal(
            samples[:, 1], np.concatenate([frame(100 + n) for n in range(10)])
        )

    def test_missing_frame_is_silence(self) -> None:
        """A frame missing on one side is silence there; the other side is intact."""
        r = self.recorder()
        for n in range(10):
            r.left(n, frame(n))
            if n != 4:
                r.right(n, frame(100 + n))
        samples = self.recorded(r)
        self.assertEqual(samples.shape, (10 * 160, 2))
        np.testing.assert_array_equal(samples[4 * 160 : 5 * 160, 1], np.zeros(160))
        np.testing.assert_array_equal(samples[5 * 160 : 6 * 160, 1], frame(105))
        np.testing.assert_array_equal(
            samples[:, 0], np.concatenate([frame(n) for n in range(10)])
        )

    def test_one_side_silent_throughout(self) -> None:
        """With only one side sending, the other channel is all silence."""
        r = self.recorder()
        for n in range(5):
            r.right(n, frame(n))
        samples = self.recorded(r)
        np.testing.assert_array_equal(samples[:, 0], np.zeros(5 * 160))
        np.testing.assert_array_equal(
            samples[:, 1], np.concatenate([frame(n) for n in range(5)])
        )

    def test_gap_is_silence(self) -> None:
        """A gap in frame numbers on both sides is recorded as silence of the same length."""
        r = self.recorder()
        r.left(0, frame(1))
        r.right(0, frame(2))
        r.left(5, frame(3))
        r.right(5, frame(4))
        samples = self.recorded(r)
        self.assertEqual(samples.shape, (6 * 160, 2))
        np.testing.assert_array_equal(samples[160 : 5 * 160], 0)
        np.testing.assert_array_equal(samples[5 * 160 :, 0], frame(3))

    def test_too_late_is_dropped(self) -> None:
        """A frame arriving after its number was written is dropped and counted."""
        r = self.recorder(max_delay_frames=2)
        for n in range(6):
            r.left(n, frame(n))
        r.right(0, frame(100))
        samples = self.recorded(r)
        self.assertEqual(r.late_frames, 1)
        np.testing.assert_array_equal(samples[:160, 1], np.zeros(160))

    def test_earlier_start_on_other_side(self) -> None:
        """The recording starts at the earliest frame seen within the delay allowance."""
        r = self.recorder(max_delay_frames=3)
        r.left(10, frame(10))
        r.right(9, frame(109))
        r.right(10, frame(110))
        samples = self.recorded(r)
        self.assertEqual(samples.shape, (2 * 160, 2))
        np.testing.assert_array_equal(samples[:160, 1], frame(109))
        np.testing.assert_array_equal(samples[160:, 0], frame(10))

    def test_duplicate_dropped(self) -> None:
        """A second frame for the same side and number is dropped and counted."""
        r = self.recorder()
        r.left(0, frame(1))
        r.left(0, frame(2))
        samples = self.recorded(r)
        self.assertEqual(r.late_frames, 1)
        np.testing.assert_array_equal(samples[:, 0], frame(1))

    def test_abort(self) -> None:
        """abort() leaves no file behind."""
        r = self.recorder()
        r.left(0, frame(1))
        self.successResultOf(r.abort())
        self.assertEqual(os.listdir(os.path.dirname(r.writer.path)), [])

    def test_needs_stereo_writer(self) -> None:
        """A mono writer is refused."""
        self.assertRaises(ValueError, StereoRecorder, self.writer(FakeThreads()))

    def test_bad_frame(self) -> None:
        """A frame of the wrong length raises ValueError."""
        r = self.recorder()
        self.assertRaises(ValueError, r.left, 0, frame(1, 320))


class ReadWavTests(SynchronousTestCase):
    """Reading and validating files in the pool."""

    def read(self, path: str, **kwargs: Any) -> Deferred[WavAudio]:
        """read_wav on the immediate fake pool."""
        return read_wav(
            path, REACTOR, ThreadPool(), defer_to_thread_pool=FakeThreads(), **kwargs
        )

    def test_reads_mono(self) -> None:
        """A mono 8 kHz file reads as (8000, 1, samples)."""
        data = frame(1).astype("<i2").tobytes()
        path = write_wav_file(self.mktemp(), 8000, 1, 2, data)
        rate, channels, samples = self.successResultOf(self.read(path))
        self.assertEqual((rate, channels), (8000, 1))
        np.testing.assert_array_equal(samples, frame(1))
        self.assertFalse(samples.flags.writeable)

    def test_reads_stereo(self) -> None:
        """A stereo 16 kHz file reads as (16000, 2, samples of shape (n, 2))."""
        data = frame(1, 320, 2).astype("<i2").tobytes()
        path = write_wav_file(self.mktemp(), 16000, 2, 2, data)
        rate, channels, samples = self.successResultOf(self.read(path))
        self.assertEqual((rate, channels), (16000, 2))
        np.testing.assert_array_equal(samples, frame(1, 320, 2))

    def test_threads_through_the_pool(self) -> None:
        """The read runs as a pool job, not on the calling thread."""
        threads = FakeThreads(immediate=False)
        path = write_wav_file(self.mktemp(), 8000, 1, 2)
        d = read_wav(path, REACTOR, ThreadPool(), defer_to_thread_pool=threads)
        self.assertNoResult(d)
        threads.run_all()
        self.assertEqual(threads.calls, ["load_wav"])
        self.assertEqual(self.successResultOf(d).sample_rate, 8000)

    def assertRefused(self, path: str, words: str) -> None:
        """Reading ``path`` fails with a ValueError whose message has ``words``."""
        failure = self.failureResultOf(self.read(path), ValueError)
        self.assertIn(words, str(failure.value))
        self.assertIn(path, str(failure.value))

    def test_rejects_8_bit(self) -> None:
        """An 8-bit file is refused with a ValueError saying so."""
        self.assertRefused(write_wav_file(self.mktemp(), 8000, 1, 1), "8-bit")

    def test_rejects_24_bit(self) -> None:
        """A 24-bit file is refused with a ValueError saying so."""
        self.assertRefused(write_wav_file(self.mktemp(), 8000, 1, 3), "24-bit")

    def test_rejects_more_than_two_channels(self) -> None:
        """A 3-channel file is refused with a ValueError saying so."""
        self.assertRefused(write_wav_file(self.mktemp(), 8000, 3, 2), "3 channels")

    def test_rejects_non_pcm(self) -> None:
        """A float WAV file is refused as not PCM."""
        self.assertRefused(write_float_wav(self.mktemp()), "not a PCM WAV")

    def test_rejects_sample_rate(self) -> None:
        """A 44.1 kHz file is refused with a ValueError naming the rate."""
        self.assertRefused(write_wav_file(self.mktemp(), 44100, 1, 2), "44100 Hz")

    def test_rejects_garbage(self) -> None:
        """A file that is not RIFF/WAVE is refused."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"ID3\x03 not a wave file at all")
        self.assertRefused(path, "not a PCM WAV")

    def test_rejects_too_long(self) -> None:
        """A file longer than max_seconds is refused rather than loaded."""
        path = write_wav_file(self.mktemp(), 8000, 1, 2, bytes(2 * 8000 * 3))
        reader = WavReader(
            REACTOR, ThreadPool(), max_seconds=2, defer_to_thread_pool=FakeThreads()
        )
        failure = self.failureResultOf(reader.read(path), ValueError)
        self.assertIn("at most 2 s", str(failure.value))

    def test_missing_file(self) -> None:
        """A missing file fails with FileNotFoundError."""
        self.failureResultOf(self.read("does-not-exist.wav"), FileNotFoundError)

    def test_truncated_data(self) -> None:
        """A file whose data stops mid-sample yields the whole samples it has."""
        path = write_wav_file(
            self.mktemp(), 8000, 1, 2, frame(1).astype("<i2").tobytes()
        )
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 3)
        samples = self.successResultOf(self.read(path)).samples
        np.testing.assert_array_equal(samples, frame(1)[:158])


class PlayerTests(SynchronousTestCase):
    """Cutting audio into 20 ms frames."""

    def test_frame_sizes(self) -> None:
        """Frames are 160 samples at 8 kHz and 320 at 16 kHz."""
        for rate, size in ((8000, 160), (16000, 320)):
            player = Player((rate, 1, np.zeros(size * 3, np.int16)))
            self.assertEqual(player.sample_rate, rate)
            self.assertEqual([f.shape for f in player], [(size,)] * 3)

    def test_last_frame_padded(self) -> None:
        """The last frame is padded with silence to full length."""
        samples = frame(1, 400)
        frames = list(Player((8000, 1, samples)))
        self.assertEqual(len(frames), 3)
        joined = np.concatenate(frames)
        np.testing.assert_array_equal(joined[:400], samples)
        np.testing.assert_array_equal(joined[400:], np.zeros(80))

    def test_stereo_frames(self) -> None:
        """A stereo player yields frames of shape (samples, 2)."""
        player = Player((16000, 2, frame(1, 640, 2)))
        self.assertEqual(player.channels, 2)
        self.assertEqual([f.shape for f in player], [(320, 2)] * 2)

    def test_frames_are_read_only(self) -> None:
        """Frames cannot be written through, so no tick corrupts the prompt."""
        f = next(Player((8000, 1, frame(1))))
        self.assertFalse(f.flags.writeable)

    def test_loop_and_rewind(self) -> None:
        """A looping player starts over; rewind() starts again from the first frame."""
        a, b = frame(1), frame(2)
        player = Player((8000, 1, np.concatenate([a, b])), loop=True)
        got = [next(player) for _ in range(5)]
        for f, want in zip(got, [a, b, a, b, a], strict=True):
            np.testing.assert_array_equal(f, want)
        player.rewind()
        np.testing.assert_array_equal(next(player), a)
        self.assertEqual(player.frames, 2)

    def test_empty(self) -> None:
        """Empty audio yields no frame, even when looping."""
        self.assertEqual(list(Player((8000, 1, np.zeros(0, np.int16)), loop=True)), [])

    def test_from_read_wav(self) -> None:
        """A player can be built straight from read_wav's result."""
        path = write_wav_file(self.mktemp(), 16000, 1, 2, bytes(2 * 320 * 4))
        d = read_wav(path, REACTOR, ThreadPool(), defer_to_thread_pool=FakeThreads())
        player = self.successResultOf(d.addCallback(Player))
        self.assertEqual((player.sample_rate, player.frames), (16000, 4))

    def test_bad_format(self) -> None:
        """Unsupported rates, channel counts and sample types raise ValueError."""
        for audio in (
            (44100, 1, np.zeros(10, np.int16)),
            (8000, 3, np.zeros((10, 3), np.int16)),
            (8000, 1, np.zeros(10, np.float32)),
            (8000, 2, np.zeros(10, np.int16)),
        ):
            self.assertRaises(ValueError, Player, audio)
