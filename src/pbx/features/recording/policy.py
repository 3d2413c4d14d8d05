"""
Who is recorded by policy, and whether both parties hear so.

Three rules, any of which records an answered call from its answer on:

- ``always: [extensions]``: every call of these extensions, as caller or callee;
- ``trunks: [names]``: every call in from or out through these trunks;
- ``routes: [names]``: every call out by these trunk routes (a route's
  ``name:`` in the dialplan, else its ``match:`` pattern).

The feature learns a call's trunk and route from its ``answered`` call
event (``trunk``, ``route``: :meth:`pbx.calls.call.Call.line`); it does
not reach into the trunks.  A trunk or route entry given as a mapping says
whether that rule's recordings are announced (``trunks: {carrier:
{announce: true}}``); in a list, or without ``announce``, the feature's
``announce`` holds.  A call several rules record is announced when any of
them says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from attrs import frozen

from pbx.calls.dialplan import ToTrunks
from pbx.errors import ConfigError

__all__ = ["Decision", "check_names", "parse_rule_names"]


@frozen
class Decision:
    """
    Why policy records a call.

    :ivar rules: the rules that match (``extension 1001``, ``trunk carrier``, ``route international``).
    :ivar announce: whether both parties hear "this call is recorded".
    """

    rules: tuple[str, ...]
    announce: bool


def parse_rule_names(raw: Any, key: str, announce: bool) -> Mapping[str, bool]:
    """
    A ``trunks:`` or ``routes:`` rule: names, or names mapped to ``{announce: BOOL}``.

    :param announce: the feature's ``announce``: what an entry that says nothing gets.
    :returns: name -> whether its recordings are announced.
    :raises ConfigError: naming the entry at fault.
    """
    if raw is None:
        return MappingProxyType({})
    if isinstance(raw, list):
        raw = {name: None for name in raw} if all(isinstance(n, str) and n for n in raw) else raw
    if not isinstance(raw, dict):
        raise ConfigError(key, "must be a list of names, or names mapped to {announce: true|false}")
    names: dict[str, bool] = {}
    for name, entry in raw.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(key, "must be a list of names, or names mapped to {announce: true|false}")
        entry = {} if entry is None else entry
        if not isinstance(entry, dict) or set(entry) - {"announce"}:
            raise ConfigError(f"{key}.{name}", "may hold announce: true|false only")
        said = entry.get("announce", announce)
        if not isinstance(said, bool):
            raise ConfigError(f"{key}.{name}.announce", "must be true or false")
        names[name] = said
    return MappingProxyType(names)


def check_names(trunks: Mapping[str, bool], routes: Mapping[str, bool], config: Any) -> None:
    """
    Every trunk and route a rule names is configured (a typo would record nothing).

    :param config: the PBX's :class:`pbx.config.Config` (its ``trunks:`` and ``dialplan:``).
    :raises ConfigError: ``features.recording.trunks.carier: no trunk named 'carier' in trunks:``.
    """
    known_trunks = {t.name for t in config.trunks.trunks}
    for name in trunks:
        if name not in known_trunks:
            raise ConfigError(f"features.recording.trunks.{name}", f"no trunk named {name!r} in trunks:")
    routes_known = {r.action.route_name for r in (config.dialplan.routes if config.dialplan is not None else ())
                    if isinstance(r.action, ToTrunks)}
    for name in routes:
        if name not in routes_known:
            raise ConfigError(f"features.recording.routes.{name}",
                              f"no trunk route named {name!r} in dialplan: (its name:, else its match:)")
