"""
``twistd pbx``: command-line options and the service maker.

Every configuration problem becomes ``SystemExit("pbx: <file>: <key>:
<problem>")``, which twistd prints as exactly that one line before exiting
with status 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from twisted.python import usage

from pbx.config import Config, load_config
from pbx.errors import ConfigError
from pbx.interfaces import ICodec


def default_config_path() -> str:
    """
    The configuration used when ``--config`` is not given: the copy installed
    with the package (``<prefix>/etc/pbx/pbx.yml``), else the one in a source
    checkout.
    """
    candidates = [
        Path(sys.prefix) / "etc" / "pbx" / "pbx.yml",
        Path(__file__).resolve().parents[2] / "etc" / "pbx.yml",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return str(candidates[0])


class Options(usage.Options):
    """Options of ``twistd pbx``."""

    synopsis = "[-c CONFIG] [--check-config]"
    optParameters = [
        ["config", "c", None, "Configuration file (default: the installed etc/pbx/pbx.yml)."],
    ]
    optFlags = [
        ["check-config", None, "Validate the configuration and exit (status 0 or 1)."],
    ]

    def postOptions(self) -> None:  # noqa: N802 - twisted API
        """Fill in the default configuration path."""
        if not self["config"]:
            self["config"] = default_config_path()


def load(options: Options | dict[str, Any]) -> tuple[Config, list[Any], dict[str, ICodec]]:
    """
    Load the configuration, match its features to plugins and find the codecs.

    :returns: the configuration, the enabled features with their options, and
        the codecs that work here.
    :raises SystemExit: with the one-line message on any problem.
    """
    from pbx.plugin_loader import configure, discover, discover_codecs

    path = options["config"]
    try:
        config = load_config(path)
        features = configure(config.features, discover(config.plugin_dirs))
        codecs = discover_codecs(config.plugin_dirs)
    except ConfigError as e:
        e.path = e.path or path
        raise SystemExit(f"pbx: {e}") from None
    return config, features, codecs


def makeService(options: Options) -> Any:  # noqa: N802 - twisted API
    """Build the PBX service for twistd."""
    config, features, codecs = load(options)
    if options["check-config"]:
        print(f"pbx: {config.path}: configuration OK")
        raise SystemExit(0)

    from twisted.internet import reactor

    from pbx.service import PBXService

    def exit_with(code: int) -> None:
        reactor.addSystemEventTrigger("after", "shutdown", os._exit, code)
        if reactor.running:
            reactor.stop()

    return PBXService(config, reactor, features, exit=exit_with, codecs=codecs)
