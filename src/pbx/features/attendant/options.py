"""
The ``features: attendant:`` section as a whole, and the checks that tie
its menus and schedules together.

::

    features:
      attendant:
        timezone: Europe/Berlin      # default for schedules (default UTC)
        operator: "1000"             # for {operator: true} (a menu may name its own)
        menus: {main: {...}, sales: {...}}
        schedules: {office: {...}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from pbx.errors import ConfigError
from pbx.features.attendant import validate as v
from pbx.features.attendant.menus import GoToMenu, Menu, Operator, parse_menu
from pbx.features.attendant.schedule import Schedule, parse_schedule, parse_timezone


@frozen
class MenuSet:
    """Every menu and schedule, with the feature-wide settings they use."""

    menus: Mapping[str, Menu] = field(factory=dict)
    schedules: Mapping[str, Schedule] = field(factory=dict)
    timezone: str = "UTC"
    operator: str = ""

    def operator_of(self, menu: Menu) -> str:
        """The extension ``{operator: true}`` reaches from ``menu`` (``""``: none)."""
        return menu.operator or self.operator


def _named(raw: Any, key: str) -> dict[str, Any]:
    if raw is None:
        return {}
    m = v.mapping(raw, key)
    for name in m:
        v.name(name, v.join(key, name))
    return m


def parse_options(raw: Any) -> MenuSet:
    """
    Validate the feature section: structure first, then every reference.

    :raises ConfigError: the first problem, its key relative to the section.
    """
    m = v.mapping(raw or {}, "", {"menus", "schedules", "timezone", "operator"})
    menus = {n: parse_menu(r, f"menus.{n}", n) for n, r in _named(m.get("menus"), "menus").items()}
    schedules = {
        n: parse_schedule(r, f"schedules.{n}", n) for n, r in _named(m.get("schedules"), "schedules").items()
    }
    timezone = m.get("timezone")
    operator = m.get("operator")
    result = MenuSet(
        menus=menus,
        schedules=schedules,
        timezone="UTC" if timezone is None else parse_timezone(timezone, "timezone"),
        operator="" if operator is None else v.number(operator, "operator"),
    )
    problems = reference_problems(result)
    if problems:
        raise problems[0]
    return result


def reference_problems(menu_set: MenuSet) -> list[ConfigError]:
    """
    Every dangling reference: a menu or schedule naming a menu that does not
    exist, or ``{operator: true}`` where no operator is set.
    """
    problems = []
    for name, menu in menu_set.menus.items():
        for key, action in menu.actions():
            at = f"menus.{name}.{key}"
            if isinstance(action, GoToMenu) and action.menu not in menu_set.menus:
                problems.append(ConfigError(f"{at}.menu", f"no menu {action.menu!r}"))
            if isinstance(action, Operator) and not menu_set.operator_of(menu):
                problems.append(
                    ConfigError(f"{at}.operator", "no operator extension (set operator: in the menu or the feature)")
                )
    for name, schedule in menu_set.schedules.items():
        for key, menu_name in schedule.menus():
            if menu_name not in menu_set.menus:
                problems.append(ConfigError(f"schedules.{name}.{key}", f"no menu {menu_name!r}"))
    return problems


def menu_users(menu_set: MenuSet, menu: str) -> list[str]:
    """The keys of every other menu's action and every schedule that name ``menu``."""
    users = []
    for name, other in menu_set.menus.items():
        if name == menu:
            continue
        for key, action in other.actions():
            if isinstance(action, GoToMenu) and action.menu == menu:
                users.append(f"menus.{name}.{key}.menu")
    for name, schedule in menu_set.schedules.items():
        users += [f"schedules.{name}.{key}" for key, used in schedule.menus() if used == menu]
    return users


#: The menu a route without arguments starts in.
DEFAULT_MENU = "main"


def route_target(args: Mapping[str, Any] | None, key: str) -> tuple[str, str]:
    """
    What a dialplan route's ``args`` start a call in: ``("menu", name)`` or
    ``("schedule", name)``; no arguments mean the menu ``main``.

    :raises ConfigError: for unknown keys, both keys, or a bad name.
    """
    m = v.mapping(dict(args or {}), key, {"menu", "schedule"})
    if "menu" in m and "schedule" in m:
        raise ConfigError(v.where(key), "give either menu or schedule, not both")
    if "schedule" in m:
        return "schedule", v.name(m["schedule"], v.join(key, "schedule"))
    return "menu", v.name(m.get("menu", DEFAULT_MENU), v.join(key, "menu"))


def target_problem(menu_set: MenuSet, target: tuple[str, str], key: str) -> ConfigError | None:
    """The problem with a route's target in ``menu_set``, if it names nothing."""
    what, name = target
    names = menu_set.schedules if what == "schedule" else menu_set.menus
    if name in names:
        return None
    return ConfigError(f"{key}.{what}", f"no attendant {what} {name!r}")
