"""
Attendant menus and the actions their keys lead to, parsed from YAML (or an
API body) and dumped back to the same JSON-ready form.

A menu::

    greeting: [aa/welcome, /var/lib/pbx/sounds/sales.wav]   # or one string
    options:
      "1": {extension: "1001"}
      "2": {menu: sales}
      "3": {voicemail: "1002"}
      "9": {directory: true}
      "0": {operator: true}
      "*": {hangup: true}
      "#": {application: echo, args: {}}
      "7": {queue: support}
    direct_dial: true        # or false (default), or a pattern: "_1XXX"
    timeout: 5               # seconds to wait for a key after the greeting
    digit_timeout: 3         # seconds between the digits of a direct dial
    retries: 3               # invalid or missing choices before on_fail
    on_fail: {hangup: true}  # any action; the default says goodbye and hangs up
    operator: "1000"         # the operator of this menu (default: the feature's)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from pbx.calls.dialplan import compile_pattern
from pbx.errors import ConfigError
from pbx.features.attendant import validate as v

#: The keys a menu option may be bound to.
KEYS = "0123456789*#"
#: A prompt id as the prompt catalogue spells them.
PROMPT_ID = re.compile(r"[a-z0-9]+(?:/[a-z0-9][a-z0-9-]*)+")


@frozen
class Transfer:
    """Transfer the caller to an extension: ``{extension: "1001"}``."""

    number: str


@frozen
class GoToMenu:
    """Go to another menu: ``{menu: sales}``."""

    menu: str


@frozen
class Voicemail:
    """Leave a message in a mailbox: ``{voicemail: "1001"}``."""

    mailbox: str


@frozen
class Directory:
    """Dial by name: ``{directory: true}``."""


@frozen
class Operator:
    """Transfer to the menu's (or the feature's) operator: ``{operator: true}``."""


@frozen
class Hangup:
    """Say goodbye and hang up: ``{hangup: true}``."""


@frozen
class Queue:
    """A call queue: ``{queue: support}`` (no queues exist yet)."""

    name: str


@frozen
class RunApplication:
    """Hand the call to a dialplan application: ``{application: echo, args: {}}``."""

    name: str
    args: Mapping[str, Any] = field(factory=dict)


Action = Transfer | GoToMenu | Voicemail | Directory | Operator | Hangup | Queue | RunApplication

_ACTIONS = ("extension", "menu", "voicemail", "directory", "operator", "hangup", "queue", "application")


def parse_action(raw: Any, key: str) -> Action:
    """
    One action: a mapping with exactly one of the action keys.

    :raises ConfigError: naming the offending key below ``key``.
    """
    m = v.mapping(raw, key)
    chosen = [k for k in _ACTIONS if k in m]
    if len(chosen) != 1:
        raise ConfigError(v.where(key), f"must have exactly one of {', '.join(_ACTIONS)}")
    what = chosen[0]
    v.mapping(m, key, {what, "args"} if what == "application" else {what})
    value, at = m[what], v.join(key, what)
    if what == "extension":
        return Transfer(v.number(value, at))
    if what == "menu":
        return GoToMenu(v.name(value, at))
    if what == "voicemail":
        return Voicemail(v.number(value, at))
    if what == "queue":
        return Queue(v.name(value, at))
    if what == "application":
        args = m.get("args")
        args = {} if args is None else v.mapping(args, v.join(key, "args"))
        return RunApplication(v.string(value, at, v.NAME, "an application name"), args)
    v.true(value, at)
    if what == "directory":
        return Directory()
    return Operator() if what == "operator" else Hangup()


def dump_action(action: Action) -> dict[str, Any]:
    """The JSON-ready form of an action; :func:`parse_action` reads it back."""
    if isinstance(action, Transfer):
        return {"extension": action.number}
    if isinstance(action, GoToMenu):
        return {"menu": action.menu}
    if isinstance(action, Voicemail):
        return {"voicemail": action.mailbox}
    if isinstance(action, Queue):
        return {"queue": action.name}
    if isinstance(action, RunApplication):
        return {"application": action.name, "args": dict(action.args)}
    if isinstance(action, Directory):
        return {"directory": True}
    if isinstance(action, Operator):
        return {"operator": True}
    return {"hangup": True}


@frozen
class Menu:
    """
    One menu.

    :ivar direct_dial: whether callers may dial an extension at any time.
    :ivar direct_pattern: when not empty, dialled extensions must also match
        this dialplan-style pattern (``_1XXX``).
    """

    name: str
    greeting: tuple[str, ...]
    options: Mapping[str, Action] = field(factory=dict)
    direct_dial: bool = False
    direct_pattern: str = ""
    timeout: float = 5.0
    digit_timeout: float = 3.0
    retries: int = 3
    on_fail: Action = Hangup()
    operator: str = ""
    _direct_regex: re.Pattern[str] | None = field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.direct_pattern and self._direct_regex is None:
            object.__setattr__(self, "_direct_regex", compile_pattern(self.direct_pattern))

    def allows(self, number: str) -> bool:
        """Whether a caller of this menu may dial ``number`` directly."""
        if not self.direct_dial:
            return False
        return self._direct_regex is None or self._direct_regex.match(number) is not None

    def actions(self) -> list[tuple[str, Action]]:
        """Every action of the menu with the key (relative to the menu) naming it."""
        found: list[tuple[str, Action]] = [(f"options.{k}", a) for k, a in self.options.items()]
        return [*found, ("on_fail", self.on_fail)]


_MENU_KEYS = {"greeting", "options", "direct_dial", "timeout", "digit_timeout", "retries", "on_fail", "operator"}


def _greeting(raw: Any, key: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise ConfigError(key, "must be a prompt id, a .wav path, or a non-empty list of them")
    result = []
    for i, item in enumerate(items):
        at = key if isinstance(raw, str) else f"{key}[{i}]"
        if isinstance(item, str):
            v.string(item, at)
        if not isinstance(item, str) or not (item.endswith(".wav") or PROMPT_ID.fullmatch(item)):
            raise ConfigError(at, f"{item!r} is not a prompt id (group/name) or a .wav path")
        result.append(item)
    return tuple(result)


def _option_key(raw: object, key: str) -> str:
    # YAML reads an unquoted 1: as the integer 1.
    text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(text, str) or len(text) != 1 or text not in KEYS:
        raise ConfigError(v.join(key, raw), "an option key is one of 0-9, * and # (quote * and #)")
    return text


def _direct_dial(raw: Any, key: str) -> tuple[bool, str]:
    if raw is None or isinstance(raw, bool):
        return bool(raw), ""
    pattern = v.string(raw, key, what="a pattern")
    try:
        compile_pattern(pattern)
    except (ValueError, re.error) as e:
        raise ConfigError(key, f"{pattern!r} is not a pattern: {e}") from None
    return True, pattern


def parse_menu(raw: Any, key: str, name: str) -> Menu:
    """
    Validate one menu.

    :param raw: the menu's mapping.
    :param key: where it is, for errors (``menus.main``; ``""`` for an API body).
    :param name: the menu's name.
    :raises ConfigError: naming the offending key below ``key``.
    """
    m = v.mapping(raw, key, _MENU_KEYS)
    if "greeting" not in m:
        raise ConfigError(v.join(key, "greeting"), "required")
    greeting = _greeting(m["greeting"], v.join(key, "greeting"))
    options: dict[str, Action] = {}
    raw_options = m.get("options")
    if raw_options is not None:
        if not isinstance(raw_options, dict):
            raise ConfigError(v.join(key, "options"), f"must be a mapping of key to action, not {v.kind(raw_options)}")
        for raw_key, raw_action in raw_options.items():
            digit = _option_key(raw_key, v.join(key, "options"))
            if digit in options:
                raise ConfigError(v.join(key, f"options.{digit}"), "given twice")
            options[digit] = parse_action(raw_action, v.join(key, f"options.{digit}"))
    direct, pattern = _direct_dial(m.get("direct_dial"), v.join(key, "direct_dial"))
    on_fail = m.get("on_fail")
    operator = m.get("operator")
    return Menu(
        name=name,
        greeting=greeting,
        options=options,
        direct_dial=direct,
        direct_pattern=pattern,
        timeout=v.seconds(m.get("timeout"), v.join(key, "timeout"), 5.0, 0.5, 60),
        digit_timeout=v.seconds(m.get("digit_timeout"), v.join(key, "digit_timeout"), 3.0, 0.5, 20),
        retries=v.count(m.get("retries"), v.join(key, "retries"), 3, 1, 10),
        on_fail=Hangup() if on_fail is None else parse_action(on_fail, v.join(key, "on_fail")),
        operator="" if operator is None else v.number(operator, v.join(key, "operator")),
    )


def dump_menu(menu: Menu) -> dict[str, Any]:
    """The JSON-ready form of a menu; :func:`parse_menu` reads it back equal."""
    out: dict[str, Any] = {
        "greeting": list(menu.greeting),
        "options": {k: dump_action(a) for k, a in menu.options.items()},
        "direct_dial": menu.direct_pattern or menu.direct_dial,
        "timeout": menu.timeout,
        "digit_timeout": menu.digit_timeout,
        "retries": menu.retries,
        "on_fail": dump_action(menu.on_fail),
    }
    if menu.operator:
        out["operator"] = menu.operator
    return out
