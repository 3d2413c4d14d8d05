"""
Micro-benchmark of in-band DTMF detection: microseconds of
:class:`pbx.media.goertzel.GoertzelDetector` per 20 ms frame of audio.

Run: ``PYTHONPATH=src python bench/dtmf.py``

The audio is ten seconds of what a detector sees on a call: digits (60 ms
tone, 60 ms pause), voiced-speech-like harmonic sounds, and low noise
throughout.  It is fed one 20 ms frame at a time (160 samples at 8 kHz, 320 at
16 kHz), the way the RTP layer hands over decoded audio, so the figure
includes the per-call overhead that dominates at this frame size.  Best of
seven runs.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pbx.media.goertzel import COLUMNS, KEYPAD, ROWS, GoertzelDetector  # noqa: E402

SECONDS = 10
FRAME_MS = 20


def audio(rate: int) -> np.ndarray:
    """Ten seconds of digits, speech-like sound and noise, as int16."""
    rng = np.random.default_rng(4733)
    pieces: list[np.ndarray] = []
    while sum(piece.size for piece in pieces) < SECONDS * rate:
        for key in KEYPAD:
            t = np.arange(int(0.06 * rate)) / rate
            row, column = divmod(KEYPAD.index(key), 4)
            tone = np.sin(2 * np.pi * ROWS[row] * t) + np.sin(
                2 * np.pi * COLUMNS[column] * t
            )
            pieces.append(7000 * tone)
            pieces.append(np.zeros(int(0.06 * rate)))
        t = np.arange(int(0.5 * rate)) / rate
        f0 = rng.uniform(90, 250)
        harmonics = np.arange(1, int(3400 / f0))
        speech = (np.sin(2 * np.pi * f0 * np.outer(t, harmonics)) / harmonics).sum(
            axis=1
        )
        pieces.append(4000 * speech)
    signal = np.concatenate(pieces)[: SECONDS * rate]
    signal += rng.normal(0, 100, signal.size)
    return signal.clip(-32768.0, 32767.0).astype(np.int16)


def main() -> None:
    """Print one line per sample rate."""
    for rate in (8000, 16000):
        samples = audio(rate)
        frame = rate * FRAME_MS // 1000
        frames = [samples[i : i + frame] for i in range(0, samples.size, frame)]

        def run(frames: list[np.ndarray] = frames, rate: int = rate) -> int:
            detector = GoertzelDetector(sample_rate=rate)
            found = 0
            for block in frames:
                found += len(detector.feed(block))
            return found + len(detector.flush())

        digits = run()
        best = min(timeit.repeat(run, number=1, repeat=7))
        per_frame = best / len(frames) * 1e6
        print(
            f"{rate} Hz: {per_frame:.1f} us per {FRAME_MS} ms frame "
            f"({per_frame / (FRAME_MS * 10):.2f} % of one core), "
            f"{digits} digits in {SECONDS} s"
        )


if __name__ == "__main__":
    main()
