"""What the transcription tests share: whether PocketSphinx is here, and test audio as WAV files."""

from __future__ import annotations

import wave

import numpy as np

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
