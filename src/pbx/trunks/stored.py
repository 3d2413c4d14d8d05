"""
Trunks and the rate table as the API changed them, kept in the store.

A trunk put through the API is stored as the mapping the API received
(``trunks:``' shape, its password included: digest needs it in clear, as
the configuration file holds it), under the kind :data:`TRUNK_KIND`; the
rate table under :data:`RATES_KIND`.  At start :func:`load_trunks` runs
them over the file's: the API's copy of a trunk wins over the file's trunk
of the same name (routes name trunks, so an operator repoints or
re-credentials a routed trunk live), and deleting that copy brings the
file's trunk back.  A stored trunk that no longer validates is skipped
with a log line, never a failed start.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.dialplan import Dialplan, Route, ToTrunks, parse_dialplan
from pbx.errors import ConfigError, StartupError
from pbx.interfaces import IStore
from pbx.trunks.config import parse_rates, parse_trunk
from pbx.trunks.registry import Trunks

__all__ = [
    "RATES_KEY",
    "RATES_KIND",
    "ROUTE_KIND",
    "TRUNK_KIND",
    "load_routes",
    "load_trunks",
    "route_change",
]

#: The store's kind of the trunks put through the API (owner "", key: the trunk's name).
TRUNK_KIND = "trunks.trunk"
#: The store's kind of the rate table put through the API (owner "", key :data:`RATES_KEY`).
RATES_KIND = "trunks.rates"
RATES_KEY = "table"
#: The store's kind of trunk routes changed through the API (owner "", key: the route's pattern).
ROUTE_KIND = "trunks.route"

#: What the API may change of a trunk route.
_ROUTE_KEYS = {"trunk", "strip", "prepend", "caller_id", "share"}

_log = Logger(namespace="pbx.trunks.stored")


async def load_trunks(store: IStore, trunks: Trunks) -> int:
    """
    Put the stored trunks over the file's and the stored rate table in place
    of the file's, before the trunks start; how many trunks were stored.
    """
    count = 0
    for _owner, name, data in await store.list_items(TRUNK_KIND):
        try:
            config = parse_trunk(name, data)
            for number in config.dids:
                owner = trunks.did_owner(number, but=name)
                if owner is not None:
                    raise ConfigError(
                        f"dids.{number}", f"is a DID of trunk {owner} too"
                    )
            trunks.put(config)
        except (ConfigError, StartupError) as e:
            # A trunk stored by an older pbx, or a CA file gone since.
            _log.warn(
                "stored trunk {trunk} skipped: {problem}", trunk=name, problem=str(e)
            )
            continue
        count += 1
    rates = await store.get_item(RATES_KIND, "", RATES_KEY)
    if rates is not None:
        try:
            trunks.rates = parse_rates(
                rates.get("rates"), tuple(t.config for t in trunks.trunks.values())
            )
        except ConfigError as e:
            _log.warn("stored rate table skipped: {problem}", problem=str(e))
    return count


def stored_form(data: dict[str, Any]) -> dict[str, Any]:
    """A trunk's mapping as it is stored: the API's body without ``name``."""
    return {k: v for k, v in data.items() if k != "name"}


def route_change(route: Route, change: dict[str, Any], trunks: set[str]) -> Route:
    """
    ``route`` (a trunk route) with ``change`` (``trunk``, ``strip``,
    ``prepend``, ``caller_id``, ``share``, as ``dialplan:`` spells them;
    left out: as before) applied.

    :param trunks: the names of the trunks running; the route may name only these.
    :raises ConfigError: naming the field and the problem.
    """
    assert isinstance(route.action, ToTrunks)
    unknown = sorted(set(change) - _ROUTE_KEYS)
    if unknown:
        raise ConfigError(
            unknown[0], f"unknown key (known: {', '.join(sorted(_ROUTE_KEYS))})"
        )
    old = route.action
    entry = {
        "match": route.pattern,
        "trunk": list(old.trunks),
        "strip": old.strip,
        "prepend": old.prepend,
        "caller_id": old.caller_id,
        "share": "weighted" if old.weighted else "ordered",
        **({"name": old.route_name} if old.route_name else {}),
        **({"moh": old.moh} if old.moh else {}),
        **change,
    }
    try:
        [parsed] = parse_dialplan([entry]).routes
    except ConfigError as e:
        raise ConfigError(e.key.removeprefix("dialplan[0]."), e.problem) from None
    assert isinstance(parsed.action, ToTrunks)
    for name in parsed.action.trunks:
        if name not in trunks:
            raise ConfigError("trunk", f"no trunk named {name!r}")
    return evolve(route, action=evolve(parsed.action, emergency=old.emergency))


def load_routes(
    store: IStore, dialplan: Dialplan, trunks: set[str]
) -> Deferred[Dialplan]:
    """
    ``dialplan`` with the stored changes of its trunk routes applied (matched
    by pattern); a change whose route is gone from the file, or that no
    longer validates, is skipped with a log line.
    """
    return Deferred.fromCoroutine(_load_routes(store, dialplan, trunks))


async def _load_routes(store: IStore, dialplan: Dialplan, trunks: set[str]) -> Dialplan:
    changes = {key: data for _owner, key, data in await store.list_items(ROUTE_KIND)}
    if not changes:
        return dialplan
    routes = []
    for route in dialplan.routes:
        change = changes.pop(route.pattern, None)
        if change is not None and isinstance(route.action, ToTrunks):
            try:
                route = route_change(route, change, trunks)
            except ConfigError as e:
                _log.warn(
                    "stored change of route {pattern} skipped: {problem}",
                    pattern=route.pattern,
                    problem=str(e),
                )
        routes.append(route)
    for pattern in changes:
        _log.warn(
            "stored change of route {pattern} skipped: no such trunk route in the file",
            pattern=pattern,
        )
    return Dialplan(tuple(routes))
