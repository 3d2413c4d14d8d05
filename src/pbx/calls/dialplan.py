"""
The dialplan: where a dialled number goes.

Routes are tried in order; the first whose pattern matches decides.  A
pattern is an exact number (``1001``), an Asterisk-style pattern (``_1XXX``:
``X`` any digit, ``Z`` 1-9, ``N`` 2-9, ``[1-5]`` a set, ``.`` one or more
characters, ``!`` zero or more), or a regular expression (``re:^9\\d+$``).
A route sends the call to an extension (``$number`` is the dialled number,
``$1``... the regex groups), to a feature application, out through trunks
(``trunk: [names]`` with ``strip:``/``prepend:``, see :mod:`pbx.trunks`), to a
ring group (:mod:`pbx.calls.groups`), or hangs up with a SIP status.  A number
no route matches reaches the extension of that number
if there is one; anything else is ``404``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from pbx.errors import ConfigError


@frozen
class ToExtension:
    """Ring an extension."""

    number: str


@frozen
class ToApplication:
    """Hand the call to a dialplan application (voicemail, echo, ...)."""

    name: str
    args: Mapping[str, Any]


@frozen
class HangUp:
    """Refuse the call with a SIP status."""

    status: int
    reason: str = ""


@frozen
class ToGroup:
    """Ring a ring group (:mod:`pbx.calls.groups`)."""

    name: str


@frozen
class ToTrunks:
    """
    Send the call out through trunks, tried in order (least-cost routing
    may reorder them): the dialled number without its first ``strip``
    digits, after ``prepend``.

    :ivar caller_id: the number this route presents; "" leaves it to the
        extension's or the trunk's.
    :ivar weighted: share calls among equally priced trunks by their weights.
    :ivar emergency: an emergency call (never refused for a full trunk).
    :ivar route_name: what policies call the route (``name:``, else its
        ``match:`` pattern): call events carry it as ``route``.
    :ivar moh: the music-on-hold class the outside party hears when held
        ("": the trunk's, else the holding extension's; :mod:`pbx.trunks.moh`).
    """

    trunks: tuple[str, ...]
    strip: int = 0
    prepend: str = ""
    caller_id: str = ""
    weighted: bool = False
    emergency: bool = False
    route_name: str = ""
    moh: str = ""


Action = ToExtension | ToApplication | HangUp | ToGroup | ToTrunks


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Turn an exact, ``_``-style or ``re:`` pattern into a regular expression."""
    if pattern.startswith("re:"):
        return re.compile(pattern[3:])
    if not pattern.startswith("_"):
        return re.compile(re.escape(pattern) + r"\Z")
    out = []
    i, text = 0, pattern[1:]
    while i < len(text):
        c = text[i]
        if c == "X":
            out.append("[0-9]")
        elif c == "Z":
            out.append("[1-9]")
        elif c == "N":
            out.append("[2-9]")
        elif c == ".":
            out.append(".+")
        elif c == "!":
            out.append(".*")
        elif c == "[":
            end = text.find("]", i)
            if end < 0:
                raise ValueError("unclosed [ in pattern")
            body = text[i + 1 : end]
            if not re.fullmatch(r"[0-9\-]+", body):
                raise ValueError("a [set] holds digits and ranges only")
            out.append(f"[{body}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


@frozen
class Route:
    """One dialplan entry."""

    pattern: str
    regex: re.Pattern[str]
    action: Action
    #: Whether callers that did not authenticate may use this route.
    public: bool = False


@frozen
class Dialplan:
    """The routes, in order."""

    routes: tuple[Route, ...] = ()

    def resolve(self, number: str, *, authenticated: bool) -> Action | None:
        """
        The action for ``number``; None means "the extension of that number,
        if any".  A route that is not public is skipped for unauthenticated
        callers.
        """
        for route in self.routes:
            m = route.regex.match(number)
            if m is None or (not authenticated and not route.public):
                continue
            action = route.action
            if isinstance(action, ToExtension):
                target = action.number.replace("$number", number)
                for i, group in enumerate(m.groups(), 1):
                    target = target.replace(f"${i}", group or "")
                return ToExtension(target)
            return action
        return None


_TRUNK_KEYS = {"trunk", "strip", "prepend", "caller_id", "share", "name", "moh"}


def _to_trunks(entry: dict[str, Any], key: str) -> ToTrunks:
    """
    ``trunk: NAME | [NAMES], strip: N, prepend: DIGITS, caller_id: +E164,
    share: weighted, name: NAME, moh: CLASS`` (whether ``moh:`` names a
    class is checked with the ``moh:`` section, :mod:`pbx.trunks.moh`).
    """
    names = entry["trunk"]
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{key}.trunk", "needs a trunk name or a list of them")
    strip = entry.get("strip", 0)
    if isinstance(strip, bool) or not isinstance(strip, int) or not 0 <= strip <= 20:
        raise ConfigError(f"{key}.strip", "must be a number of digits, 0-20")
    prepend = entry.get("prepend", "")
    if not isinstance(prepend, str | int) or isinstance(prepend, bool) or not re.fullmatch(r"\+?[0-9]*", str(prepend)):
        raise ConfigError(f"{key}.prepend", "must be digits, an optional + first")
    caller_id = entry.get("caller_id", "")
    if not isinstance(caller_id, str) or (caller_id and not re.fullmatch(r"\+[1-9][0-9]{1,14}", caller_id)):
        raise ConfigError(f"{key}.caller_id", "must be an E.164 number (+ and up to 15 digits)")
    share = entry.get("share", "ordered")
    if share not in ("ordered", "weighted"):
        raise ConfigError(f"{key}.share", "must be ordered or weighted")
    name, moh = entry.get("name", str(entry.get("match", ""))), entry.get("moh", "")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key}.name", "must be a name for the route")
    if not isinstance(moh, str):
        raise ConfigError(f"{key}.moh", "must be the name of a class in moh.classes")
    return ToTrunks(tuple(names), strip, str(prepend), caller_id, share == "weighted", route_name=name, moh=moh)


def parse_dialplan(raw: Any) -> Dialplan:
    """
    Validate the ``dialplan:`` section: a list of
    ``{match: PATTERN, extension: N | app: NAME [args: {...}] | hangup: STATUS | group: NAME
    | trunk: [NAMES] [strip: N, prepend: DIGITS, caller_id: E164, share: weighted], public: BOOL}``.

    :raises ConfigError: naming the entry and the problem.
    """
    if raw is None:
        return Dialplan()
    if not isinstance(raw, list):
        raise ConfigError("dialplan", "must be a list of routes")
    routes = []
    for i, entry in enumerate(raw):
        key = f"dialplan[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(key, "must be a mapping with match: and one action")
        unknown = set(entry) - {"match", "extension", "app", "args", "hangup", "reason", "public", "group",
                                *_TRUNK_KEYS}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
        pattern = entry.get("match")
        if not isinstance(pattern, str | int) or isinstance(pattern, bool) or not str(pattern):
            raise ConfigError(f"{key}.match", "needs a number or pattern")
        pattern = str(pattern)
        try:
            regex = compile_pattern(pattern)
        except (re.error, ValueError) as e:
            raise ConfigError(f"{key}.match", f"bad pattern {pattern!r}: {e}") from None
        actions = [k for k in ("extension", "app", "hangup", "group", "trunk") if k in entry]
        if len(actions) != 1:
            raise ConfigError(key, "needs exactly one of extension:, app:, hangup:, group: or trunk:")
        if "trunk" not in entry and set(entry) & _TRUNK_KEYS:
            raise ConfigError(f"{key}.{sorted(set(entry) & _TRUNK_KEYS)[0]}", "goes with trunk: only")
        action: Action
        if "trunk" in entry:
            action = _to_trunks(entry, key)
        elif "extension" in entry:
            target = str(entry["extension"])
            if not re.fullmatch(r"[0-9]{2,10}|\$number|\$[1-9]", target):
                raise ConfigError(f"{key}.extension", f"{target!r} is not an extension number, $number or $1-$9")
            # $1-$9 name groups of a re: pattern: without such a group the
            # target would stay the literal text "$1" and every call get 404.
            if target[:1] == "$" and target != "$number" and int(target[1:]) > regex.groups:
                raise ConfigError(f"{key}.extension", f"{target} needs a re: pattern with that many groups")
            action = ToExtension(target)
        elif "app" in entry:
            args = entry.get("args") or {}
            if not isinstance(entry["app"], str) or not isinstance(args, dict):
                raise ConfigError(f"{key}.app", "needs an application name and an args mapping")
            action = ToApplication(entry["app"], args)
        elif "group" in entry:
            # Whether the group exists is checked with the groups: section (pbx.config).
            if not isinstance(entry["group"], str) or not entry["group"]:
                raise ConfigError(f"{key}.group", "needs a group name")
            action = ToGroup(entry["group"])
        else:
            status = entry["hangup"]
            if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 699:
                raise ConfigError(f"{key}.hangup", "must be a SIP status 400-699")
            action = HangUp(status, str(entry.get("reason", "")))
        public = entry.get("public", False)
        if not isinstance(public, bool):
            raise ConfigError(f"{key}.public", "must be true or false")
        routes.append(Route(pattern, regex, action, public))
    return Dialplan(tuple(routes))
