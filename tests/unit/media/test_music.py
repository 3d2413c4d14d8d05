"""Tests for :mod:`pbx.media.music` and :mod:`pbx.media.moh_config`: classes read once, at any rate."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from twisted.trial.unittest import SynchronousTestCase

from pbx.config import load_config, parse_config
from pbx.errors import ConfigError
from pbx.media.moh_config import parse_moh
from pbx.media.music import MusicError, default_music_dir, load_music_class


def write_wav(
    path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2
) -> None:
    """Write PCM WAV: int16 (or uint8 for width 1), interleaved when stereo."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2" if width == 2 else np.uint8).tobytes())


def tone(
    rate: int, seconds: float, frequency: float = 400.0, level: float = 10000.0
) -> np.ndarray:
    """A sine as int16-range floats."""
    t = np.arange(int(rate * seconds)) / rate
    return level * np.sin(2 * np.pi * frequency * t)


class MusicClassTests(SynchronousTestCase):
    """A folder of WAV files becomes one track, converted once per rate asked for."""

    def setUp(self) -> None:
        """A scratch folder."""
        self.folder = Path(self.mktemp())
        self.folder.mkdir()

    def test_any_rate_stereo_joined(self) -> None:
        """Files are joined in name order; stereo is mixed down; a file at another rate is converted to the first's."""
        write_wav(self.folder / "a.wav", tone(44100, 1.0), 44100)
        stereo = np.repeat(tone(22050, 0.5), 2)
        write_wav(self.folder / "b.wav", stereo, 22050, channels=2)
        (self.folder / "notes.txt").write_text("not audio")
        music = load_music_class("x", str(self.folder))
        self.assertEqual(music.source_rate, 44100)
        self.assertAlmostEqual(music.seconds, 1.5, places=2)
        pcm8 = music.pcm(8000)
        self.assertEqual(pcm8.dtype, np.int16)
        self.assertAlmostEqual(len(pcm8) / 8000, 1.5, places=2)
        self.assertFalse(pcm8.flags.writeable)
        expected = tone(8000, 1.5)
        middle = slice(800, 11200)  # away from the filter's edges
        self.assertGreater(
            np.corrcoef(pcm8[middle].astype(float), expected[middle])[0, 1], 0.99
        )

    def test_converted_once(self) -> None:
        """The same rate asked twice is the same array."""
        write_wav(self.folder / "a.wav", tone(16000, 0.2), 16000)
        music = load_music_class("x", str(self.folder))
        self.assertIs(music.pcm(48000), music.pcm(48000))
        self.assertEqual(len(music.pcm(48000)), 9600)
        self.assertEqual(len(music.pcm(16000)), 3200)

    def test_eight_bit(self) -> None:
        """8-bit WAV (unsigned) is read centred on zero."""
        write_wav(self.folder / "a.wav", np.full(800, 128 + 64), 8000, width=1)
        pcm = load_music_class("x", str(self.folder)).pcm(8000)
        self.assertEqual(set(pcm.tolist()), {16384})

    def test_errors(self) -> None:
        """A missing folder, a folder without WAV, a broken or too short file: MusicError naming the path."""
        self.assertRaises(
            MusicError, load_music_class, "x", str(self.folder / "missing")
        )
        self.assertRaises(MusicError, load_music_class, "x", str(self.folder))
        (self.folder / "bad.wav").write_bytes(b"RIFF....not a wav")
        e = self.assertRaises(MusicError, load_music_class, "x", str(self.folder))
        self.assertIn("bad.wav", str(e))
        (self.folder / "bad.wav").unlink()
        write_wav(self.folder / "short.wav", np.zeros(10), 8000)
        self.assertRaises(MusicError, load_music_class, "x", str(self.folder))

    def test_shipped_default(self) -> None:
        """pbx ships a default class: a few seconds of sound."""
        music = load_music_class("default", default_music_dir())
        self.assertTrue(2.0 < music.seconds < 30.0)
        self.assertGreater(np.abs(music.pcm(8000).astype(float)).mean(), 500)


class MusicOnHoldConfigTests(SynchronousTestCase):
    """The ``moh:`` section: checked, classes read, errors naming their key."""

    def setUp(self) -> None:
        """A folder with one class, ``sales``."""
        self.base = Path(self.mktemp())
        (self.base / "sales").mkdir(parents=True)
        write_wav(self.base / "sales" / "a.wav", tone(8000, 0.5), 8000)

    def test_defaults(self) -> None:
        """No section: enabled, with the shipped default class only."""
        moh = parse_moh(None, self.base)
        self.assertTrue(moh.enabled)
        self.assertEqual(list(moh.classes), ["default"])
        self.assertEqual(dict(moh.extensions), {})

    def test_classes_and_extensions(self) -> None:
        """Relative folders start at the config's folder; extensions name classes."""
        moh = parse_moh(
            {"classes": {"sales": "sales"}, "extensions": {1001: "sales"}}, self.base
        )
        self.assertEqual(sorted(moh.classes), ["default", "sales"])
        self.assertEqual(dict(moh.extensions), {"1001": "sales"})

    def test_disabled(self) -> None:
        """``enabled: false`` reads no class."""
        moh = parse_moh({"enabled": "off", "classes": {"sales": "missing"}}, self.base)
        self.assertFalse(moh.enabled)
        self.assertEqual(dict(moh.classes), {})

    def test_in_config_file(self) -> None:
        """The section is read with the rest of the file, relative to it; a mistake names its key and the file."""
        config = self.base / "pbx.yml"
        config.write_text(
            "moh:\n  classes: {sales: sales}\n  extensions: {'1001': sales}\n"
        )
        self.assertEqual(sorted(load_config(config).moh.classes), ["default", "sales"])
        e = self.assertRaises(
            ConfigError, parse_config, "moh: {extensions: {'1001': jazz}}\n", "x.yml"
        )
        self.assertEqual(e.key, "moh.extensions.1001")

    def test_errors(self) -> None:
        """Each mistake is a ConfigError naming its key."""
        cases = [
            ({"colour": 1}, "moh.colour"),
            ({"enabled": 3}, "moh.enabled"),
            ({"classes": ["sales"]}, "moh.classes"),
            ({"classes": {"jazz": "missing"}}, "moh.classes.jazz"),
            ({"classes": {"jazz": 7}}, "moh.classes.jazz"),
            ({"extensions": {"1001": "jazz"}}, "moh.extensions.1001"),
        ]
        for raw, key in cases:
            e = self.assertRaises(ConfigError, parse_moh, raw, self.base)
            self.assertEqual(e.key, key, raw)
