"""
The menus and schedules in effect: the config file's, overridden by the
API's, kept in the store.

Each menu is a feature document of kind ``attendant.menu`` (schedules:
``attendant.schedule``), owner ``""``, key its name, holding
``{"source": "config" | "api", "definition": {...}}``.

- At start the config file's menus and schedules are written to the store
  with source ``config`` (so the file's edits take effect on restart), and
  ``config`` documents the file no longer names are removed.
- ``PUT`` through the API writes source ``api``.  An ``api`` document
  overrides a config entry of the same name, also across restarts: the
  start does not overwrite it.
- ``DELETE`` of an ``api`` document that overrides a config entry puts the
  config entry back; a config entry itself cannot be deleted through the
  API (remove it from the file).  A menu still named by another menu, a
  schedule or a dialplan route cannot be deleted.
- Calls read :meth:`Catalogue.current` at their start: the config set with
  the ``api`` documents laid over it, so changes apply to the next call
  without a restart, and a store that fails still leaves the file's menus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from attrs import define

from twisted.logger import Logger

from pbx.errors import ConfigError
from pbx.features.attendant import validate as v
from pbx.features.attendant.menus import dump_menu, parse_menu
from pbx.features.attendant.options import (
    MenuSet,
    menu_users,
    reference_problems,
    target_problem,
)
from pbx.features.attendant.schedule import dump_schedule, parse_schedule

MENU = "attendant.menu"
SCHEDULE = "attendant.schedule"
_PREFIX = {MENU: "menus", SCHEDULE: "schedules"}


class Missing(Exception):
    """No menu or schedule of that name."""


class Conflict(Exception):
    """The change would leave something dangling, or the entry belongs to the file."""


@define(eq=False)
class Catalogue:
    """
    The attendant's menus and schedules, config and API merged.

    :ivar store: the PBX's :class:`~pbx.interfaces.IStore`.
    :ivar configured: what the config file says.
    :ivar routes: ``(key, (what, name))`` of every dialplan route into the
        attendant, e.g. ``("dialplan[2].args", ("menu", "main"))``.
    """

    store: Any
    configured: MenuSet
    routes: Sequence[tuple[str, tuple[str, str]]] = ()
    log = Logger()

    # -- reading -----------------------------------------------------------

    async def _documents(self, kind: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """``{name: (source, definition)}`` of one kind, as stored."""
        found = {}
        for _, key, data in await self.store.list_items(kind, ""):
            source, definition = data.get("source"), data.get("definition")
            if source in ("config", "api") and isinstance(definition, dict):
                found[key] = (source, definition)
            else:
                self.log.warn("attendant: ignoring malformed {kind} document {key!r}", kind=kind, key=key)
        return found

    async def entries(self, kind: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """``{name: (source, definition)}`` in effect (config, then api over it)."""
        configured = self._configured(kind)
        merged = {name: ("config", definition) for name, definition in configured.items()}
        for name, (source, definition) in (await self._documents(kind)).items():
            if source == "api":
                merged[name] = (source, definition)
        return dict(sorted(merged.items()))

    def _configured(self, kind: str) -> dict[str, dict[str, Any]]:
        if kind == MENU:
            return {n: dump_menu(m) for n, m in self.configured.menus.items()}
        return {n: dump_schedule(s) for n, s in self.configured.schedules.items()}

    async def current(self) -> MenuSet:
        """The menu set in effect now (the file's alone if the store fails)."""
        try:
            menus, schedules = await self.entries(MENU), await self.entries(SCHEDULE)
        except Exception:
            self.log.failure("attendant: reading menus from the store failed; using the config file's")
            return self.configured
        return attrs.evolve(
            self.configured,
            menus=self._parsed(menus, MENU),
            schedules=self._parsed(schedules, SCHEDULE),
        )

    def _parsed(self, entries: dict[str, tuple[str, dict[str, Any]]], kind: str) -> dict[str, Any]:
        parse = parse_menu if kind == MENU else parse_schedule
        result = {}
        for name, (_, definition) in entries.items():
            try:
                result[name] = parse(definition, f"{_PREFIX[kind]}.{name}", name)
            except ConfigError as e:
                self.log.error("attendant: stored {key} is invalid: {problem}", key=e.key, problem=e.problem)
        return result

    # -- start -------------------------------------------------------------

    async def seed(self) -> None:
        """Write the file's entries to the store (see the module docstring) and report problems."""
        for kind in (MENU, SCHEDULE):
            stored = await self._documents(kind)
            configured = self._configured(kind)
            for name, definition in configured.items():
                if stored.get(name, ("config",))[0] == "api":
                    self.log.info("attendant: {what} {name!r} from the API overrides the config file's",
                                  what=_PREFIX[kind][:-1], name=name)
                    continue
                await self.store.put_item(kind, "", name, {"source": "config", "definition": definition})
            for name, (source, _) in stored.items():
                if source == "config" and name not in configured:
                    await self.store.delete_item(kind, "", name)
        menu_set = await self.current()
        problems = reference_problems(menu_set)
        problems += [p for key, target in self.routes if (p := target_problem(menu_set, target, key))]
        for problem in problems:
            self.log.error("attendant: {key}: {problem}", key=problem.key, problem=problem.problem)

    # -- changes -----------------------------------------------------------

    async def put(self, kind: str, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """
        Validate and store one menu or schedule from the API.

        :param body: the definition; ``name`` (if given) must equal ``name``,
            ``source`` is ignored, so what GET returns can be PUT back.
        :returns: (the definition stored, whether it is new).
        :raises ConfigError: keyed relative to the body.
        """
        v.name(name, "name")
        body = dict(body)
        body.pop("source", None)
        if body.pop("name", name) != name:
            raise ConfigError("name", "differs from the name in the path")
        if kind == MENU:
            menu = parse_menu(body, "", name)
            definition = dump_menu(menu)
            menu_set = await self.current()
            menu_set = attrs.evolve(menu_set, menus={**menu_set.menus, name: menu})
        else:
            schedule = parse_schedule(body, "", name)
            definition = dump_schedule(schedule)
            menu_set = await self.current()
            menu_set = attrs.evolve(menu_set, schedules={**menu_set.schedules, name: schedule})
        own = f"{_PREFIX[kind]}.{name}."
        for problem in reference_problems(menu_set):
            if problem.key.startswith(own):
                raise ConfigError(problem.key[len(own):], problem.problem)
        existed = name in await self.entries(kind)
        await self.store.put_item(kind, "", name, {"source": "api", "definition": definition})
        return definition, not existed

    async def delete(self, kind: str, name: str) -> str:
        """
        Delete one menu or schedule, or revert an API override to the file's.

        :returns: ``"deleted"`` or ``"reverted"``.
        :raises Missing: when there is none of that name.
        :raises Conflict: when it is the file's, or still in use.
        """
        what = _PREFIX[kind][:-1]
        entries = await self.entries(kind)
        if name not in entries:
            raise Missing(f"no {what} {name!r}")
        configured = self._configured(kind)
        if name in configured:
            if entries[name][0] == "config":
                raise Conflict(f"{what} {name!r} is defined in the config file; remove it there")
            await self.store.put_item(kind, "", name, {"source": "config", "definition": configured[name]})
            return "reverted"
        users = [key for key, target in self.routes if target == (what, name)]
        if kind == MENU:
            users = menu_users(await self.current(), name) + users
        if users:
            raise Conflict(f"{what} {name!r} is used by {', '.join(users)}")
        await self.store.delete_item(kind, "", name)
        return "deleted"
