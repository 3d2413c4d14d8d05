"""
Finding plugins at configuration time: features and codecs.

Features are objects providing :class:`pbx.interfaces.IFeature` in the dropin
package :mod:`pbx.plugins`, or in a site plugin directory named in
``plugin_dirs:``.  Each configured feature must have exactly one plugin; a
name in ``features:`` that no plugin provides stops startup.

Codecs are objects providing :class:`pbx.interfaces.ICodec` in the same
places; one whose library does not work here is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attrs import frozen

from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from twisted.logger import Logger
from twisted.plugin import getPlugins

import pbx.plugins
from pbx.errors import ConfigError
from pbx.interfaces import ICodec, IFeature
from pbx.media.codecs import CodecUnavailable

log = Logger()


@frozen
class ConfiguredFeature:
    """A feature plugin together with its parsed options."""

    plugin: IFeature
    options: Any


def discover(plugin_dirs: Iterable[str] = ()) -> dict[str, IFeature]:
    """
    Find every feature plugin, keyed by name.

    :raises ConfigError: if a plugin does not provide IFeature correctly, or
        two plugins claim one name.
    """
    with _site_path(plugin_dirs):
        plugins = list(getPlugins(IFeature, pbx.plugins))
    found: dict[str, IFeature] = {}
    for plugin in plugins:
        name = getattr(plugin, "name", None)
        try:
            verifyObject(IFeature, plugin)
        except Invalid as e:
            raise ConfigError(f"features.{name or '?'}", f"plugin {plugin!r} is broken: {e}") from None
        if not isinstance(name, str) or not name:
            raise ConfigError("features", f"plugin {plugin!r} has no name")
        if name in found and found[name] is not plugin:
            raise ConfigError(f"features.{name}", "provided by two plugins")
        found[name] = plugin
    return found


def discover_codecs(plugin_dirs: Iterable[str] = ()) -> dict[str, ICodec]:
    """
    Find every codec plugin whose library works here.

    A codec with a ``probe()`` method is probed; one raising
    :class:`~pbx.media.codecs.CodecUnavailable` is left out and logged.

    :returns: codecs keyed by lower-cased encoding name (``"pcmu"``, ``"opus"``).
    :raises ConfigError: if a plugin does not provide ICodec, or two plugins
        claim one name.
    """
    with _site_path(plugin_dirs):
        plugins = list(getPlugins(ICodec, pbx.plugins))
    found: dict[str, ICodec] = {}
    for codec in plugins:
        name = getattr(codec, "name", None)
        try:
            verifyObject(ICodec, codec)
        except Invalid as e:
            raise ConfigError(f"codecs.{name or '?'}", f"plugin {codec!r} is broken: {e}") from None
        if not isinstance(name, str) or not name:
            raise ConfigError("codecs", f"plugin {codec!r} has no name")
        key = name.lower()
        if key in found and found[key] != codec:
            raise ConfigError(f"codecs.{name}", "provided by two plugins")
        probe = getattr(codec, "probe", None)
        if probe is not None:
            try:
                probe()
            except CodecUnavailable as e:
                log.warn("codec {name} is unavailable: {problem}", name=name, problem=str(e))
                continue
        found[key] = codec
    return found


@contextmanager
def _site_path(plugin_dirs: Iterable[str]) -> Iterator[None]:
    """
    Site directories join the dropin package's path for one discovery, as
    :func:`twisted.plugin.pluginPackagePaths` adds directories to
    ``twisted.plugins``.
    """
    saved = list(pbx.plugins.__path__)
    pbx.plugins.__path__.extend(str(Path(d).resolve()) for d in plugin_dirs)
    try:
        yield
    finally:
        pbx.plugins.__path__[:] = saved


def configure(
    features: Mapping[str, Mapping[str, Any]], available: Mapping[str, IFeature]
) -> list[ConfiguredFeature]:
    """
    Match the ``features:`` section against the plugins found.

    Disabled features are left out; every enabled one has its options parsed
    by its plugin.

    :raises ConfigError: naming the feature key for a missing plugin or bad options.
    """
    result = []
    for name, options in features.items():
        plugin = available.get(name)
        if plugin is None:
            raise ConfigError(f"features.{name}", "no plugin provides this feature")
        if not options.get("enabled", True):
            continue
        rest = {k: v for k, v in options.items() if k != "enabled"}
        try:
            parsed = plugin.parse_options(rest)
        except ConfigError as e:
            raise ConfigError(f"features.{name}.{e.key}", e.problem) from None
        result.append(ConfiguredFeature(plugin, parsed))
    return result
