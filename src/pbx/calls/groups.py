"""
Ring groups: one number that rings several extensions.

The ``groups:`` section::

    groups:
      sales:
        number: "600"                      # dialled to reach the group
        members: ["1001", "1002", "1003"]
        strategy: ringall                  # or hunt: one member after another
        member_timeout: 15                 # hunt: seconds each member rings
        timeout: 60                        # seconds before the final destination
        final: {extension: "1000"}         # or {app: voicemail, args: {mailbox: "1000"}}

A dialplan route may also send a number to a group (``group: sales``).
Members log in and out of a group at run time (the API); who is logged out
is kept in the store (kind :data:`MEMBERSHIP_KIND`).  How the group rings
is :mod:`pbx.calls.ringers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import define, field, frozen

from pbx.calls.dialplan import ToApplication
from pbx.errors import ConfigError
from pbx.interfaces import IStore
from pbx.validation import extension_number_problem

STRATEGIES = ("ringall", "hunt")
#: Store documents: owner the group's name, key the member's number, data ``{"logged_in": bool}``.
MEMBERSHIP_KIND = "groups.member"
_KEYS = {"number", "members", "strategy", "member_timeout", "timeout", "final"}


@frozen
class RingGroup:
    """
    One ring group.

    :ivar final: where an unanswered call goes: an extension number, or an
        application; neither (both None) means the caller hears 480.
    """

    name: str
    number: str
    members: tuple[str, ...]
    strategy: str = "ringall"
    member_timeout: int = 15
    timeout: int = 60
    final_extension: str = ""
    final_application: ToApplication | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view (without who is logged in)."""
        final: dict[str, Any] = {}
        if self.final_extension:
            final = {"extension": self.final_extension}
        elif self.final_application is not None:
            final = {
                "app": self.final_application.name,
                "args": dict(self.final_application.args),
            }
        return {
            "name": self.name,
            "number": self.number,
            "members": list(self.members),
            "strategy": self.strategy,
            "member_timeout": self.member_timeout,
            "timeout": self.timeout,
            "final": final,
        }


def _number(value: Any, key: str) -> str:
    if (
        isinstance(value, bool)
        or not isinstance(value, str | int)
        or extension_number_problem(str(value))
    ):
        raise ConfigError(key, "must be a number of 2-10 digits (quote it)")
    return str(value)


def _seconds(value: Any, key: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
        raise ConfigError(key, "must be a whole number of seconds from 1 to 3600")
    return value


def _final(value: Any, key: str) -> tuple[str, ToApplication | None]:
    if value is None:
        return "", None
    if not isinstance(value, dict) or len({"extension", "app"} & set(value)) != 1:
        raise ConfigError(key, "must be {extension: N} or {app: NAME, args: {...}}")
    unknown = sorted(set(value) - {"extension", "app", "args"})
    if unknown or ("extension" in value and "args" in value):
        raise ConfigError(f"{key}.{(unknown or ['args'])[0]}", "unknown key")
    if "extension" in value:
        return _number(value["extension"], f"{key}.extension"), None
    args = value.get("args") or {}
    if (
        not isinstance(value["app"], str)
        or not value["app"]
        or not isinstance(args, dict)
    ):
        raise ConfigError(f"{key}.app", "needs an application name and an args mapping")
    return "", ToApplication(value["app"], {str(k): v for k, v in args.items()})


def parse_groups(raw: Any) -> dict[str, RingGroup]:
    """
    Validate the ``groups:`` section.

    :raises ConfigError: naming the key and the problem.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("groups", "must be a mapping of group name to settings")
    groups: dict[str, RingGroup] = {}
    numbers: dict[str, str] = {}
    for name, value in raw.items():
        key = f"groups.{name}"
        if (
            not isinstance(name, str)
            or not name.replace("_", "").replace("-", "").isalnum()
            or len(name) > 64
        ):
            raise ConfigError(
                key, "a group name is letters, digits, _ and - (at most 64)"
            )
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a mapping with number: and members:")
        unknown = sorted(set(map(str, value)) - _KEYS)
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]}",
                f"unknown key (known: {', '.join(sorted(_KEYS))})",
            )
        if "number" not in value:
            raise ConfigError(f"{key}.number", "required")
        number = _number(value["number"], f"{key}.number")
        if number in numbers:
            raise ConfigError(
                f"{key}.number",
                f"{number} is already the number of group {numbers[number]}",
            )
        numbers[number] = name
        members_raw = value.get("members")
        if not isinstance(members_raw, list) or not members_raw:
            raise ConfigError(f"{key}.members", "must be a list of extension numbers")
        members = tuple(
            _number(m, f"{key}.members[{i}]") for i, m in enumerate(members_raw)
        )
        if len(set(members)) != len(members):
            raise ConfigError(f"{key}.members", "names a member twice")
        strategy = value.get("strategy", "ringall")
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"{key}.strategy", f"must be one of {', '.join(STRATEGIES)}"
            )
        extension, application = _final(value.get("final"), f"{key}.final")
        groups[name] = RingGroup(
            name,
            number,
            members,
            strategy,
            member_timeout=_seconds(
                value.get("member_timeout"), f"{key}.member_timeout", 15
            ),
            timeout=_seconds(value.get("timeout"), f"{key}.timeout", 60),
            final_extension=extension,
            final_application=application,
        )
    return groups


@define(eq=False)
class GroupDirectory:
    """
    The configured groups and who of their members is logged out now.

    :ivar groups: by name.
    """

    groups: Mapping[str, RingGroup] = field(factory=dict)
    _logged_out: set[tuple[str, str]] = field(factory=set)

    def by_number(self, number: str) -> RingGroup | None:
        """The group dialled as ``number``, if any."""
        for group in self.groups.values():
            if group.number == number:
                return group
        return None

    def logged_in(self, group: RingGroup) -> list[str]:
        """The members of ``group`` who take its calls now, in the configured order."""
        return [m for m in group.members if (group.name, m) not in self._logged_out]

    def set_logged_in(self, name: str, member: str, logged_in: bool) -> None:
        """Log ``member`` in to or out of group ``name``."""
        if logged_in:
            self._logged_out.discard((name, member))
        else:
            self._logged_out.add((name, member))

    async def load(self, store: IStore) -> None:
        """Take the logins and logouts kept in ``store`` (at start)."""
        self.restore(await store.list_items(MEMBERSHIP_KIND))

    def restore(self, items: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Take the memberships stored (``(group, member, {"logged_in": ...})``) of configured members."""
        for name, member, data in items:
            group = self.groups.get(name)
            if group is not None and member in group.members:
                self.set_logged_in(name, member, bool(data.get("logged_in", True)))
