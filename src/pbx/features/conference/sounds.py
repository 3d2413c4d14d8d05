"""
The conference's own sounds, generated rather than shipped: a rising
two-note tone when someone joins, a falling one when someone leaves, three
short high beeps when recording starts, and a few seconds of soft music
for callers waiting for a moderator.

They are written as WAV files at 8 and 16 kHz (channels play files, and a
file at the channel's own rate is not resampled on every play) into the
feature's directory under ``state_dir`` when the PBX starts.  A room's
``music:`` option replaces the music, and so does its ``music_class:``: the
music-on-hold class's track is written here too (``moh-<class>-<rate>.wav``).
"""

from __future__ import annotations

import os
import wave
from collections.abc import Callable

import numpy as np
from attrs import frozen

__all__ = [
    "Sounds", "hold_music", "join_tone", "leave_tone", "record_tone", "write_music", "write_sounds",
]

#: The rates written: narrowband and wideband channels.
RATES = (8000, 16000)
#: Notes of the hold music (Hz): a slow arpeggio over four chords.
_MELODY = (
    261.63, 329.63, 392.00, 329.63,   # C
    220.00, 261.63, 329.63, 261.63,   # Am
    174.61, 220.00, 261.63, 220.00,   # F
    196.00, 246.94, 293.66, 246.94,   # G
)
_NOTE_SECONDS = 0.4


def _note(hz: float, seconds: float, rate: int, level: float) -> np.ndarray:
    """One note with a soft attack, decay and release, and a quiet octave above it."""
    t = np.arange(int(seconds * rate)) / rate
    wave_ = np.sin(2 * np.pi * hz * t) + 0.3 * np.sin(4 * np.pi * hz * t)
    attack = np.minimum(1.0, t / 0.02)
    decay = np.exp(-2.5 * t)
    release = np.minimum(1.0, (seconds - t) / 0.05)  # no click into the next note
    return np.asarray(wave_ * attack * decay * release * level, dtype=np.float64)


def _fade(samples: np.ndarray, rate: int, seconds: float = 0.005) -> np.ndarray:
    n = min(len(samples) // 2, int(rate * seconds))
    ramp = np.linspace(0.0, 1.0, n)
    samples[:n] *= ramp
    samples[len(samples) - n:] *= ramp[::-1]
    return samples


def _two_notes(first: float, second: float, rate: int) -> np.ndarray:
    notes = []
    for hz in (first, second):
        t = np.arange(int(0.12 * rate)) / rate
        notes.append(_fade(np.sin(2 * np.pi * hz * t) * 6000.0, rate))
    return np.concatenate(notes).astype(np.int16)


def join_tone(rate: int) -> np.ndarray:
    """Someone joined: 440 Hz then 660 Hz, 120 ms each."""
    return _two_notes(440.0, 660.0, rate)


def leave_tone(rate: int) -> np.ndarray:
    """Someone left: 660 Hz then 440 Hz, 120 ms each."""
    return _two_notes(660.0, 440.0, rate)


def record_tone(rate: int) -> np.ndarray:
    """Recording started: three 1400 Hz beeps of 100 ms, 100 ms apart."""
    t = np.arange(int(0.1 * rate)) / rate
    beep = _fade(np.sin(2 * np.pi * 1400.0 * t) * 6000.0, rate)
    gap = np.zeros(int(0.1 * rate))
    return np.concatenate([beep, gap, beep, gap, beep]).astype(np.int16)


def hold_music(rate: int) -> np.ndarray:
    """About 6.4 s of quiet arpeggios that loop cleanly (each note decays to near silence)."""
    notes = [_note(hz, _NOTE_SECONDS, rate, 5000.0) for hz in _MELODY]
    return np.clip(np.concatenate(notes), -32768, 32767).astype(np.int16)


@frozen
class Sounds:
    """Where the sounds are: ``directory/<name>-<rate>.wav``."""

    directory: str

    def path(self, name: str, rate: int) -> str:
        """
        The file of ``name`` (``join``, ``leave``, ``music``) for a channel at ``rate``.

        :param rate: the channel's PCM rate; wideband and above get the 16 kHz file.
        """
        return os.path.join(self.directory, f"{name}-{16000 if rate >= 16000 else 8000}.wav")

    def music_path(self, music_class: str, rate: int) -> str:
        """The file of music-on-hold class ``music_class`` for a channel at ``rate``."""
        return self.path(f"moh-{music_class}", rate)


def _write(path: str, samples: np.ndarray, rate: int) -> None:
    """Write a mono 16-bit WAV file whole, renamed into place."""
    partial = path + ".part"
    with wave.open(partial, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    os.replace(partial, path)


def write_sounds(directory: str) -> Sounds:
    """
    Generate every sound into ``directory`` (made if missing).  Blocking:
    run it off the reactor thread.
    """
    os.makedirs(directory, exist_ok=True)
    sounds = Sounds(directory)
    for rate in RATES:
        for name, make in (("join", join_tone), ("leave", leave_tone), ("record", record_tone),
                           ("music", hold_music)):
            _write(sounds.path(name, rate), make(rate), rate)
    return sounds


def write_music(directory: str, music_class: str, pcm: Callable[[int], np.ndarray]) -> None:
    """
    Write a music-on-hold class's track at both rates into ``directory``.
    Blocking: run it off the reactor thread.

    :param pcm: the class's track at a rate (:meth:`pbx.media.music.MusicClass.pcm`).
    """
    os.makedirs(directory, exist_ok=True)
    sounds = Sounds(directory)
    for rate in RATES:
        _write(sounds.music_path(music_class, rate), pcm(rate), rate)
