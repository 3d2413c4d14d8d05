"""
Tests for pbx.features.voicemail.transcribe: the audio preparation, the options,
and the thread-pool wrapper.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from attrs import define

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from pbx.errors import ConfigError
from pbx.features.voicemail.transcribe import (
    SAMPLE_RATE,
    ITranscriber,
    PocketSphinxTranscriber,
    Transcript,
    VoskTranscriber,
    WorkerTranscriber,
    make_engine,
    make_transcriber,
    read_speech,
    transcribe_in_thread,
)

from support.transcription import HAVE_POCKETSPHINX, in_thread, write_wav

try:
    import pocketsphinx  # noqa: F401
except ImportError:  # pragma: no cover - installed with pbx
    HAVE_POCKETSPHINX = False
else:
    HAVE_POCKETSPHINX = True


def tone(rate: int, seconds: float, hz: float = 440.0, level: int = 8000) -> np.ndarray:
    """A sine wave as int16 samples."""
    t = np.arange(int(rate * seconds)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.int16)


class TranscriptTests(SynchronousTestCase):
    """Transcript holds a text and a confidence between 0 and 1."""

    def test_confidence_range(self) -> None:
        """A confidence outside 0..1 is refused; integers become floats."""
        self.assertEqual(Transcript("x", 1, "e").confidence, 1.0)
        self.assertIsInstance(Transcript("x", 1, "e").confidence, float)
        self.assertRaises(ValueError, Transcript, "x", 1.01, "e")
        self.assertRaises(ValueError, Transcript, "x", -0.1, "e")


class ReadSpeechTests(SynchronousTestCase):
    """read_speech gives 16 kHz mono int16 whatever recording it is given."""

    def path(self, samples: np.ndarray, rate: int) -> str:
        """A temporary WAV with ``samples`` at ``rate``."""
        path = self.mktemp()
        write_wav(path, samples, rate)
        return path

    def test_16k_mono_unchanged(self) -> None:
        """16 kHz mono comes back sample for sample."""
        samples = tone(16000, 0.5)
        out = read_speech(self.path(samples, 16000))
        self.assertEqual(out.dtype, np.dtype("<i2"))
        np.testing.assert_array_equal(out, samples)

    def test_8k_resampled(self) -> None:
        """8 kHz is resampled to 16 kHz: twice the samples, same tone."""
        out = read_speech(self.path(tone(8000, 1.0, hz=500), 8000))
        self.assertEqual(len(out), SAMPLE_RATE)
        spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
        self.assertEqual(int(np.argmax(spectrum)), 500)  # 1 Hz bins over one second

    def test_stereo_mixed(self) -> None:
        """Stereo is mixed to mono: the mean of the two channels."""
        left = np.full(1600, 1000, dtype=np.int16)
        right = np.full(1600, -3000, dtype=np.int16)
        out = read_speech(self.path(np.stack([left, right], axis=1), 16000))
        self.assertEqual(out.shape, (1600,))
        self.assertTrue(np.all(out == -1000))

    def test_rejects_other_formats(self) -> None:
        """A sample rate the recorder never writes is refused."""
        self.assertRaises(ValueError, read_speech, self.path(tone(22050, 0.1), 22050))

    def test_rejects_long_recordings(self) -> None:
        """Recordings over the limit are refused rather than transcribed."""
        path = self.path(tone(8000, 2.0), 8000)
        self.assertRaises(ValueError, read_speech, path, max_seconds=1.0)


class MakeTranscriberTests(SynchronousTestCase):
    """make_transcriber validates the transcription options."""

    def problem(self, options: Any) -> tuple[str, str]:
        """Expect a ConfigError for ``options``; return its (key, problem)."""
        with self.assertRaises(ConfigError) as caught:
            make_transcriber(options, "vm.transcription")
        return caught.exception.key, caught.exception.problem

    def test_none(self) -> None:
        """No engine, or engine none, means no transcriber."""
        self.assertIsNone(make_transcriber({}, "t"))
        self.assertIsNone(make_transcriber({"engine": "none"}, "t"))

    def test_pocketsphinx(self) -> None:
        """engine: pocketsphinx gives PocketSphinx in a worker process, providing ITranscriber."""
        if not HAVE_POCKETSPHINX:
            raise self.skipTest("pocketsphinx is not installed")
        transcriber = make_transcriber({"engine": "pocketsphinx"}, "t")
        assert isinstance(transcriber, WorkerTranscriber)
        self.assertEqual((transcriber.name, transcriber.model), ("pocketsphinx", None))
        self.assertTrue(verifyObject(ITranscriber, transcriber))
        self.assertIsInstance(make_engine("pocketsphinx"), PocketSphinxTranscriber)

    def test_vosk(self) -> None:
        """engine: vosk with a model directory gives a VoskTranscriber."""
        if importlib.util.find_spec("vosk") is None:
            raise self.skipTest("vosk is not installed")
        model = self.mktemp()
        os.makedirs(model)
        transcriber = make_transcriber({"engine": "vosk", "model": model}, "t")
        assert isinstance(transcriber, WorkerTranscriber)
        self.assertEqual((transcriber.name, transcriber.model), ("vosk", model))
        self.assertTrue(verifyObject(ITranscriber, transcriber))
        engine = make_engine("vosk", model)
        assert isinstance(engine, VoskTranscriber)
        self.assertEqual(engine.model_dir, model)

    def test_errors(self) -> None:
        """Bad options name the key and the problem."""
        missing = self.mktemp()
        cases: list[tuple[Any, tuple[str, str]]] = [
            ("vosk", ("vm.transcription", "must be a mapping")),
            (
                {"engine": "whisper"},
                ("vm.transcription.engine", "must be one of none, pocketsphinx, vosk"),
            ),
            (
                {"engine": 1},
                ("vm.transcription.engine", "must be one of none, pocketsphinx, vosk"),
            ),
            (
                {"engine": "vosk", "language": "ko"},
                ("vm.transcription.language", "unknown key"),
            ),
            (
                {"engine": "pocketsphinx", "model": "/x"},
                ("vm.transcription.model", "only for engine vosk"),
            ),
            (
                {"engine": "vosk"},
                ("vm.transcription.model", "required for engine vosk"),
            ),
            (
                {"engine": "vosk", "model": 3},
                ("vm.transcription.model", "must be a directory name"),
            ),
            (
                {"engine": "vosk", "model": missing},
                ("vm.transcription.model", f"{missing}: no such directory"),
            ),
        ]
        if importlib.util.find_spec("vosk") is None:
            cases = cases[:5]
        for options, expected in cases:
            with self.subTest(options=options):
                self.assertEqual(self.problem(options), expected)

    def test_engine_not_installed(self) -> None:
        """An engine whose package is missing is a configuration error."""
        real = importlib.util.find_spec
        self.patch(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == "vosk" else real(name, *a),
        )
        self.assertEqual(
            self.problem({"engine": "vosk", "model": "/x"}),
            ("vm.transcription.engine", "vosk is not installed"),
        )


@implementer(ITranscriber)
@define
class FakeTranscriber:
    """Returns a fixed transcript, or raises what it is given."""

    result: Transcript | Exception
    name: str = "fake"

    def transcribe(self, path: str) -> Transcript:
        """The fixed result."""
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class InlinePool:
    """A thread pool that runs each job at once, in the calling thread."""

    def callInThreadWithCallback(
        self,
        on_result: Callable[[bool, Any], None],
        f: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Run ``f`` now and report like twisted's ThreadPool."""
        try:
            result = f(*args, **kwargs)
        except BaseException as e:
            from twisted.python.failure import Failure

            on_result(False, Failure(e))
        else:
            on_result(True, result)


class InlineReactor:
    """Just the reactor calls deferToThreadPool makes, run inline."""

    def __init__(self) -> None:
        self.pool = InlinePool()

    def getThreadPool(self) -> InlinePool:
        """The inline pool."""
        return self.pool

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call ``f`` now."""
        f(*args, **kwargs)


class TranscribeInThreadTests(SynchronousTestCase):
    """transcribe_in_thread never fails: an engine error becomes None and a log."""

    def test_result(self) -> None:
        """The engine's transcript is passed on."""
        transcript = Transcript("hello", 0.5, "fake")
        d = transcribe_in_thread(in_thread(InlineReactor()), FakeTranscriber(transcript), "a.wav")
        self.assertEqual(self.successResultOf(d), transcript)

    def test_failure_logged(self) -> None:
        """An engine exception gives None and one logged failure."""
        d = transcribe_in_thread(
            in_thread(InlineReactor()), FakeTranscriber(RuntimeError("model broken")), "a.wav"
        )
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
