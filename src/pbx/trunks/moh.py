"""
Music on hold for calls over trunks: which class a party beyond a trunk
hears when the extension it talks to holds.

An outside caller is the company's caller: the music is the line's, not
the phone's.  So the class of the outside line wins over the holding
extension's (``moh: extensions:``), and the most specific line setting
wins over the broader one:

- a call in from a trunk: its DID's ``moh:`` (``trunks: NAME: dids:
  NUMBER: {extension: ..., moh: sales}``), else the trunk's ``moh:``;
- a call out through a trunk route: the route's ``moh:`` (``dialplan:
  - {match: ..., trunk: ..., moh: sales}``), else the ``moh:`` of the
  trunk the call went out on;
- neither: the holding extension's class, else ``default``.

Calls between phones keep the holding extension's class.  Whoever holds in
a call over a trunk, the other party hears the line's class (an outside
party that holds has no extension class of its own).

Pure code: the class names are checked against ``moh: classes:`` at load
(:func:`check_classes`), one error naming the key.
"""

from __future__ import annotations

from collections.abc import Collection

from pbx.calls.dialplan import Dialplan, ToTrunks
from pbx.errors import ConfigError
from pbx.trunks.config import TrunkConfig, TrunksConfig

__all__ = ["check_classes", "inbound_class", "outbound_class"]


def inbound_class(trunk: TrunkConfig, did: str) -> str:
    """The class of a call from ``trunk`` to ``did``: the DID's, else the trunk's; "" for none."""
    return trunk.did_moh.get(did, "") or trunk.moh


def outbound_class(route: ToTrunks | None, trunk: TrunkConfig | None) -> str:
    """The class of a call out by ``route`` on ``trunk`` (None: not tried yet): the route's, else the trunk's."""
    if route is not None and route.moh:
        return route.moh
    return trunk.moh if trunk is not None else ""


def check_classes(known: Collection[str], dialplan: Dialplan, trunks: TrunksConfig) -> None:
    """
    Every ``moh:`` of a trunk, a DID or a trunk route names a class of ``moh: classes:``.

    :param known: the classes loaded.
    :raises ConfigError: ``trunks.carrier.dids.+15551230000.moh: no class 'salse' in moh.classes``.
    """
    wanted: list[tuple[str, str]] = []
    for trunk in trunks.trunks:
        if trunk.moh:
            wanted.append((f"trunks.{trunk.name}.moh", trunk.moh))
        wanted += [(f"trunks.{trunk.name}.dids.{number}.moh", name) for number, name in trunk.did_moh.items()]
    for i, route in enumerate(dialplan.routes):
        if isinstance(route.action, ToTrunks) and route.action.moh:
            wanted.append((f"dialplan[{i}].moh", route.action.moh))
    for key, name in wanted:
        if name not in known:
            raise ConfigError(key, f"no class {name!r} in moh.classes")
