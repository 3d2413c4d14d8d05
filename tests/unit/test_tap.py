"""
Tests for :func:`pbx.tap.load`: the configuration with its feature and codec
plugins, found before the daemon starts.
"""

from __future__ import annotations

import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pbx.tap import Options, load

BROKEN_CODEC = """
from zope.interface import implementer
from pbx.interfaces import ICodec


@implementer(ICodec)
class BrokenCodec:
    name = "brokencodec"


brokencodec = BrokenCodec()
"""


class LoadTests(SynchronousTestCase):
    """Codecs are found at configuration time, with the features."""

    def write(self, path: str, text: str) -> str:
        """Write ``text`` to ``path`` (made absolute) and return the path."""
        path = os.path.abspath(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_codecs_found_with_features(self) -> None:
        """load() returns the configuration, the enabled features and the codecs that work here."""
        path = self.write(self.mktemp(), "sip: {domain: pbx.test}\n")
        config, features, codecs = load({"config": path})
        self.assertEqual(config.sip.domain, "pbx.test")
        self.assertEqual(features, [])
        self.assertLessEqual({"pcmu", "pcma", "g722"}, set(codecs))

    def test_broken_codec_is_one_line(self) -> None:
        """A broken codec plugin in a site directory stops loading with one line naming it."""
        site = os.path.dirname(self.write(os.path.join(self.mktemp(), "broken_codec_site.py"), BROKEN_CODEC))
        path = self.write(self.mktemp(), f"plugin_dirs: [{site}]\n")
        error = self.assertRaises(SystemExit, load, {"config": path})
        self.assertTrue(str(error.code).startswith(f"pbx: {path}: codecs.brokencodec: plugin "), error.code)


class OptionsTests(SynchronousTestCase):
    """The command line of ``twistd pbx``."""

    def test_reset_options(self) -> None:
        """--reset-password and --reset-pin take a name; the config path gets its default."""
        options = Options()
        options.parseOptions(["--reset-password", "admin"])
        self.assertEqual((options["reset-password"], options["reset-pin"]), ("admin", None))
        self.assertTrue(options["config"])

    def test_one_action_at_once(self) -> None:
        """Two actions at once are a usage error."""
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["--reset-password", "admin", "--reset-pin", "1001"])
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["--check-config", "--reset-pin", "1001"])
