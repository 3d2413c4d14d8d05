"""
Unit tests for the helpers of the application integration tests
(``support.apps``): finding a prompt in a recording must tell the right
prompt from a wrong one, or a passing read-back test would prove nothing.
"""

from __future__ import annotations

import numpy as np

from twisted.trial.unittest import SynchronousTestCase

from support.apps import (
    MATCH,
    assert_read_back,
    frames,
    locate,
    locate_in_order,
    prompt,
    timeline,
    ulaw_to_linear,
)
from support.calls import RATE, ulaw


def _g711(samples: np.ndarray) -> np.ndarray:
    """``samples`` through a PCMU encoder and decoder, as a phone would hear them."""
    return ulaw_to_linear(bytes(ulaw(int(s)) for s in samples)).astype(np.float64)


def _played(*prompt_ids: str) -> np.ndarray:
    """Prompts back to back as pbx plays them: each padded to whole 20 ms frames."""
    parts = []
    for prompt_id in prompt_ids:
        samples = prompt(prompt_id)
        padded = np.zeros(frames(samples) * 160)
        padded[: len(samples)] = samples
        parts.append(padded)
    return np.concatenate(parts)


def _read_back(digits: str, gap: float = 0.5) -> np.ndarray:
    """The audio of a read-back call: the introduction, a pause, then the read-back."""
    return np.concatenate(
        [
            _played("echo/digits"),
            np.zeros(int(gap * RATE)),
            _played("general/you-entered", *(f"digits/{d}" for d in digits)),
        ]
    )


class MuLawDecodeTests(SynchronousTestCase):
    """ulaw_to_linear is G.711's mu-law decoder."""

    def test_reference_values(self) -> None:
        """The extreme codes and both zeros decode as in the ITU-T tables."""
        self.assertEqual(
            ulaw_to_linear(b"\x00\x80\xff\x7f").tolist(), [-32124, 32124, 0, 0]
        )

    def test_inverse_of_encoder(self) -> None:
        """Encoding then decoding returns each sample within its segment's quantisation step."""
        samples = np.arange(-32768, 32768, 97)
        decoded = ulaw_to_linear(bytes(ulaw(int(s)) for s in samples)).astype(int)
        errors = np.abs(decoded - samples)
        self.assertTrue(np.all(errors <= np.maximum(8, np.abs(samples) // 16)))


class LocateTests(SynchronousTestCase):
    """locate finds a prompt where it is, and only that prompt."""

    def setUp(self) -> None:
        rng = np.random.default_rng(1)
        self.offset = 12345
        four = prompt("digits/4")
        audio = rng.normal(0, 30, self.offset + len(four) + 4000)
        audio[self.offset : self.offset + len(four)] += four
        self.audio = _g711(audio)

    def test_found_at_its_place(self) -> None:
        """A prompt sent through G.711 amid faint noise matches at its offset with r above 0.99."""
        r, offset = locate(self.audio, prompt("digits/4"))
        self.assertGreater(r, 0.99)
        self.assertEqual(offset, self.offset)

    def test_other_prompt_does_not_match(self) -> None:
        """Another digit's prompt stays below the match threshold."""
        for digit in "0123456789":
            if digit != "4":
                r, _ = locate(self.audio, prompt(f"digits/{digit}"))
                self.assertLess(r, MATCH, digit)

    def test_cut_end(self) -> None:
        """A prompt whose last 100 ms are missing still matches where it starts."""
        four = prompt("digits/4")
        r, offset = locate(self.audio[: self.offset + len(four) - 800], four)
        self.assertGreater(r, MATCH)
        self.assertEqual(offset, self.offset)

    def test_silence(self) -> None:
        """Silence matches nothing."""
        self.assertEqual(locate(np.zeros(20000), prompt("digits/4"))[0], 0.0)

    def test_in_order(self) -> None:
        """Prompts are found in sequence; one that is not after the previous one is not found."""
        audio = _played("digits/7", "digits/4")
        found = locate_in_order(audio, ["digits/7", "digits/4"])
        self.assertEqual([p for p, _, _ in found], ["digits/7", "digits/4"])
        self.assertTrue(all(r > 0.99 for _, r, _ in found))
        self.assertAlmostEqual(found[1][2], frames(prompt("digits/7")) * 0.02)
        _, r, _ = locate_in_order(audio, ["digits/4", "digits/7"])[1]
        self.assertLess(r, MATCH)

    def test_first_of_two(self) -> None:
        """
        A prompt said twice is found the first time, even where the second
        matches a little better (heard cleaner): with ``first`` the earlier
        match wins, without it the better one.
        """
        four = prompt("digits/4")
        rng = np.random.default_rng(2)
        audio = np.concatenate([_played("digits/4", "digits/7"), _played("digits/4")])
        audio[: len(four)] += rng.normal(0, 300, len(four))  # the first heard noisier
        second = len(_played("digits/4", "digits/7"))
        r, offset = locate(audio, four, first=True)
        self.assertEqual(offset, 0)
        self.assertGreater(r, MATCH)
        self.assertEqual(locate(audio, four)[1], second)
        found = locate_in_order(audio, ["digits/4", "digits/4"])
        self.assertEqual([round(t * RATE) for _, _, t in found], [0, second])


class AssertReadBackTests(SynchronousTestCase):
    """assert_read_back accepts the right read-back and refuses wrong ones."""

    def test_right(self) -> None:
        """The introduction, a pause, and "you entered four seven one" pass."""
        found = assert_read_back(self, _g711(_read_back("471")), "471")
        self.assertEqual(
            [p for p, _, _ in found],
            ["echo/digits", "general/you-entered", "digits/4", "digits/7", "digits/1"],
        )

    def test_wrong_digit(self) -> None:
        """A read-back of other digits fails."""
        self.assertRaises(
            self.failureException, assert_read_back, self, _read_back("472"), "471"
        )

    def test_wrong_order(self) -> None:
        """The right digits in another order fail."""
        self.assertRaises(
            self.failureException, assert_read_back, self, _read_back("741"), "471"
        )

    def test_missing_digit(self) -> None:
        """A read-back that leaves a digit out fails."""
        self.assertRaises(
            self.failureException, assert_read_back, self, _read_back("41"), "471"
        )

    def test_introduction_cut(self) -> None:
        """A read-back that starts before the introduction ended fails."""
        audio = _read_back("471", gap=0.0)
        cut = np.concatenate([audio[:16000], audio[len(_played("echo/digits")) :]])
        self.assertRaises(self.failureException, assert_read_back, self, cut, "471")

    def test_cut_introduction_expected(self) -> None:
        """With ``cut``, an introduction stopped after a second passes, and a whole one fails."""
        audio = _read_back("471", gap=0.0)
        cut = np.concatenate([audio[:8000], audio[len(_played("echo/digits")) :]])
        found = assert_read_back(self, _g711(cut), "471", cut=True)
        self.assertLessEqual(abs(found[1][2] - 1.0), 0.03)
        self.assertRaises(
            self.failureException, assert_read_back, self, audio, "471", cut=True
        )


class TimelineTests(SynchronousTestCase):
    """timeline puts received RTP payloads where their timestamps say."""

    def test_gaps_and_wrap(self) -> None:
        """A pause in the timestamps stays silence, across the 2**32 wrap; other payload types are left out."""
        first = 2**32 - 160
        packets = [
            (1, first, 0, b"\x80" * 160),
            (2, (first + 160) % 2**32, 101, b"\x0b\x8a\x01\x40"),
            (3, (first + 480) % 2**32, 0, b"\x00" * 160),
        ]
        audio = timeline(packets)
        self.assertEqual(len(audio), 640)
        self.assertEqual(set(audio[:160].tolist()), {32124})
        self.assertEqual(set(audio[160:480].tolist()), {0})
        self.assertEqual(set(audio[480:].tolist()), {-32124})

    def test_nothing(self) -> None:
        """No packet of the payload type gives no audio."""
        self.assertEqual(len(timeline([(1, 0, 8, b"\xd5" * 160)])), 0)
