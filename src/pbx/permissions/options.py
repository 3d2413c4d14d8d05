"""
The ``permissions:`` section of the configuration, validated into frozen values.

```yaml
permissions:
  numbering: nanp                 # the built-in prefix table: nanp (default) or none
  area_codes: ["408", "669"]      # NANP: +1 and these are local calls
  classes:                        # prefix -> class, over the built-in table
    "+1800": local                #   toll-free costs nothing
    "+44": national
    "2": internal                 #   a tie line's extensions
  default: national               # the class of an extension named nowhere below
  groups:
    sales: {class: international, members: ["1001", "1002"]}
  extensions:
    "1001": premium
    "1003": {class: international, limits: {international_per_hour: 30}}
  limits:                         # per extension; absent: no limit
    concurrent_outside: 4         # outside calls up at once
    international_per_hour: 10    # international and premium calls in any 60 minutes
    hold: false                   # true: a tripped limit holds the extension's
                                  #   outside calls until an administrator releases it
  international_hours:            # international calls only inside these hours
    timezone: America/Los_Angeles
    hours: [{days: mon-fri, from: "07:00", to: "19:00"}]
    holidays: ["12-25"]
  announcement: general/not-available   # the prompt a refused caller hears (the default)
```

Classes are ``internal``, ``local``, ``national``, ``international`` and
``premium`` (:mod:`pbx.permissions.classes`).  An extension's class is its
own entry under ``extensions``, else the highest class of the groups it is
a member of, else ``default``.  ``international_hours`` is a schedule in
the attendant's format (:mod:`pbx.features.attendant.schedule`) without the
menu names: its opening hours are when international calls may be made.

Pure: no Twisted.  Every problem is a :class:`~pbx.errors.ConfigError`
naming the dotted key (``permissions.extensions.1001``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from pbx.errors import ConfigError
from pbx.features.attendant import validate as v
from pbx.features.attendant.schedule import Schedule, parse_schedule
from pbx.permissions.classes import (
    CLASS_NAMES,
    NumberTable,
    ServiceClass,
    nanp_table,
    prefix_problem,
)
from pbx.validation import extension_number_problem

__all__ = ["Limits", "PermissionsConfig", "parse_limits", "parse_permissions"]

#: The built-in tables ``numbering`` may name.
NUMBERING = ("nanp", "none")
#: Largest value of a limit.
MAX_LIMIT = 10_000
#: A prompt id (``general/not-available``, ``site/no-toll``).
_PROMPT = re.compile(r"[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*){0,3}")
_AREA_CODE = re.compile(r"[2-9][0-9]{2}")
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LIMIT_KEYS = {"concurrent_outside", "international_per_hour", "hold"}
_SECTION_KEYS = {
    "numbering",
    "area_codes",
    "classes",
    "default",
    "groups",
    "extensions",
    "limits",
    "international_hours",
    "announcement",
}


@frozen
class Limits:
    """
    One extension's limits; None is no limit.

    :ivar concurrent_outside: outside calls up at once.
    :ivar international_per_hour: international and premium calls in any
        sliding hour.
    :ivar hold: whether a tripped limit holds the extension's outside calls
        until an administrator releases them.
    """

    concurrent_outside: int | None = None
    international_per_hour: int | None = None
    hold: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {
            "concurrent_outside": self.concurrent_outside,
            "international_per_hour": self.international_per_hour,
            "hold": self.hold,
        }


@frozen
class PermissionsConfig:
    """The validated ``permissions:`` section (default: the NANP table, national, no limits)."""

    table: NumberTable = field(factory=lambda: NumberTable.of(nanp_table()))
    default: ServiceClass = ServiceClass.NATIONAL
    extensions: Mapping[str, ServiceClass] = field(factory=dict)
    #: group name -> (class, members)
    groups: Mapping[str, tuple[ServiceClass, frozenset[str]]] = field(factory=dict)
    limits: Limits = Limits()
    #: Per-extension limits that differ from ``limits``.
    extension_limits: Mapping[str, Limits] = field(factory=dict)
    #: When international calls may be made; None: at any time.
    international_hours: Schedule | None = None
    announcement: str = "general/not-available"

    def class_of(self, extension: str) -> tuple[ServiceClass, str]:
        """
        The class of ``extension`` and where it comes from (``extension``,
        ``group <name>`` or ``default``).
        """
        own = self.extensions.get(extension)
        if own is not None:
            return own, "extension"
        best: tuple[ServiceClass, str] | None = None
        for name, (service_class, members) in self.groups.items():
            if extension in members and (best is None or service_class > best[0]):
                best = service_class, f"group {name}"
        return best if best is not None else (self.default, "default")

    def limits_of(self, extension: str) -> Limits:
        """The limits that apply to ``extension``."""
        return self.extension_limits.get(extension, self.limits)


def _class(raw: Any, key: str) -> ServiceClass:
    if not isinstance(raw, str) or raw not in CLASS_NAMES:
        raise ConfigError(key, f"must be one of {', '.join(CLASS_NAMES)}")
    return ServiceClass.named(raw)


def _count(raw: Any, key: str) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_LIMIT:
        raise ConfigError(
            key, f"must be a whole number from 1 to {MAX_LIMIT}, or empty for no limit"
        )
    return raw


def parse_limits(raw: Any, key: str, base: Limits = Limits()) -> Limits:
    """
    A ``limits:`` mapping; keys it leaves out keep their value in ``base``.

    :raises ConfigError: for an unknown key or a value out of range.
    """
    m = v.mapping(raw if raw is not None else {}, key, _LIMIT_KEYS)
    hold = m.get("hold", base.hold)
    if not isinstance(hold, bool):
        raise ConfigError(v.join(key, "hold"), "must be true or false")
    return Limits(
        concurrent_outside=(
            _count(m["concurrent_outside"], v.join(key, "concurrent_outside"))
            if "concurrent_outside" in m
            else base.concurrent_outside
        ),
        international_per_hour=(
            _count(m["international_per_hour"], v.join(key, "international_per_hour"))
            if "international_per_hour" in m
            else base.international_per_hour
        ),
        hold=hold,
    )


def parse_extension_setting(
    raw: Any, key: str, base: Limits
) -> tuple[ServiceClass | None, Limits | None]:
    """
    One extension's ``{class: ..., limits: {...}}`` as ``extensions:`` spells
    it (the API sets the same); either may be absent (None).  Limits it
    leaves out keep their value in ``base``.

    :raises ConfigError: naming the field (``class``, ``limits.hold``) and the problem.
    """
    entry = v.mapping(raw, key, {"class", "limits"})
    service_class = (
        _class(entry["class"], v.join(key, "class")) if "class" in entry else None
    )
    limits = (
        parse_limits(entry["limits"], v.join(key, "limits"), base)
        if "limits" in entry
        else None
    )
    return service_class, limits


def _extension(raw: Any, key: str) -> str:
    number = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(number, str) or extension_number_problem(number):
        raise ConfigError(key, "an extension number is 2-10 digits")
    return number


def _table(m: dict[str, Any], key: str) -> NumberTable:
    numbering = m.get("numbering", "nanp")
    if numbering not in NUMBERING:
        raise ConfigError(
            v.join(key, "numbering"), f"must be one of {', '.join(NUMBERING)}"
        )
    codes_raw = m.get("area_codes") or []
    if not isinstance(codes_raw, list):
        raise ConfigError(
            v.join(key, "area_codes"), f"must be a list, not {v.kind(codes_raw)}"
        )
    codes = []
    for i, code in enumerate(codes_raw):
        text = (
            str(code) if isinstance(code, int) and not isinstance(code, bool) else code
        )
        if not isinstance(text, str) or not _AREA_CODE.fullmatch(text):
            raise ConfigError(
                f"{key}.area_codes[{i}]",
                "a NANP area code is three digits, the first 2-9",
            )
        codes.append(text)
    if codes and numbering != "nanp":
        raise ConfigError(
            v.join(key, "area_codes"), "area codes belong to numbering: nanp"
        )
    table = nanp_table(codes) if numbering == "nanp" else {}
    raw_classes = m.get("classes") or {}
    for prefix in raw_classes if isinstance(raw_classes, dict) else ():
        if isinstance(prefix, int):
            # YAML reads an unquoted +44 as the number 44.
            raise ConfigError(
                f"{key}.classes.{prefix}", 'a prefix must be quoted ("+44")'
            )
    for prefix, name in v.mapping(raw_classes, v.join(key, "classes")).items():
        where = f"{key}.classes.{prefix}"
        problem = prefix_problem(prefix)
        if problem:
            raise ConfigError(where, problem)
        table[prefix.upper()] = _class(name, where)
    return NumberTable.of(table)


def _hours(raw: Any, key: str) -> Schedule:
    m = v.mapping(raw, key, {"timezone", "hours", "holidays"})
    if not m.get("hours"):
        raise ConfigError(
            v.join(key, "hours"), "required: when international calls may be made"
        )
    # The attendant's schedule names the menus of its open and closed
    # states; here the states themselves are the answer.
    return parse_schedule(
        {**m, "open": "open", "closed": "closed"}, key, "international_hours"
    )


def parse_permissions(raw: Any, key: str = "permissions") -> PermissionsConfig:
    """
    Validate the ``permissions:`` mapping.

    :param raw: the mapping as YAML gave it (None: the defaults).
    :param key: its dotted key.
    :raises ConfigError: naming the first bad key and its problem.
    """
    m = v.mapping(raw if raw is not None else {}, key, _SECTION_KEYS)
    table = _table(m, key)
    default = _class(m.get("default", "national"), v.join(key, "default"))
    limits = parse_limits(m.get("limits"), v.join(key, "limits"))
    extensions: dict[str, ServiceClass] = {}
    extension_limits: dict[str, Limits] = {}
    for number, value in v.mapping(
        m.get("extensions") or {}, v.join(key, "extensions")
    ).items():
        where = f"{key}.extensions.{number}"
        _extension(number, where)
        if isinstance(value, dict):
            entry = v.mapping(value, where, {"class", "limits"})
            if "class" in entry:
                extensions[number] = _class(entry["class"], v.join(where, "class"))
            if "limits" in entry:
                extension_limits[number] = parse_limits(
                    entry["limits"], v.join(where, "limits"), limits
                )
        else:
            extensions[number] = _class(value, where)
    groups: dict[str, tuple[ServiceClass, frozenset[str]]] = {}
    for name, value in v.mapping(m.get("groups") or {}, v.join(key, "groups")).items():
        where = f"{key}.groups.{name}"
        if not _GROUP.fullmatch(name):
            raise ConfigError(
                where, "a group name is 1-64 letters, digits, '.', '_' or '-'"
            )
        entry = v.mapping(value, where, {"class", "members"})
        for required in ("class", "members"):
            if required not in entry:
                raise ConfigError(v.join(where, required), "required")
        members = entry["members"]
        if not isinstance(members, list):
            raise ConfigError(
                v.join(where, "members"),
                f"must be a list of extensions, not {v.kind(members)}",
            )
        groups[name] = (
            _class(entry["class"], v.join(where, "class")),
            frozenset(
                _extension(n, f"{where}.members[{i}]") for i, n in enumerate(members)
            ),
        )
    hours = m.get("international_hours")
    announcement = m.get("announcement", PermissionsConfig().announcement)
    if not isinstance(announcement, str) or not _PROMPT.fullmatch(announcement):
        raise ConfigError(
            v.join(key, "announcement"),
            "must be a prompt id such as general/not-available",
        )
    return PermissionsConfig(
        table=table,
        default=default,
        extensions=extensions,
        groups=groups,
        limits=limits,
        extension_limits=extension_limits,
        international_hours=None
        if hours is None
        else _hours(hours, v.join(key, "international_hours")),
        announcement=announcement,
    )
