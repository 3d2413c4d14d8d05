"""
Speech to text for voicemail: the :class:`ITranscriber` contract and two
offline engines.

* :class:`PocketSphinxTranscriber`: CMU PocketSphinx with the US English
  model its wheel ships.  Small and fast; good on clear speech, weak on
  noisy telephone audio.
* :class:`VoskTranscriber`: Vosk (Kaldi) with a model directory the
  operator installs, in any language Vosk has a model for.

Both read a mono or stereo 16-bit WAV at 8 or 16 kHz (what the voicemail
recorder writes), mix it to mono and resample it to the 16 kHz their models
expect.  ``transcribe`` blocks for about the length of the recording or
less: :func:`transcribe_in_thread` runs it off the reactor thread and
turns an engine failure into ``None`` and one logged failure, so a broken
transcriber never loses a voicemail.

What :func:`make_transcriber` returns runs the engine in a worker process
(:class:`WorkerTranscriber`): the recognisers hold the GIL while they
decode, and in the PBX's own process that would stop every call's audio.
The engines' Python modules are imported when first used, in the worker,
so importing this module stays cheap.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from typing import Any

import numpy as np
import soxr
from attrs import define, field, frozen

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.errors import ConfigError
from pbx.features.voicemail.interfaces import ITranscriber
from pbx.media.wav import load_wav

ENGINES = ("none", "pocketsphinx", "vosk")
SAMPLE_RATE = 16000
"""The rate both engines' models are trained at; audio is resampled to it."""
MAX_SECONDS = 600.0
"""Longer recordings are refused rather than transcribed."""
SPEECH_PAD = 0.3
"""Seconds of audio kept around each stretch of detected speech."""

log = Logger(namespace="pbx.features.voicemail.transcribe")


def _unit_interval(instance: object, attribute: Any, value: float) -> None:
    """attrs validator: a confidence is between 0 and 1."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} {value!r} is not between 0 and 1")


@frozen
class Transcript:
    """What a transcriber heard."""

    text: str
    """The words, separated by single spaces; empty if nothing was recognised."""
    confidence: float = field(converter=float, validator=_unit_interval)
    """0 to 1: how sure the engine is (each engine says how it computes it)."""
    engine: str
    """The :attr:`ITranscriber.name` of the engine."""


def read_speech(path: str, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """The recording at ``path`` as mono int16 samples at 16 kHz (blocking).

    :raises ValueError: if it is not 16-bit PCM WAV, mono or stereo, at 8 or
        16 kHz, or is longer than ``max_seconds``.
    :raises OSError: if it cannot be read.
    """
    audio = load_wav(path, max_seconds=max_seconds)
    samples = audio.samples.astype(np.float32)
    if audio.channels == 2:
        samples = samples.mean(axis=1)
    if audio.sample_rate != SAMPLE_RATE:
        samples = soxr.resample(samples, audio.sample_rate, SAMPLE_RATE, quality="HQ")
    pcm: np.ndarray = np.clip(np.rint(samples), -32768, 32767).astype("<i2")
    return pcm


def _mean(values: Iterable[float]) -> float:
    """The mean clamped to 0..1, or 0 with no values."""
    listed = list(values)
    if not listed:
        return 0.0
    return min(1.0, max(0.0, sum(listed) / len(listed)))


# ---------------------------------------------------------------------------
# PocketSphinx

_ALTERNATE = re.compile(r"\(\d+\)$")  # "read(2)": second pronunciation of "read"


def _is_word(token: str) -> bool:
    """False for PocketSphinx's markers: <s>, </s>, <sil>, [NOISE], ++BREATH++."""
    return not (
        token.startswith(("<", "[", "+"))
        or token.endswith((">", "]", "+"))
        or not token
    )


def speech_spans(pcm: bytes, pad: float = SPEECH_PAD) -> list[tuple[int, int]]:
    """Byte ranges of ``pcm`` (16 kHz int16) that hold speech, padded and merged.

    PocketSphinx's voice activity detector finds the speech; each span is
    widened by ``pad`` seconds on both sides (the detector clips word onsets)
    and overlapping spans are merged.  Silence and steady noise give none.
    """
    from pocketsphinx import Segmenter

    spans: list[list[float]] = []
    for segment in Segmenter(sample_rate=SAMPLE_RATE).segment(BytesIO(pcm)):
        start, end = max(0.0, segment.start_time - pad), segment.end_time + pad
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [
        (2 * int(start * SAMPLE_RATE), 2 * int(end * SAMPLE_RATE))
        for start, end in spans
    ]


@implementer(ITranscriber)
@define(eq=False)
class PocketSphinxTranscriber:
    """US English speech recognition with the model the pocketsphinx wheel ships.

    The recording is cut into stretches of speech (:func:`speech_spans`),
    each decoded as one utterance, so silence yields no words (decoding
    digital silence whole makes PocketSphinx hear a word) and long messages
    do not become one huge utterance.

    Confidence is the mean, over the recognised words, of each word's
    posterior probability in the decoder's lattice (``Segment.prob``, already
    a probability from 0 to 1): roughly the share of the acoustic and
    language model evidence that backs that word rather than its
    competitors.  Silences, fillers and sentence markers are left out.
    Nothing recognised gives confidence 0.

    Each call makes its own decoder (about 0.2 s): decoders are not
    thread-safe, and one that has heard earlier recordings adapts to them,
    so a fresh one keeps results independent of what came before.
    """

    name = "pocketsphinx"

    def transcribe(self, path: str) -> Transcript:
        """Transcribe the WAV file at ``path`` (blocking)."""
        from pocketsphinx import Decoder

        pcm = read_speech(path).tobytes()
        words: list[tuple[str, float]] = []
        decoder = None
        for start, end in speech_spans(pcm):
            if decoder is None:
                decoder = Decoder(loglevel="FATAL", samprate=SAMPLE_RATE)
            decoder.start_utt()
            decoder.process_raw(pcm[start:end], full_utt=True)
            decoder.end_utt()
            if decoder.hyp() is None:
                continue
            words.extend(
                (_ALTERNATE.sub("", s.word), s.prob)
                for s in decoder.seg()
                if _is_word(s.word)
            )
        text = " ".join(w for w, _ in words)
        return Transcript(text, _mean(p for _, p in words), self.name)


# ---------------------------------------------------------------------------
# Vosk

_MARKER = re.compile(r"\[[^\]]*\]")  # [unk] and the like: not words


@implementer(ITranscriber)
@define(eq=False)
class VoskTranscriber:
    """Speech recognition with a Vosk model, in the model's language.

    Confidence is the mean of the per-word ``conf`` Vosk reports with
    ``SetWords(True)`` (each a posterior probability from 0 to 1).  Tokens in
    square brackets, such as ``[unk]``, are not words and are left out.
    Nothing recognised gives confidence 0.

    The model is loaded on first use (a few seconds for a small model) and
    shared; each recording gets its own recogniser, so calls may overlap.

    :param model_dir: the unpacked model directory (with ``am/``, ``conf/``...).
    """

    model_dir: str
    name = "vosk"
    _model: Any = field(default=None, init=False)
    _lock: threading.Lock = field(factory=threading.Lock, init=False)

    def _get_model(self) -> Any:
        """The model, loaded the first time."""
        with self._lock:
            if self._model is None:
                import vosk

                vosk.SetLogLevel(-1)
                self._model = vosk.Model(self.model_dir)
            return self._model

    def transcribe(self, path: str) -> Transcript:
        """Transcribe the WAV file at ``path`` (blocking)."""
        import vosk

        pcm = read_speech(path).tobytes()
        recognizer = vosk.KaldiRecognizer(self._get_model(), float(SAMPLE_RATE))
        recognizer.SetWords(True)
        results = []
        chunk = SAMPLE_RATE  # bytes: half a second of 16-bit samples
        for start in range(0, len(pcm), chunk):
            if recognizer.AcceptWaveform(pcm[start : start + chunk]):
                results.append(json.loads(recognizer.Result()))
        results.append(json.loads(recognizer.FinalResult()))
        words = [
            (str(w["word"]), float(w.get("conf", 0.0)))
            for result in results
            for w in result.get("result", ())
            if not _MARKER.fullmatch(str(w.get("word", "")))
        ]
        text = " ".join(w for w, _ in words)
        return Transcript(text, _mean(c for _, c in words), self.name)


# ---------------------------------------------------------------------------
# Configuration and the reactor side


def make_transcriber(
    options: Mapping[str, Any], key_prefix: str
) -> ITranscriber | None:
    """The transcriber a ``transcription:`` mapping asks for.

    ``{engine: none}`` (or an empty mapping) means no transcription;
    ``{engine: pocketsphinx}`` the bundled US English model;
    ``{engine: vosk, model: /path/to/model}`` a Vosk model directory.
    Nothing heavy is loaded here: the engine runs in a worker process
    (:class:`WorkerTranscriber`) that loads its model on first use.

    :param options: the mapping as YAML gave it.
    :param key_prefix: its dotted key, used to name the key in errors.
    :returns: the transcriber, or None for ``engine: none``.
    :raises ConfigError: for an unknown key or engine, a missing or wrong
        model directory, or an engine whose Python package is not installed.
    """
    if not isinstance(options, Mapping):
        raise ConfigError(key_prefix, "must be a mapping")
    for key in options:
        if key not in ("engine", "model"):
            raise ConfigError(f"{key_prefix}.{key}", "unknown key")
    engine = options.get("engine", "none")
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ConfigError(
            f"{key_prefix}.engine", f"must be one of {', '.join(ENGINES)}"
        )
    model = options.get("model")
    if engine != "vosk" and model is not None:
        raise ConfigError(f"{key_prefix}.model", "only for engine vosk")
    if engine == "none":
        return None
    if importlib.util.find_spec(engine) is None:
        raise ConfigError(f"{key_prefix}.engine", f"{engine} is not installed")
    if engine == "vosk":
        if model is None:
            raise ConfigError(f"{key_prefix}.model", "required for engine vosk")
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{key_prefix}.model", "must be a directory name")
        if not os.path.isdir(model):
            raise ConfigError(f"{key_prefix}.model", f"{model}: no such directory")
    return WorkerTranscriber(engine, model)


def make_engine(engine: str, model: str | None = None) -> ITranscriber:
    """The engine itself, to run in this process (see :class:`WorkerTranscriber`)."""
    if engine == "pocketsphinx":
        return PocketSphinxTranscriber()
    if engine == "vosk" and model:
        return VoskTranscriber(model)
    raise ValueError(f"no engine {engine!r} with model {model!r}")


#: Engines made in a worker process, by (engine, model): models load once.
_worker_engines: dict[tuple[str, str | None], ITranscriber] = {}


def _transcribe_in_worker(engine: str, model: str | None, path: str) -> Transcript:
    """What a worker process runs for one message."""
    key = (engine, model)
    if key not in _worker_engines:
        _worker_engines[key] = make_engine(engine, model)
    return _worker_engines[key].transcribe(path)


@implementer(ITranscriber)
class WorkerTranscriber:
    """
    An engine run in a worker process.

    The recognisers are C code that holds the GIL for as long as they decode
    (PocketSphinx: 1.5 s for a 15 s message), so in a thread of the PBX's
    own process they stop the reactor, and every call's audio with it.  A
    worker process (started with ``spawn``, never forked from the reactor's
    process) keeps them apart; it is started on first use, loads its model
    once, and is replaced after :attr:`TASKS_PER_WORKER` messages so any
    memory an engine keeps is given back.  :meth:`transcribe` blocks on the
    worker's answer without holding the GIL: call it in a thread.
    """

    TASKS_PER_WORKER = 50

    def __init__(self, engine: str, model: str | None = None) -> None:
        self.name = engine
        self.model = model
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def transcribe(self, path: str) -> Transcript:
        """Transcribe ``path`` in the worker (blocking)."""
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    max_tasks_per_child=self.TASKS_PER_WORKER,
                )
            executor = self._executor
        return executor.submit(_transcribe_in_worker, self.name, self.model, path).result()

    def close(self) -> None:
        """Stop the worker (pending messages are not transcribed)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def transcribe_in_thread(
    in_thread: Callable[..., Deferred[Any]], transcriber: ITranscriber, path: str
) -> Deferred[Transcript | None]:
    """Transcribe ``path`` off the reactor thread.

    :param in_thread: ``(f, *args) -> Deferred``, e.g.
        :meth:`pbx.interfaces.IPBX.run_in_thread`.
    :returns: fires with the transcript, or with None (and one logged
        failure) if the engine failed; never fails.
    """

    def failed(failure: Failure) -> None:
        log.failure(
            "transcribing {path} with {engine} failed",
            failure,
            path=path,
            engine=transcriber.name,
        )
        return None

    d: Deferred[Transcript | None] = in_thread(transcriber.transcribe, path)
    return d.addErrback(failed)
