"""Tests for :mod:`pbx.features.supervision.options`: the ``supervision`` section."""

from __future__ import annotations

from typing import Any

import yaml

from twisted.trial.unittest import SynchronousTestCase

from pbx.errors import ConfigError
from pbx.features.supervision.options import ANYONE, parse_options
from pbx.plugin_loader import configure
from pbx.plugins.supervision import supervision


class OptionsTests(SynchronousTestCase):
    """Who may supervise whom, and the codes."""

    def error(self, raw: Any) -> ConfigError:
        """The error ``raw`` raises."""
        with self.assertRaises(ConfigError) as caught:
            parse_options(raw)
        return caught.exception

    def test_defaults(self) -> None:
        """An empty section: nobody supervises; the codes are *33, *34 and *35."""
        options = parse_options(None)
        self.assertEqual(dict(options.supervisors), {})
        self.assertEqual(
            dict(options.codes), {"listen": "*33", "whisper": "*34", "barge": "*35"}
        )
        self.assertFalse(options.may_supervise("1000", "1001"))

    def test_supervisors(self) -> None:
        """A list allows those extensions; "*" every extension; nobody supervises itself."""
        options = parse_options(
            yaml.safe_load('supervisors: {1000: [1001, "1002"], "1009": "*"}')
        )
        self.assertEqual(options.supervisors["1000"], frozenset({"1001", "1002"}))
        self.assertEqual(options.supervisors["1009"], ANYONE)
        self.assertTrue(options.may_supervise("1000", "1002"))
        self.assertFalse(options.may_supervise("1000", "1003"))
        self.assertTrue(options.may_supervise("1009", "1003"))
        self.assertFalse(options.may_supervise("1009", "1009"))
        self.assertFalse(options.may_supervise("1001", "1000"))

    def test_parse_dialled(self) -> None:
        """Code + extension gives the mode and the extension; the longest code wins; no code is None."""
        options = parse_options(
            {"listen_code": "*3", "whisper_code": "*34", "barge_code": "#5"}
        )
        self.assertEqual(options.parse_dialled("*31001"), ("listen", "1001"))
        self.assertEqual(options.parse_dialled("*341001"), ("whisper", "1001"))
        self.assertEqual(options.parse_dialled("#51001"), ("barge", "1001"))
        self.assertIsNone(options.parse_dialled("1001"))

    def test_errors_name_the_key(self) -> None:
        """Every bad value is reported under its key."""
        cases = [
            ("nope", "supervision"),
            ({"colour": 1}, "colour"),
            ({"listen_code": "x1"}, "listen_code"),
            ({"whisper_code": "*33"}, "whisper_code"),
            ({"supervisors": []}, "supervisors"),
            ({"supervisors": {"1x": ["1001"]}}, "supervisors.1x"),
            ({"supervisors": {"1000": []}}, "supervisors.1000"),
            ({"supervisors": {"1000": "all"}}, "supervisors.1000"),
            ({"supervisors": {"1000": ["1001", "x"]}}, "supervisors.1000[1]"),
        ]
        for raw, key in cases:
            self.assertEqual(self.error(raw).key, key, raw)
        self.assertIn("listen_code", str(self.error({"whisper_code": "*33"})))

    def test_loader_prefixes_the_feature(self) -> None:
        """The plugin loader reports a bad supervisor under features.supervision."""
        with self.assertRaises(ConfigError) as caught:
            configure(
                {"supervision": {"supervisors": {"1000": ["x"]}}},
                {"supervision": supervision},
            )
        self.assertEqual(
            caught.exception.key, "features.supervision.supervisors.1000[0]"
        )
