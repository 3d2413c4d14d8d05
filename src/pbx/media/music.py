"""
Music classes for music on hold: a folder of WAV files played in turn,
forever.

A class is read once, when pbx starts: every ``*.wav`` of its folder (in
name order; other files are ignored), 16-bit or 8-bit PCM, mono or stereo
(mixed down), at any sample rate.  The files are joined into one track and
the track is converted, once per sample rate a codec works at (8 kHz for
G.711, 16 kHz for G.722, 48 kHz for Opus), the first time a codec asks for
that rate; no resampling happens while music plays.

The default class ships with pbx in ``share/moh/default`` (a tune
synthesised by ``share/moh/make_default.py``).
"""

from __future__ import annotations

import sys
import sysconfig
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
from attrs import define, field

__all__ = ["MusicClass", "MusicError", "default_music_dir", "load_music_class"]

PCM = npt.NDArray[np.int16]

#: Longest class accepted, in seconds (all its files together).
MAX_SECONDS = 3600.0

_SOURCE_MUSIC = Path(__file__).resolve().parents[3] / "share" / "moh" / "default"


class MusicError(ValueError):
    """A music class that cannot be used: no folder, no audio, an unreadable file."""


def default_music_dir() -> str:
    """
    Where the default class lives.

    :returns: the installed ``<prefix>/share/pbx/moh/default`` when it
        exists, otherwise the source checkout's ``share/moh/default``.
    """
    candidates = [
        Path(sysconfig.get_path("data")) / "share" / "pbx" / "moh" / "default",
        Path(sys.prefix) / "share" / "pbx" / "moh" / "default",
    ]
    return str(next((c for c in candidates if c.is_dir()), _SOURCE_MUSIC))


def _read(path: Path) -> tuple[int, npt.NDArray[np.float64]]:
    """One WAV file as (sample rate, mono float samples in -1..1)."""
    try:
        with wave.open(str(path), "rb") as reader:
            width, channels, rate = (
                reader.getsampwidth(),
                reader.getnchannels(),
                reader.getframerate(),
            )
            frames = reader.getnframes()
            if width not in (1, 2):
                raise MusicError(
                    f"{path}: {8 * width}-bit samples; only 8- or 16-bit PCM"
                )
            if channels not in (1, 2) or not 4000 <= rate <= 192000:
                raise MusicError(
                    f"{path}: {channels} channels at {rate} Hz; mono or stereo, 4 to 192 kHz"
                )
            if frames > MAX_SECONDS * rate:
                raise MusicError(f"{path}: longer than {MAX_SECONDS:.0f} s")
            data = reader.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise MusicError(f"{path}: not a PCM WAV file ({e})") from None
    except OSError as e:
        raise MusicError(f"{path}: {e.strerror or e}") from None
    usable = len(data) - len(data) % (width * channels)
    if width == 2:
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float64) / 32768.0
    else:  # 8-bit WAV is unsigned
        samples = (
            np.frombuffer(data[:usable], dtype=np.uint8).astype(np.float64) - 128.0
        ) / 128.0
    if channels == 2:
        samples = samples.reshape(-1, 2).mean(axis=1)
    return rate, samples


def _resample(
    samples: npt.NDArray[np.float64], from_rate: int, to_rate: int
) -> npt.NDArray[np.float64]:
    if from_rate == to_rate or not len(samples):
        return samples
    import soxr  # only when a class needs converting

    return np.asarray(
        soxr.resample(samples, from_rate, to_rate, quality="HQ"), dtype=np.float64
    )


def _to_pcm(samples: npt.NDArray[np.float64]) -> PCM:
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
    pcm.setflags(write=False)
    return pcm


@define(eq=False)
class MusicClass:
    """
    One class's track, kept at the rate it was read at and converted on
    demand to each codec's rate, once.

    :ivar name: the class name (``default``, ``sales``...).
    :ivar source_rate: the rate the track was read at.
    """

    name: str
    source_rate: int
    _track: npt.NDArray[np.float64] = field(repr=False)
    _by_rate: dict[int, PCM] = field(factory=dict, repr=False)

    @property
    def seconds(self) -> float:
        """The length of one pass through the class."""
        return len(self._track) / self.source_rate

    def pcm(self, rate: int) -> PCM:
        """
        The whole track as read-only int16 at ``rate``, converted the first
        time that rate is asked for.
        """
        pcm = self._by_rate.get(rate)
        if pcm is None:
            pcm = self._by_rate[rate] = _to_pcm(
                _resample(self._track, self.source_rate, rate)
            )
        return pcm


def load_music_class(name: str, directory: str) -> MusicClass:
    """
    Read every ``*.wav`` of ``directory`` (name order) into one class.

    Files at different rates are converted to the rate of the first one.

    :raises MusicError: the folder is missing, holds no WAV file or no
        sound, or a file is not usable PCM WAV.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise MusicError(f"{directory}: not a directory")
    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()
    )
    if not files:
        raise MusicError(f"{directory}: no .wav file")
    rate = 0
    parts = []
    for path in files:
        file_rate, samples = _read(path)
        rate = rate or file_rate
        parts.append(_resample(samples, file_rate, rate))
    track = np.concatenate(parts)
    if len(track) < rate // 50:
        raise MusicError(f"{directory}: less than 20 ms of audio")
    if len(track) > MAX_SECONDS * rate:
        raise MusicError(f"{directory}: longer than {MAX_SECONDS:.0f} s")
    return MusicClass(name, rate, track)
