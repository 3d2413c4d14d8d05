"""
``twistd pbx``: command-line options and the service maker.

Every configuration problem becomes ``SystemExit("pbx: <file>: <key>:
<problem>")``, which twistd prints as exactly that one line before exiting
with status 1.

``--reset-password NAME`` and ``--reset-pin NUMBER`` replace a forgotten
secret in the store and print the new one; no listener opens, so they work
while the daemon runs (SQLite allows a second writer; PostgreSQL too).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

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

    synopsis = "[-c CONFIG] [--check-config | --reset-password NAME | --reset-pin NUMBER]"
    optParameters = [
        ["config", "c", None, "Configuration file (default: the installed etc/pbx/pbx.yml)."],
        ["reset-password", None, None,
         "Give API administrator or extension NAME a new generated password, print it once and exit."],
        ["reset-pin", None, None,
         "Give extension NUMBER a new generated PIN (voicemail, user login), print it once and exit."],
    ]
    optFlags = [
        ["check-config", None, "Validate the configuration and exit (status 0 or 1)."],
    ]

    def postOptions(self) -> None:  # noqa: N802 - twisted API
        """Fill in the default configuration path; refuse two actions at once."""
        if not self["config"]:
            self["config"] = default_config_path()
        actions = [self["check-config"], self["reset-password"], self["reset-pin"]]
        if sum(bool(a) for a in actions) > 1:
            raise usage.UsageError("give only one of --check-config, --reset-password, --reset-pin")


def load(options: Options | dict[str, Any]) -> tuple[Config, list[Any], dict[str, ICodec]]:
    """
    Load the configuration, match its features to plugins and find the codecs.

    :returns: the configuration, the enabled features with their options, and
        the codecs that work here.
    :raises SystemExit: with the one-line message on any problem.
    """
    from pbx.plugin_loader import configure, discover, discover_codecs
    from pbx.security.fips import library_state, refusal, unusable

    path = options["config"]
    # Before the config: building it already makes a TLS context, which
    # fails with a traceback where no OpenSSL provider answers.
    state = library_state()
    broken = unusable(state)
    if broken:
        raise SystemExit(f"pbx: {broken}")
    try:
        config = load_config(path)
        problem = refusal(config.security.fips, lambda: state)
        if problem:
            raise ConfigError("security.fips", problem)
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
    if options["reset-password"] or options["reset-pin"]:
        reset(config, options["reset-password"], options["reset-pin"])

    from twisted.internet import reactor

    from pbx.service import PBXService
    from pbx.startup_report import TwistdStartupReport

    # twistd's own options (the parent of ours) say whether it forks and where the pid file is.
    server_options = getattr(options, "parent", None)
    report = TwistdStartupReport.before_forking(server_options if server_options is not None else {}, reactor)
    return PBXService(config, reactor, features, report=report, codecs=codecs)


def reset(config: Config, name: str | None, number: str | None) -> NoReturn:
    """
    Replace a forgotten password (``name``) or PIN (``number``) in the store
    and print the new one on stdout; nothing listens.

    :raises SystemExit: 0 when done; the one-line reason (status 1) when
        the name is unknown or the store cannot be used.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    from pbx.provisioning import ResetError, reset_password, reset_pin
    from pbx.store.url import open_store, parse_store_url

    target = parse_store_url(config.database)
    if target.backend == "sqlite" and not Path(target.target).is_file():
        raise SystemExit(f"pbx: {config.path}: no database at {target.target} (has the PBX been started?)")
    pin_length = max(6, int(config.features.get("voicemail", {}).get("pin_min_length") or 0))

    async def main(reactor: Any) -> None:
        store = open_store(config.database, reactor)
        try:
            await store.migrate()
            if name:
                kind, secret = await reset_password(store, config, name)
                shown = f"{kind} for {name}: {secret}"
            else:
                assert number is not None
                shown = f"PIN for {number}: {await reset_pin(store, config, number, pin_length)}"
        except ResetError as e:
            print(f"pbx: {config.path}: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        except Exception as e:
            print(f"pbx: {config.path}: database: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        finally:
            await store.close()
        print(f"new {shown} (shown once; only its hash is kept)")

    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
