"""
Music on hold in the baresip integration tests: a second class written for
the test, what a phone decoded so far, and how well a piece of it matches a
class's track (correlation at the best offset of the looped track).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from support.baresip import Phone


def decoded(phone: Phone) -> np.ndarray:
    """What the phone decoded so far (its file is read as it is being written)."""
    [path] = phone.recordings.glob("dump-*-dec.wav")
    data = path.read_bytes()[44:]
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)


def write_alt_class(folder: Path) -> None:
    """A second class: a sequence of 100 ms tones, 4 s, 22.05 kHz stereo (pbx converts it)."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    rate = 22050
    notes = rng.uniform(300.0, 1800.0, 40)
    t = np.arange(int(0.1 * rate)) / rate
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
    mono = np.concatenate([np.sin(2 * np.pi * f * t) * ramp for f in notes]) * 12000
    stereo = np.stack([mono, mono * 0.5], axis=1).astype("<i2")
    with wave.open(str(folder / "tones.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(stereo.tobytes())


def best_match(piece: np.ndarray, track: np.ndarray) -> float:
    """
    The highest normalised correlation of ``piece`` with any stretch of
    ``track`` played in a loop (FFT cross-correlation).
    """
    n = len(piece)
    looped = np.concatenate([track, track[:n]]).astype(np.float64)
    size = 1 << (len(looped) + n).bit_length()
    dots = np.fft.irfft(
        np.fft.rfft(looped, size) * np.conj(np.fft.rfft(piece, size)), size
    )[: len(track)]
    energy = np.concatenate([[0.0], np.cumsum(looped * looped)])
    windows = energy[n : n + len(track)] - energy[: len(track)]
    norm = np.sqrt(np.maximum(windows, 1e-9) * float(piece @ piece))
    return float(np.max(dots / norm))
