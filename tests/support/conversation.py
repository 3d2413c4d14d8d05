"""
What two baresip phones heard of each other at the end of a call that a
feature (transfer, park, pickup) set up: the newest recording of a phone
(:func:`newest_audio`, once closed; :func:`growing`, while it is written),
and :func:`tail_problems`, the check of its last seconds as the other
party's keyed tone (:func:`support.calls.keyed_tone`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from support.baresip import LIMIT, Phone
from support.calls import RATE, best_alignment, envelope, read_pcm_wav, tone_share
from support.daemon import wait_until


def tail_problems(
    audio: Sequence[int],
    *,
    talker: float,
    own: float,
    pattern: Sequence[bool],
    seconds: float = 2.0,
) -> list[str]:
    """
    What is wrong with the last ``seconds`` of ``audio`` (before the last
    half second, where the call was hung up) as the talker's keyed tone:
    over 80 % of the loud frames' energy at ``talker`` Hz, under 5 % at the
    listener's ``own``, and an on/off envelope lining up with ``pattern``
    somewhere (correlation above 0.8).

    :returns: one line per failed check; empty when it is the talker's signal.
    """
    end = len(audio) - RATE // 2
    tail = list(audio[max(0, end - int(seconds * RATE)) : end])
    if len(tail) < seconds * RATE:
        return [f"only {len(tail) / RATE:.2f}s of audio"]
    problems = []
    if (share := tone_share(tail, talker)) <= 0.8:
        problems.append(f"{share:.2f} of the energy at {talker} Hz")
    if (share := tone_share(tail, own)) >= 0.05:
        problems.append(f"{share:.2f} of the energy at its own {own} Hz")
    received = envelope(tail)
    r, lag = best_alignment(received, pattern, max_lag=len(pattern) - len(received))
    if r <= 0.8:
        problems.append(f"envelope correlation {r:.2f} at lag {lag}")
    return problems


def newest_audio(phone: Phone, before: set[Path]) -> list[int]:
    """The decoded audio of ``phone``'s newest recording not in ``before``, once the file is closed."""
    path = max(
        wait_until(
            lambda: phone.recorded() - before or None,
            LIMIT,
            f"{phone.number}'s recording",
        ),
        key=lambda p: p.stat().st_mtime,
    )
    return wait_until(lambda: read_pcm_wav(path) or None, LIMIT, f"audio in {path}")


def growing(path: Path) -> np.ndarray:
    """What a phone decoded so far into ``path`` (read while it is being written: no final header yet)."""
    data = path.read_bytes()[44:]
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)
