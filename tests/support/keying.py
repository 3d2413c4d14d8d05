"""
Measuring keyed tones (:func:`support.calls.keyed_tone`) in what a phone
or a listener heard: the amplitude of one frequency frame by frame, and
how well it follows the keying pattern that was sent.

The frequencies the tests use are multiples of 50 Hz, so over a 20 ms
frame (160 samples at 8 kHz) each is one exact DFT bin and measuring one
tells nothing of the others.
"""

from __future__ import annotations

import numpy as np

from support.calls import FRAME, RATE

#: Frames of each piece of a stretch correlated on its own (0.5 s).
PIECE = 25


def tone_envelope(audio: np.ndarray, frequency: float) -> np.ndarray:
    """The amplitude of ``frequency`` in each 20 ms frame of ``audio``."""
    audio = np.asarray(audio, dtype=np.float64)
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME)
    t = np.arange(FRAME) / RATE
    c = frames @ np.cos(2 * np.pi * frequency * t)
    s = frames @ np.sin(2 * np.pi * frequency * t)
    return np.asarray(np.sqrt(c * c + s * s) * 2 / FRAME)


def keying_correlation(
    envelope: np.ndarray,
    pattern: list[bool],
    start: int,
    lags: range = range(-750, 751),
) -> tuple[float, int]:
    """
    The best correlation of a stretch of an envelope (from frame ``start``
    of the recording) with the keying pattern sent, over ``lags`` (frames;
    by default up to 15 s either way: the talker's call began before or
    after the listener's).

    :returns: (Pearson's r, lag in frames).
    """
    sent = np.asarray(pattern, dtype=np.float64)
    best = (-1.0, 0)
    for lag in lags:
        first = start + lag
        if first < 0 or first + len(envelope) > len(sent):
            continue
        window = sent[first : first + len(envelope)]
        if window.std() == 0 or envelope.std() == 0:
            continue
        best = max(best, (float(np.corrcoef(envelope, window)[0, 1]), lag))
    return best


def keying_by_piece(
    envelope: np.ndarray, pattern: list[bool], start: int
) -> list[tuple[float, int]]:
    """
    :func:`keying_correlation` of each half second of the stretch, near the
    stretch's best lag: a jitter buffer that slips a frame mid-stretch costs
    one piece, not the whole stretch.
    """
    _, lag = keying_correlation(envelope, pattern, start)
    return [
        keying_correlation(
            envelope[i : i + PIECE], pattern, start + i, range(lag - 10, lag + 11)
        )
        for i in range(0, len(envelope) - PIECE + 1, PIECE)
    ]
