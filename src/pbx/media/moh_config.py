"""
The ``moh:`` section of the configuration: music on hold.

.. code-block:: yaml

    moh:
      enabled: true            # false: hold re-INVITEs pass to the other phone
      classes:                 # name: a folder of WAV files (relative to this file)
        default: /usr/share/pbx/moh/default   # optional: pbx ships one
        sales: music/sales
      extensions:              # who holds -> what the other party hears
        "1001": sales

Every class is read (and checked) here, once, so a bad folder is a
configuration error naming its key; the classes are then kept in memory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from attrs import field, frozen

from pbx.errors import ConfigError
from pbx.media.music import MusicClass, MusicError, default_music_dir, load_music_class
from pbx.media.playout import DEFAULT_CLASS

__all__ = ["MusicOnHoldConfig", "parse_moh"]

_KEYS = {"enabled", "classes", "extensions"}


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@frozen
class MusicOnHoldConfig:
    """
    Music on hold: whether pbx answers holds itself, the classes, and each
    extension's class.

    :ivar classes: loaded classes by name; ``default`` is always present when enabled.
    :ivar extensions: extension number -> class name.
    """

    enabled: bool = True
    classes: Mapping[str, MusicClass] = field(factory=_empty)
    extensions: Mapping[str, str] = field(factory=_empty)


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping, not {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _load(name: str, directory: Any, base: Path) -> MusicClass:
    key = f"moh.classes.{name}"
    if not isinstance(directory, str) or not directory:
        raise ConfigError(key, "must be the path of a folder of WAV files")
    try:
        return load_music_class(name, str(base / os.path.expanduser(directory)))
    except MusicError as e:
        raise ConfigError(key, str(e)) from None


def parse_moh(raw: Any, base: Path) -> MusicOnHoldConfig:
    """
    Validate the ``moh:`` section and read its classes.

    :param base: the folder relative class paths start from (the config file's).
    :raises ConfigError: naming the key at fault.
    """
    section = _mapping(raw, "moh")
    for k in section:
        if k not in _KEYS:
            raise ConfigError(f"moh.{k}", "unknown key")
    enabled = section.get("enabled", True)
    if isinstance(enabled, str) and enabled.lower() in (
        "true",
        "yes",
        "on",
        "false",
        "no",
        "off",
    ):
        enabled = enabled.lower() in ("true", "yes", "on")
    if not isinstance(enabled, bool):
        raise ConfigError("moh.enabled", "must be true or false")
    raw_classes = _mapping(section.get("classes"), "moh.classes")
    extensions = {
        k: v for k, v in _mapping(section.get("extensions"), "moh.extensions").items()
    }
    if not enabled:
        return MusicOnHoldConfig(enabled=False)
    raw_classes.setdefault(DEFAULT_CLASS, default_music_dir())
    classes = {
        name: _load(name, directory, base) for name, directory in raw_classes.items()
    }
    for number, name in extensions.items():
        if not isinstance(name, str) or name not in classes:
            raise ConfigError(
                f"moh.extensions.{number}", f"no class {name!r} in moh.classes"
            )
    return MusicOnHoldConfig(
        True, MappingProxyType(classes), MappingProxyType(extensions)
    )
