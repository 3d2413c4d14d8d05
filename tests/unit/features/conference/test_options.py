"""Tests for :mod:`pbx.features.conference.options` and :mod:`.sounds`."""

from __future__ import annotations

from typing import Any

import numpy as np
import yaml

from twisted.trial.unittest import SynchronousTestCase

from pbx.errors import ConfigError
from pbx.features.conference.options import parse_options
from pbx.features.conference.sounds import (
    hold_music,
    join_tone,
    leave_tone,
    write_sounds,
)
from pbx.media.wav import load_wav


class OptionsTests(SynchronousTestCase):
    """The ``features: conference:`` section."""

    def error(self, text: str) -> ConfigError:
        """The error parsing ``text`` raises."""
        with self.assertRaises(ConfigError) as caught:
            parse_options(yaml.safe_load(text))
        return caught.exception

    def test_full_room(self) -> None:
        """Every option of a room is read; numbers as YAML integers become strings."""
        options = parse_options(yaml.safe_load("""
rooms:
  801: {pin: 4711, moderator_pin: "9051", moderators: [1001, "1002"], wait_for_moderator: true,
        end_with_moderator: true, max_participants: 60, music: /srv/hold.wav, sounds: false,
        announce: false}
"""))
        room = options.rooms["801"]
        self.assertEqual(
            (room.pin, room.moderator_pin, room.moderators, room.wait_for_moderator, room.end_with_moderator,
             room.max_participants, room.music, room.sounds, room.announce),
            ("4711", "9051", frozenset({"1001", "1002"}), True, True, 60, "/srv/hold.wav", False, False),
        )

    def test_defaults(self) -> None:
        """An empty room is open, moderator-less, 50 people, with sounds and announcements; no section is no rooms."""
        room = parse_options({"rooms": {"800": None}}).rooms["800"]
        self.assertEqual((room.pin, room.moderator_pin, room.max_participants, room.sounds, room.announce,
                          room.has_moderators), ("", "", 50, True, True, False))
        self.assertEqual(dict(parse_options(None).rooms), {})

    def test_errors(self) -> None:
        """Each mistake names its key."""
        cases: list[tuple[str, str, str]] = [
            ("colour: red", "colour", "unknown key"),
            ("rooms: [800]", "rooms", "must be a mapping of room number to room"),
            ("rooms: {abc: {}}", "rooms.abc", "a room number is 1 to 20 digits"),
            ("rooms: {800: 5}", "rooms.800", "must be a mapping"),
            ("rooms: {800: {colour: red}}", "rooms.800.colour", "unknown key"),
            ("rooms: {800: {pin: 123}}", "rooms.800.pin", "must be 4-12 digits"),
            ("rooms: {800: {pin: '12a4'}}", "rooms.800.pin", "must be 4-12 digits"),
            ("rooms: {800: {pin: 1234, moderator_pin: 1234}}", "rooms.800.moderator_pin", "must differ from pin"),
            ("rooms: {800: {moderators: '1001'}}", "rooms.800.moderators", "must be a list of extension numbers"),
            ("rooms: {800: {moderators: [x]}}", "rooms.800.moderators[0]", "must be 2-10 digits"),
            ("rooms: {800: {max_participants: 1}}", "rooms.800.max_participants",
             "must be a whole number from 2 to 500"),
            ("rooms: {800: {max_participants: true}}", "rooms.800.max_participants",
             "must be a whole number from 2 to 500"),
            ("rooms: {800: {music: hold.wav}}", "rooms.800.music", "must be the absolute path of a .wav file"),
            ("rooms: {800: {music: \"/srv/a\\nb.wav\"}}", "rooms.800.music", "holds a line break"),
            ("rooms: {800: {music: 5}}", "rooms.800.music", "must be a string"),
            ("rooms: {800: {sounds: 1}}", "rooms.800.sounds", "must be true or false"),
            ("rooms: {800: {wait_for_moderator: true}}", "rooms.800.wait_for_moderator",
             "needs moderator_pin or moderators"),
            ("rooms: {800: {end_with_moderator: true, pin: '1234'}}", "rooms.800.end_with_moderator",
             "needs moderator_pin or moderators"),
        ]
        for text, key, problem in cases:
            error = self.error(text)
            self.assertEqual((error.key, error.problem), (key, problem), text)


class SoundsTests(SynchronousTestCase):
    """The generated sounds."""

    @staticmethod
    def pitch(samples: np.ndarray, rate: int) -> float:
        """The strongest frequency."""
        spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
        return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])

    def test_tones(self) -> None:
        """The join tone rises (440 then 660 Hz), the leave tone falls; both a quarter second, not clipped."""
        for rate in (8000, 16000):
            join, leave = join_tone(rate), leave_tone(rate)
            half = len(join) // 2
            self.assertEqual(len(join), int(0.24 * rate))
            self.assertLess(abs(self.pitch(join[:half], rate) - 440), 10)
            self.assertLess(abs(self.pitch(join[half:], rate) - 660), 10)
            self.assertLess(abs(self.pitch(leave[:half], rate) - 660), 10)
            self.assertLess(int(np.abs(leave.astype(np.int32)).max()), 8000)

    def test_music(self) -> None:
        """The hold music lasts 6.4 s, is quiet, and starts and ends near silence (it loops)."""
        music = hold_music(8000)
        self.assertEqual(len(music), int(6.4 * 8000))
        self.assertLess(int(np.abs(music.astype(np.int32)).max()), 12000)
        self.assertLess(abs(int(music[0])), 100)
        self.assertLess(int(np.abs(music[-80:].astype(np.int32)).max()), 1000)

    def test_written(self) -> None:
        """write_sounds makes every sound at both rates as mono WAV files."""
        directory = self.mktemp()
        sounds = write_sounds(directory)
        expected: dict[str, Any] = {"join": join_tone, "leave": leave_tone, "music": hold_music}
        for name, make in expected.items():
            for rate in (8000, 16000):
                audio = load_wav(sounds.path(name, rate))
                self.assertEqual(audio.sample_rate, rate)
                self.assertEqual(np.asarray(audio.samples).tolist(), make(rate).tolist())
