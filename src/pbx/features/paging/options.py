"""
The options of the ``paging`` feature (``features: paging:`` in the
configuration), validated into one frozen :class:`PagingOptions`.

::

    features:
      paging:
        intercom_prefix: "*80"            # *80 + extension: an intercom call
        auto_answer: [call_info, polycom] # the default for groups and intercom
        ring_timeout: 10                  # seconds a member phone may take to answer
        multicast_interface: ""           # the address multicast leaves from ("": the route's)
        multicast_ttl: 1
        multicast_loop: true              # listeners on this host hear it too
        groups:
          warehouse:
            number: "700"                 # what the pager dials (or a route's args: {group: warehouse})
            members: ["1001", "1002"]
            multicast: "239.1.1.1:5000"   # optional: RTP to this group address too
            codec: pcmu                   # of the multicast stream: pcmu, pcma or g722
            auto_answer: [call_info, polycom, yealink, grandstream]
            beep: true                    # members hear a beep before the pager
            busy: skip                    # a member already in a call: skip (or: call)
            pagers: ["1001", "1009"]      # who may page the group (default: anyone who may dial it)

Errors name the key relative to the feature's section
(``groups.warehouse.members[1]``); the plugin loader puts
``features.paging.`` in front.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from pbx.errors import ConfigError
from pbx.features.paging.autoanswer import DEFAULT_STYLES, STYLES
from pbx.validation import extension_number_problem

__all__ = ["GroupOptions", "PagingOptions", "parse_options"]

_FEATURE_KEYS = frozenset(
    {
        "groups",
        "intercom_prefix",
        "auto_answer",
        "ring_timeout",
        "multicast_interface",
        "multicast_ttl",
        "multicast_loop",
    }
)
_GROUP_KEYS = frozenset(
    {"number", "members", "multicast", "codec", "auto_answer", "beep", "busy", "pagers"}
)
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_NUMBER = re.compile(r"[0-9*#]{1,20}")
_PREFIX = re.compile(r"[0-9*#]{1,10}")
#: The codecs a multicast page may be sent in.
CODECS = ("pcmu", "pcma", "g722")
#: The most members one group may ring at once.
MAX_MEMBERS = 200


@frozen
class GroupOptions:
    """How one page group is configured."""

    name: str
    number: str
    """What the pager dials."""
    members: tuple[str, ...]
    """The extensions called with auto-answer."""
    multicast: tuple[str, int] | None = None
    """(group address, port) the pager's audio is also sent to, or None."""
    codec: str = "pcmu"
    """The codec of the multicast stream."""
    auto_answer: tuple[str, ...] = DEFAULT_STYLES
    """The auto-answer header styles of the members' INVITEs (:data:`.autoanswer.STYLES`)."""
    beep: bool = True
    """Members hear a beep before the pager's audio."""
    call_busy: bool = False
    """Call members already in a call too (``busy: call``); by default they are skipped."""
    pagers: frozenset[str] = frozenset()
    """The extensions that may page this group; empty: anyone the dialplan lets dial it."""


@frozen
class PagingOptions:
    """Every page group, and the intercom."""

    groups: Mapping[str, GroupOptions] = field(factory=dict)
    intercom_prefix: str = "*80"
    auto_answer: tuple[str, ...] = DEFAULT_STYLES
    """The intercom's auto-answer styles (and the groups' default)."""
    ring_timeout: float = 10.0
    multicast_interface: str = ""
    multicast_ttl: int = 1
    multicast_loop: bool = True

    def group_by_number(self, number: str) -> GroupOptions | None:
        """The group whose number is ``number``, or None."""
        for group in self.groups.values():
            if group.number == number:
                return group
        return None


def _styles(raw: Any, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return default
    if not isinstance(raw, list) or not raw:
        raise ConfigError(key, f"must be a non-empty list of: {', '.join(STYLES)}")
    for i, style in enumerate(raw):
        if style not in STYLES:
            raise ConfigError(
                f"{key}[{i}]", f"unknown auto-answer style; one of: {', '.join(STYLES)}"
            )
    return tuple(dict.fromkeys(raw))


def _text(value: Any) -> Any:
    """A YAML integer (``700``) is taken as its digits."""
    return (
        str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    )


def parse_multicast(raw: Any, key: str) -> tuple[str, int]:
    """
    ``"239.1.1.1:5000"``: an IPv4 multicast address and a port.

    :raises ConfigError: naming ``key``.
    """
    if not isinstance(raw, str) or raw.count(":") != 1:
        raise ConfigError(key, "must be ADDRESS:PORT, e.g. 239.1.1.1:5000")
    host, _, port_text = raw.partition(":")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ConfigError(key, f"{host!r} is not an IPv4 address") from None
    if not address.is_multicast:
        raise ConfigError(key, f"{host} is not a multicast address (224.0.0.0/4)")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(key, "the port must be 1 to 65535")
    return str(address), int(port_text)


def _extensions(raw: Any, key: str) -> list[str]:
    """A list of extension numbers (YAML integers taken as their digits)."""
    if not isinstance(raw, list):
        raise ConfigError(key, "must be a list of extension numbers")
    checked = []
    for i, member in enumerate(raw):
        member = _text(member)
        problem = extension_number_problem(member)
        if problem is not None:
            raise ConfigError(f"{key}[{i}]", problem)
        checked.append(member)
    return checked


def parse_group(
    name: str, raw: Any, where: str, default_styles: tuple[str, ...]
) -> GroupOptions:
    """
    Validate one page group.

    :raises ConfigError: naming the first bad key.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "must be a mapping with number: and members:")
    unknown = sorted(str(k) for k in raw if k not in _GROUP_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", "unknown key")
    number = _text(raw.get("number"))
    if not isinstance(number, str) or not _NUMBER.fullmatch(number):
        raise ConfigError(f"{where}.number", "must be 1 to 20 digits (or * and #)")
    members = raw.get("members")
    if not isinstance(members, list) or not members:
        raise ConfigError(
            f"{where}.members", "must be a non-empty list of extension numbers"
        )
    if len(members) > MAX_MEMBERS:
        raise ConfigError(f"{where}.members", f"at most {MAX_MEMBERS} members")
    checked = _extensions(members, f"{where}.members")
    pagers = _extensions(raw.get("pagers", []), f"{where}.pagers")
    busy = raw.get("busy", "skip")
    if busy not in ("skip", "call"):
        raise ConfigError(f"{where}.busy", "must be skip or call")
    multicast = None
    if raw.get("multicast") not in (None, ""):
        multicast = parse_multicast(raw["multicast"], f"{where}.multicast")
    codec = raw.get("codec", "pcmu")
    if codec not in CODECS:
        raise ConfigError(f"{where}.codec", f"must be one of: {', '.join(CODECS)}")
    beep = raw.get("beep", True)
    if not isinstance(beep, bool):
        raise ConfigError(f"{where}.beep", "must be true or false")
    return GroupOptions(
        name=name,
        number=number,
        members=tuple(dict.fromkeys(checked)),
        multicast=multicast,
        codec=codec,
        auto_answer=_styles(
            raw.get("auto_answer"), f"{where}.auto_answer", default_styles
        ),
        beep=beep,
        call_busy=busy == "call",
        pagers=frozenset(pagers),
    )


def parse_options(raw: Any) -> PagingOptions:
    """
    Validate the feature's section.

    :raises ConfigError: naming the first bad key, relative to the section.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("paging", "must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in _FEATURE_KEYS)
    if unknown:
        raise ConfigError(unknown[0], "unknown key")
    prefix = _text(raw.get("intercom_prefix", "*80"))
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigError("intercom_prefix", "must be 1 to 10 digits (or * and #)")
    styles = _styles(raw.get("auto_answer"), "auto_answer", DEFAULT_STYLES)
    timeout = raw.get("ring_timeout", 10)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 1 <= timeout <= 120
    ):
        raise ConfigError("ring_timeout", "must be a number of seconds from 1 to 120")
    interface = raw.get("multicast_interface", "")
    if interface:
        try:
            interface = str(ipaddress.IPv4Address(interface))
        except ValueError:
            raise ConfigError(
                "multicast_interface", "must be an IPv4 address of this host"
            ) from None
    ttl = raw.get("multicast_ttl", 1)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 255:
        raise ConfigError("multicast_ttl", "must be a whole number from 0 to 255")
    loop = raw.get("multicast_loop", True)
    if not isinstance(loop, bool):
        raise ConfigError("multicast_loop", "must be true or false")
    groups_raw = raw.get("groups") or {}
    if not isinstance(groups_raw, Mapping):
        raise ConfigError("groups", "must be a mapping of group name to group")
    groups: dict[str, GroupOptions] = {}
    numbers: dict[str, str] = {}
    for key, value in groups_raw.items():
        name = _text(key)
        if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
            raise ConfigError(
                f"groups.{key}", "a group name is 1 to 40 letters, digits or _.-"
            )
        group = parse_group(name, value, f"groups.{name}", styles)
        if group.number in numbers:
            raise ConfigError(
                f"groups.{name}.number",
                f"is also group {numbers[group.number]}'s number",
            )
        if group.number.startswith(prefix):
            raise ConfigError(
                f"groups.{name}.number", f"starts with the intercom prefix {prefix}"
            )
        numbers[group.number] = name
        groups[name] = group
    return PagingOptions(
        groups=groups,
        intercom_prefix=prefix,
        auto_answer=styles,
        ring_timeout=float(timeout),
        multicast_interface=interface,
        multicast_ttl=ttl,
        multicast_loop=loop,
    )
