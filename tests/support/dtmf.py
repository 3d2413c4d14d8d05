"""In-band DTMF detection helpers shared by the detector tests: audio in, keys out."""

from __future__ import annotations

import numpy as np

from pbx.media.dtmf import DigitEvent
from pbx.media.goertzel import GoertzelDetector


def pcm(samples: np.ndarray) -> np.ndarray:
    """Float samples as 16-bit PCM."""
    rounded: np.ndarray = np.rint(samples)
    return rounded.clip(-32768.0, 32767.0).astype(np.int16)


def detect(
    samples: np.ndarray, rate: int = 8000, chunk: int | None = None
) -> list[DigitEvent]:
    """Everything a fresh detector finds in the audio, fed in chunks."""
    detector = GoertzelDetector(sample_rate=rate)
    audio = pcm(samples)
    size = chunk or audio.size or 1
    found = []
    for start in range(0, audio.size, size):
        found += detector.feed(audio[start : start + size])
    return found + detector.flush()


def digits(events: list[DigitEvent]) -> str:
    """The keys of some events, as a string."""
    return "".join(event.digit for event in events)
