"""Tests for feature plugin discovery and configuration."""

from __future__ import annotations

import os
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.interfaces import IFeature
from pbx.plugin_loader import configure, discover

SITE_PLUGIN = '''
from zope.interface import implementer
from twisted.application.service import Service
from twisted.plugin import IPlugin
from pbx.errors import ConfigError
from pbx.interfaces import IFeature


class GreeterService(Service):
    def __init__(self, pbx, greeting):
        self.pbx = pbx
        self.greeting = greeting


@implementer(IPlugin, IFeature)
class Greeter:
    name = "greeter"
    description = "Says hello; a test feature."

    def parse_options(self, options):
        greeting = options.get("greeting", "hello")
        if not isinstance(greeting, str):
            raise ConfigError("greeting", "must be a string")
        return greeting

    def make_service(self, pbx, options):
        return GreeterService(pbx, options)


greeter = Greeter()
'''

BROKEN_PLUGIN = '''
from zope.interface import implementer
from twisted.plugin import IPlugin
from pbx.interfaces import IFeature


@implementer(IPlugin, IFeature)
class Broken:
    name = "broken"
    description = "Claims IFeature but lacks make_service."

    def parse_options(self, options):
        return options


broken = Broken()
'''


class PluginTests(SynchronousTestCase):
    """Plugins are found in site directories, verified and configured by name."""

    def site(self, **modules: str) -> str:
        """Make a site plugin directory holding the given modules."""
        path = self.mktemp()
        os.makedirs(path)
        for name, text in modules.items():
            with open(os.path.join(path, f"{name}.py"), "w") as f:
                f.write(textwrap.dedent(text))
        return path

    def test_site_plugin_found(self) -> None:
        """A plugin in a site directory is found under its name and provides IFeature."""
        found = discover([self.site(greeter=SITE_PLUGIN)])
        self.assertIn("greeter", found)
        self.assertTrue(IFeature.providedBy(found["greeter"]))

    def test_configure_and_make_service(self) -> None:
        """A configured feature gets its parsed options and makes its service."""
        site = self.site(greeter=SITE_PLUGIN)
        config = parse_config(f"plugin_dirs: [{site}]\nfeatures:\n  greeter: {{greeting: hi}}\n", "t.yml", {})
        [feature] = configure(config.features, discover(config.plugin_dirs))
        self.assertEqual(feature.options, "hi")
        service = feature.plugin.make_service("the pbx", feature.options)
        self.assertEqual((service.pbx, service.greeting), ("the pbx", "hi"))

    def test_disabled_feature_not_configured(self) -> None:
        """A disabled feature is known but not started."""
        site = self.site(greeter=SITE_PLUGIN)
        config = parse_config(f"plugin_dirs: [{site}]\nfeatures:\n  greeter: {{enabled: false}}\n", "t.yml", {})
        self.assertEqual(configure(config.features, discover(config.plugin_dirs)), [])

    def test_missing_plugin(self) -> None:
        """A configured feature that no plugin provides is a startup error naming it."""
        config = parse_config("features:\n  voicemale: {}\n", "t.yml", {})
        with self.assertRaises(ConfigError) as cm:
            configure(config.features, discover(config.plugin_dirs))
        self.assertEqual((cm.exception.key, cm.exception.problem),
                         ("features.voicemale", "no plugin provides this feature"))

    def test_bad_options(self) -> None:
        """A feature's own option error is reported under its features key."""
        site = self.site(greeter=SITE_PLUGIN)
        config = parse_config(f"plugin_dirs: [{site}]\nfeatures:\n  greeter: {{greeting: 3}}\n", "t.yml", {})
        with self.assertRaises(ConfigError) as cm:
            configure(config.features, discover(config.plugin_dirs))
        self.assertEqual(cm.exception.key, "features.greeter.greeting")

    def test_broken_plugin(self) -> None:
        """A plugin that does not fully provide IFeature stops startup."""
        with self.assertRaises(ConfigError) as cm:
            discover([self.site(broken=BROKEN_PLUGIN)])
        self.assertEqual(cm.exception.key, "features.broken")
        self.assertIn("make_service", cm.exception.problem)
