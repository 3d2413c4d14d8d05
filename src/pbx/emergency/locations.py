"""
Dispatchable locations (RAY BAUM'S Act): where an extension's caller is.

Where a location comes from, first match wins:

1. **Set by the user** (or by an administrator for them) through the API
   (``PUT /api/v1/extensions/<n>/location``): a named location or a civic
   address of its own.  A person who says where they are knows best; it
   stays until they change or clear it.
2. **Nomadic**: the phone's address lies in a configured subnet
   (``emergency.subnets``, most specific network first): that subnet's
   location.  The address is the call's source when the caller knows it,
   else the source of the extension's live registrations, newest first
   (:class:`pbx.records.Binding` ``source``).
3. **Fixed**: the extension's location in ``emergency.extensions``.
4. None: the call still goes out (Kari's Law), without a PIDF-LO.

Named locations are the configuration's ``emergency.locations`` (fixed:
the API cannot change them) and those added through the API, kept in the
store as ``emergency.location`` items.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from attrs import define, frozen

from twisted.logger import Logger

from pbx.emergency.options import CivicAddress, EmergencyConfig, parse_civic_address
from pbx.errors import ConfigError
from pbx.interfaces import IStore
from pbx.records import Binding

__all__ = ["LOCATION_KIND", "USER_KIND", "Located", "Locator", "source_host"]

#: Store kind of the named locations added through the API (owner "", key: the name).
LOCATION_KIND = "emergency.location"
#: Store kind of the location a user set (owner: the extension, key ``location``).
USER_KIND = "emergency.user-location"
USER_KEY = "location"


@frozen
class Located:
    """
    Where a caller is, and how that was found.

    :ivar origin: ``user``, ``subnet`` or ``extension`` (the precedence above).
    :ivar name: the named location, or "" for a user's own address.
    :ivar method: the PIDF-LO method token: ``Manual`` or ``Derived``.
    """

    address: CivicAddress
    origin: str
    name: str = ""

    @property
    def method(self) -> str:
        """The IANA location method token of :attr:`origin`."""
        return "Derived" if self.origin == "subnet" else "Manual"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: origin, name, the address and its one-line description."""
        return {
            "origin": self.origin,
            "name": self.name,
            "address": self.address.as_dict(),
            "description": self.address.describe(),
        }


def source_host(source: str) -> str:
    """The address of a ``host:port`` (``[v6]:port``) source, or ``source`` when it has no port."""
    if source.startswith("["):
        return source[1:].partition("]")[0]
    if source.count(":") == 1:
        return source.partition(":")[0]
    return source


@define(eq=False)
class Locator:
    """
    Finds an extension's dispatchable location.

    :param config: the ``emergency:`` section.
    :param store: holds named locations added through the API and users' own.
    :param contacts: an extension's live registrations (``Registrar.contacts``).
    """

    config: EmergencyConfig
    store: IStore
    contacts: Callable[[str], list[Binding]]
    log = Logger()

    async def named(self, name: str) -> CivicAddress | None:
        """The named location ``name``: the configuration's, else one added through the API."""
        fixed = self.config.locations.get(name)
        if fixed is not None:
            return fixed
        data = await self.store.get_item(LOCATION_KIND, "", name)
        return self._address(data, f"location {name}") if data is not None else None

    async def all_named(self) -> list[tuple[str, CivicAddress, str]]:
        """Every named location as ``(name, address, "config" or "api")``, by name."""
        found = {
            name: (address, "config") for name, address in self.config.locations.items()
        }
        for _, name, data in await self.store.list_items(LOCATION_KIND, ""):
            address = self._address(data, f"location {name}")
            if address is not None and name not in found:
                found[name] = (address, "api")
        return [(name, *found[name]) for name in sorted(found)]

    def _address(self, data: Any, what: str) -> CivicAddress | None:
        try:
            return parse_civic_address(data, what)
        except ConfigError as e:
            self.log.warn("stored {what} is not a civic address: {e}", what=what, e=e)
            return None

    def subnet_of(self, host: str) -> str | None:
        """The location name of the most specific configured subnet holding ``host``, or None."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        for network, name in self.config.subnets:
            if address.version == network.version and address in network:
                return name
        return None

    async def user_set(self, extension: str) -> Located | None:
        """The location the user of ``extension`` set, or None."""
        data = await self.store.get_item(USER_KIND, extension, USER_KEY)
        if not isinstance(data, dict):
            return None
        if isinstance(data.get("location"), str):
            name = data["location"]
            address = await self.named(name)
            if address is None:
                self.log.warn(
                    "extension {extension} chose location {name}, which no longer exists",
                    extension=extension,
                    name=name,
                )
                return None
            return Located(address, "user", name)
        address = self._address(data.get("address"), f"address set for {extension}")
        return Located(address, "user") if address is not None else None

    async def locate(self, extension: str, source: str = "") -> Located | None:
        """
        The dispatchable location of ``extension`` now (see the module docstring for the order).

        :param source: the address the call came from (``host`` or ``host:port``), if known.
        """
        chosen = await self.user_set(extension)
        if chosen is not None:
            return chosen
        hosts = [source_host(source)] if source else []
        live = sorted(self.contacts(extension), key=lambda b: -b.registered_at)
        hosts += [source_host(b.source) for b in live if b.source]
        for host in hosts:
            name = self.subnet_of(host)
            if name is not None:
                address = await self.named(name)
                if address is not None:
                    return Located(address, "subnet", name)
        name = self.config.extensions.get(extension, "")
        address = await self.named(name) if name else None
        return Located(address, "extension", name) if address is not None else None
