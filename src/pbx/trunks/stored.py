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

from twisted.logger import Logger

from pbx.errors import ConfigError, StartupError
from pbx.interfaces import IStore
from pbx.trunks.config import parse_rates, parse_trunk
from pbx.trunks.registry import Trunks

__all__ = ["RATES_KEY", "RATES_KIND", "TRUNK_KIND", "load_trunks"]

#: The store's kind of the trunks put through the API (owner "", key: the trunk's name).
TRUNK_KIND = "trunks.trunk"
#: The store's kind of the rate table put through the API (owner "", key :data:`RATES_KEY`).
RATES_KIND = "trunks.rates"
RATES_KEY = "table"

_log = Logger(namespace="pbx.trunks.stored")


async def load_trunks(store: IStore, trunks: Trunks) -> int:
    """
    Put the stored trunks over the file's and the stored rate table in place
    of the file's, before the trunks start; how many trunks were stored.
    """
    count = 0
    for _owner, name, data in await store.list_items(TRUNK_KIND):
        try:
            trunks.put(parse_trunk(name, data))
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
