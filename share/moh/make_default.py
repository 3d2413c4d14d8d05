"""
Make the default music-on-hold class: ``default/tune.wav``.

A few bars of a simple tune in C major, synthesised here (a soft plucked
tone over a held bass note per bar), so pbx ships music it may freely
distribute.  11.025 kHz mono 16-bit PCM (a rate no codec uses); pbx converts it at load to what each
codec needs.  Run ``python3 share/moh/make_default.py`` to write it again:
the output is the same byte for byte.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 11025
BEAT = 0.375  # seconds: 160 beats a minute
#: (MIDI note, beats) for the melody; 0 is a rest.
MELODY = [
    (72, 1),
    (76, 1),
    (79, 1),
    (76, 1),
    (77, 1),
    (74, 1),
    (71, 2),
    (72, 1),
    (74, 1),
    (76, 1),
    (79, 1),
    (77, 2),
    (76, 2),
]
#: One bass note (MIDI) per bar of four beats.
BASS = [48, 53, 55, 48]


def frequency(note: int) -> float:
    """Equal temperament, A4 (MIDI 69) = 440 Hz."""
    return 440.0 * 2.0 ** ((note - 69) / 12)


def pluck(note: int, seconds: float, level: float) -> np.ndarray:
    """A note with a quick attack, an exponential decay and two soft overtones."""
    t = np.arange(int(seconds * RATE)) / RATE
    f = frequency(note)
    tone = (
        np.sin(2 * np.pi * f * t)
        + 0.3 * np.sin(4 * np.pi * f * t)
        + 0.1 * np.sin(6 * np.pi * f * t)
    )
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-3.0 * t)
    release = np.minimum(1.0, (seconds - t) / 0.02)
    return level * tone * envelope * release


def render() -> np.ndarray:
    """The whole tune as int16 samples."""
    total = int(sum(b for _, b in MELODY) * BEAT * RATE)
    out = np.zeros(total)
    at = 0
    for note, beats in MELODY:
        n = int(beats * BEAT * RATE)
        if note:
            out[at : at + n] += pluck(note, n / RATE, 0.35)
        at += n
    bar = int(4 * BEAT * RATE)
    for i, note in enumerate(BASS):
        start = i * bar
        if start >= total:
            break
        n = min(bar, total - start)
        out[start : start + n] += pluck(note, n / RATE, 0.25)
    return np.clip(out * 32767 * 0.8, -32768, 32767).astype("<i2")


def main() -> None:
    """Write ``default/tune.wav`` beside this script."""
    path = Path(__file__).resolve().parent / "default" / "tune.wav"
    path.parent.mkdir(exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(render().tobytes())


if __name__ == "__main__":
    main()
