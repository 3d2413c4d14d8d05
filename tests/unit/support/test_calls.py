"""
Unit tests for the signal helpers of the call integration tests
(``support.calls``): the audio checks there must tell the right signal from
a wrong one, or a passing audio test would prove nothing.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from support.calls import (
    FRAME,
    RATE,
    best_alignment,
    dominant_frequency,
    envelope,
    heard_problems,
    keyed_tone,
    read_pcm_wav,
    tone_share,
    ulaw,
    write_pcm_wav,
    write_ulaw_wav,
)


class MuLawTests(SynchronousTestCase):
    """The mu-law encoder matches the ITU-T G.711 reference code."""

    def test_reference_values(self) -> None:
        """Silence, the extremes and -1 encode as g711.c encodes them."""
        self.assertEqual(
            [ulaw(s) for s in (0, -1, 32767, -32768, 1000, -1000)],
            [0xFF, 0x7E, 0x80, 0x00, 0xCE, 0x4E],
        )

    def test_wav(self) -> None:
        """A mu-law WAV file has format tag 7, 8 kHz, one byte per sample, and the codes as data."""
        path = Path(self.mktemp())
        write_ulaw_wav(path, [0, 32767, -32768])
        data = path.read_bytes()
        self.assertEqual(data[:4] + data[8:12], b"RIFFWAVE")
        self.assertEqual(
            struct.unpack("<HHIIHH", data[20:36]), (7, 1, RATE, RATE, 1, 8)
        )
        self.assertEqual(data[36:44], b"data" + struct.pack("<I", 3))
        self.assertEqual(data[44:], bytes([0xFF, 0x80, 0x00]))


class SignalTests(SynchronousTestCase):
    """Keyed tones are recognised by frequency and by their on/off pattern, and nothing else is."""

    def test_pcm_round_trip(self) -> None:
        """Samples written as 16-bit PCM WAV read back unchanged."""
        path = Path(self.mktemp())
        samples, _ = keyed_tone(440, 0.5, seed=1)
        write_pcm_wav(path, samples)
        self.assertEqual(read_pcm_wav(path), samples)

    def test_frequency(self) -> None:
        """The dominant frequency of a keyed tone is its own, to half a hertz."""
        samples, _ = keyed_tone(1000, 2.0, seed=2)
        self.assertLessEqual(abs(dominant_frequency(samples[:RATE]) - 1000), 0.5)

    def test_tone_share(self) -> None:
        """Most of a keyed tone's loud frames is at its frequency; next to none at another."""
        samples, _ = keyed_tone(440, 2.0, seed=1)
        self.assertGreater(tone_share(samples, 440), 0.8)
        self.assertLess(tone_share(samples, 1000), 0.05)

    def test_noise(self) -> None:
        """Loud noise has no tone share to speak of."""
        state = 12345
        noise = []
        for _ in range(RATE):
            state = (1103515245 * state + 12345) % 2**31
            noise.append(state % 20000 - 10000)
        self.assertLess(tone_share(noise, 440), 0.1)

    def test_alignment(self) -> None:
        """A recording that starts 7 frames in lines up with its own pattern at lag 7, not with another's."""
        samples, pattern = keyed_tone(1000, 4.0, seed=2)
        _, other = keyed_tone(1000, 4.0, seed=1)
        received = envelope(samples[7 * FRAME :])
        r, lag = best_alignment(received, pattern)
        self.assertGreater(r, 0.99)
        self.assertEqual(lag, 7)
        self.assertLess(best_alignment(received, other)[0], 0.5)

    def test_silence(self) -> None:
        """Silence matches no pattern and holds no tone."""
        _, pattern = keyed_tone(440, 2.0, seed=1)
        silence = [0] * (2 * RATE)
        self.assertEqual(best_alignment(envelope(silence), pattern)[0], 0.0)
        self.assertEqual(tone_share(silence, 440), 0.0)
        self.assertTrue(math.isfinite(dominant_frequency(silence[:FRAME])))


class HeardTests(SynchronousTestCase):
    """heard_problems accepts the other phone's signal and names what is wrong with anything else."""

    def test_talker_accepted(self) -> None:
        """1.2 s of the talker's tone (about 0.7 s of it sounding), starting a few frames in, has no problem."""
        samples, pattern = keyed_tone(1000, 3.0, seed=2)
        heard = samples[5 * FRAME : 5 * FRAME + int(1.2 * RATE)]
        self.assertEqual(
            heard_problems(heard, talker=1000, own=440, pattern=pattern, seconds=0.5), []
        )

    def test_own_signal_refused(self) -> None:
        """A phone hearing its own tone is told so (frequency, shares, envelope)."""
        own, _ = keyed_tone(440, 3.0, seed=1)
        _, pattern = keyed_tone(1000, 3.0, seed=2)
        problems = heard_problems(own, talker=1000, own=440, pattern=pattern)
        self.assertEqual(len(problems), 4, problems)

    def test_too_short(self) -> None:
        """Less sound than asked for is one problem, named in seconds."""
        samples, pattern = keyed_tone(1000, 3.0, seed=2)
        problems = heard_problems(samples[: RATE // 2], talker=1000, own=440, pattern=pattern)
        self.assertEqual(len(problems), 1)
        self.assertIn("under 1.0s", problems[0])
