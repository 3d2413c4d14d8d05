"""What the transcription tests share: whether PocketSphinx is here, test audio as WAV files, a thread helper."""

from __future__ import annotations

import functools
import wave
from collections.abc import Callable
from typing import Any

import numpy as np

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

try:
    import pocketsphinx  # noqa: F401
except ImportError:  # pragma: no cover - installed with pbx
    HAVE_POCKETSPHINX = False
else:
    HAVE_POCKETSPHINX = True


def write_wav(path: str, samples: np.ndarray, rate: int) -> None:
    """Write int16 samples, (n,) mono or (n, 2) stereo, as a WAV file."""
    with wave.open(path, "wb") as w:
        w.setnchannels(1 if samples.ndim == 1 else 2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def in_thread(reactor: Any) -> Callable[..., Deferred[Any]]:
    """``(f, *args) -> Deferred`` running ``f`` in ``reactor``'s thread pool."""
    return functools.partial(deferToThreadPool, reactor, reactor.getThreadPool())
