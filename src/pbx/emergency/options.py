"""
The ``emergency:`` section of the configuration, validated into frozen values.

```yaml
emergency:
  trunk: [carrier, backup]          # the emergency trunk order
  dial: ["911", "933"]              # numbers that are emergency calls
  test_numbers: ["933"]             # of those, address read-back tests: routed, audited, nobody told
  prefixes: ["9"]                   # outside-line prefixes: 9911 is 911 too
  callback_minutes: 60              # how long a PSAP callback reaches the caller
  pidf_element: tuple               # or device (RFC 5491 §3.4)
  notify:
    email: ["security@example.com"]
    smtp: {sender: "pbx@example.com", server: "127.0.0.1:25"}
  locations:
    hq-2: {country: US, A1: CA, A3: "San Jose", RD: "Main", STS: "St", HNO: "100", FLR: "2", ROOM: "210"}
  extensions: {"1000": hq-2}
  subnets: {"10.2.0.0/16": hq-2}
```

A location is a civic address whose keys are the element names of RFC 5139
§4 (``country``, ``A1`` ... ``A6``, ``RD``, ``HNO``, ``FLR``, ``ROOM`` ...);
any other key is an error naming it.  ``notify.smtp`` takes the keys of the
voicemail mailer's ``email:`` mapping (:func:`pbx.features.voicemail.mailer.parse_email_options`).

Pure: no Twisted.  Every problem is a :class:`~pbx.errors.ConfigError`
naming the dotted key (``emergency.locations.hq-2.FLOOR``).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from pbx.errors import ConfigError
from pbx.features.voicemail.mailer import EmailConfig, parse_email_options
from pbx.validation import email_problem, extension_number_problem

__all__ = [
    "CIVIC_ELEMENTS",
    "CivicAddress",
    "EmergencyConfig",
    "parse_civic_address",
    "parse_emergency",
]

#: The civic address elements of RFC 5139 §4, in the order its schema requires.
CIVIC_ELEMENTS = (
    "country",
    "A1",
    "A2",
    "A3",
    "A4",
    "A5",
    "A6",
    "PRM",
    "PRD",
    "RD",
    "STS",
    "POD",
    "POM",
    "RDSEC",
    "RDBR",
    "RDSUBBR",
    "HNO",
    "HNS",
    "LMK",
    "LOC",
    "FLR",
    "NAM",
    "PC",
    "BLD",
    "UNIT",
    "ROOM",
    "SEAT",
    "PLC",
    "PCN",
    "POBOX",
    "ADDCODE",
)
#: Longest value of one civic element, in characters.
MAX_ELEMENT = 200
#: A location's name: what the API puts in its path, too.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: A dialled emergency number or outside-line prefix.
_DIGITS = re.compile(r"[0-9*#]{1,8}")
PIDF_ELEMENTS = ("tuple", "device")
#: The keys of ``notify.smtp``: how to reach the server (the voicemail
#: mailer's other keys, attachment and subject, say nothing here).
SMTP_KEYS = {
    "sender",
    "server",
    "starttls",
    "verify_certificate",
    "username",
    "password",
    "timeout",
}


@frozen
class CivicAddress:
    """
    A dispatchable location: civic address elements (RFC 5139 names) and
    their values, in the schema's order.
    """

    elements: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str = "") -> str:
        """The value of element ``name``, or ``default``."""
        return dict(self.elements).get(name, default)

    def as_dict(self) -> dict[str, str]:
        """The elements as a JSON-ready mapping."""
        return dict(self.elements)

    def describe(self) -> str:
        """One line a person reads: house number, street, building, floor, room, town, region, country."""
        d = dict(self.elements)
        street = " ".join(
            d[k] for k in ("HNO", "HNS", "PRD", "RD", "STS", "POD") if d.get(k)
        )
        parts = [
            d.get("NAM", ""),
            street,
            f"building {d['BLD']}" if d.get("BLD") else "",
            f"floor {d['FLR']}" if d.get("FLR") else "",
            f"unit {d['UNIT']}" if d.get("UNIT") else "",
            f"room {d['ROOM']}" if d.get("ROOM") else "",
            f"seat {d['SEAT']}" if d.get("SEAT") else "",
            d.get("LOC", ""),
            d.get("A3", ""),
            " ".join(d[k] for k in ("A1", "PC") if d.get(k)),
            d.get("country", ""),
        ]
        return ", ".join(p for p in parts if p)


@frozen
class EmergencyConfig:
    """The validated ``emergency:`` section (defaults: 911 and 933, prefix 9, nobody told)."""

    trunks: tuple[str, ...] = ()
    dial: tuple[str, ...] = ("911", "933")
    test_numbers: tuple[str, ...] = ("933",)
    prefixes: tuple[str, ...] = ("9",)
    callback_minutes: int = 60
    pidf_element: str = "tuple"
    notify_email: tuple[str, ...] = ()
    smtp: EmailConfig | None = None
    locations: Mapping[str, CivicAddress] = {}
    extensions: Mapping[str, str] = {}
    #: (network, location name), most specific network first.
    subnets: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = ()


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "empty",
    }.get(type(value), type(value).__name__)


def _mapping(value: Any, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping, not {_kind(value)}")
    if allowed is not None:
        for k in value:
            if str(k) not in allowed:
                raise ConfigError(f"{key}.{k}", "unknown key")
    return {str(k): v for k, v in value.items()}


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list, not {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ConfigError(f"{key}[{i}]", f"must be a string, not {_kind(item)}")
        out.append(str(item))
    return tuple(out)


def _element_problem(value: str) -> str | None:
    if not value.strip():
        return "is empty"
    if len(value) > MAX_ELEMENT:
        return f"is longer than {MAX_ELEMENT} characters"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in value):
        return "contains control characters"
    return None


def parse_civic_address(raw: Any, key: str) -> CivicAddress:
    """
    One civic address: a mapping of RFC 5139 element names to text.

    :param key: the dotted key of the mapping, named in errors.
    :raises ConfigError: for an unknown element name, a value that is not
        short one-line text, a ``country`` that is not two letters (ISO
        3166 alpha-2, RFC 5139 §3.1) or an address with no element.
    """
    given = _mapping(raw, key)
    if not given:
        raise ConfigError(
            key, "needs at least a country and one more element (RFC 5139 names)"
        )
    for name in given:
        if name not in CIVIC_ELEMENTS:
            raise ConfigError(
                f"{key}.{name}",
                f"unknown civic address element; use {', '.join(CIVIC_ELEMENTS)}",
            )
    values: dict[str, str] = {}
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(f"{key}.{name}", f"must be a string, not {_kind(value)}")
        text = str(value)
        problem = _element_problem(text)
        if problem:
            raise ConfigError(f"{key}.{name}", problem)
        values[name] = text.strip()
    country = values.get("country", "")
    if not re.fullmatch(r"[A-Za-z]{2}", country):
        raise ConfigError(
            f"{key}.country", "required: a two-letter ISO 3166 code (US, CA, DE ...)"
        )
    values["country"] = country.upper()
    if len(values) < 2:
        raise ConfigError(key, "needs more than a country to be dispatchable")
    return CivicAddress(
        tuple((name, values[name]) for name in CIVIC_ELEMENTS if name in values)
    )


def location_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a location's name, or None."""
    if not _NAME.fullmatch(name):
        return "a location name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    return None


def parse_emergency(raw: Any, key: str = "emergency") -> EmergencyConfig:
    """
    Validate the ``emergency:`` mapping.

    :param raw: the mapping as YAML gave it (None: the defaults).
    :param key: its dotted key.
    :raises ConfigError: naming the first bad key and its problem.
    """
    e = _mapping(
        raw,
        key,
        {
            "trunk",
            "dial",
            "test_numbers",
            "prefixes",
            "callback_minutes",
            "pidf_element",
            "notify",
            "locations",
            "extensions",
            "subnets",
        },
    )
    d = EmergencyConfig()
    trunks = _strings(e.get("trunk"), f"{key}.trunk")
    dial = _strings(e.get("dial", list(d.dial)), f"{key}.dial")
    if not dial:
        raise ConfigError(f"{key}.dial", "must list at least one number (911)")
    prefixes = _strings(e.get("prefixes", list(d.prefixes)), f"{key}.prefixes")
    for name, values in (("dial", dial), ("prefixes", prefixes)):
        for i, value in enumerate(values):
            if not _DIGITS.fullmatch(value):
                raise ConfigError(f"{key}.{name}[{i}]", f"{value!r} is not 1-8 digits")
    tests = _strings(
        e.get("test_numbers", [n for n in d.test_numbers if n in dial]),
        f"{key}.test_numbers",
    )
    for i, value in enumerate(tests):
        if value not in dial:
            raise ConfigError(
                f"{key}.test_numbers[{i}]", f"{value!r} is not one of emergency.dial"
            )
    minutes = e.get("callback_minutes", d.callback_minutes)
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int)
        or not 1 <= minutes <= 24 * 60
    ):
        raise ConfigError(
            f"{key}.callback_minutes",
            "must be a whole number of minutes from 1 to 1440",
        )
    element = e.get("pidf_element", d.pidf_element)
    if element not in PIDF_ELEMENTS:
        raise ConfigError(
            f"{key}.pidf_element", f"must be one of {', '.join(PIDF_ELEMENTS)}"
        )
    notify = _mapping(e.get("notify"), f"{key}.notify", {"email", "smtp"})
    emails = _strings(notify.get("email"), f"{key}.notify.email")
    for i, address in enumerate(emails):
        problem = email_problem(address) if address else "is empty"
        if problem:
            raise ConfigError(f"{key}.notify.email[{i}]", problem)
    smtp = None
    if notify.get("smtp") is not None:
        smtp = parse_email_options(
            _mapping(notify["smtp"], f"{key}.notify.smtp", SMTP_KEYS),
            f"{key}.notify.smtp",
        )
    elif emails:
        raise ConfigError(
            f"{key}.notify.smtp",
            "required with notify.email: the sender and the SMTP server",
        )
    locations: dict[str, CivicAddress] = {}
    for name, value in _mapping(e.get("locations"), f"{key}.locations").items():
        problem = location_name_problem(name)
        if problem:
            raise ConfigError(f"{key}.locations.{name}", problem)
        locations[name] = parse_civic_address(value, f"{key}.locations.{name}")

    def known(name: Any, where: str) -> str:
        if not isinstance(name, str) or name not in locations:
            raise ConfigError(where, f"no location {name!r} in {key}.locations")
        return name

    extensions: dict[str, str] = {}
    for number, name in _mapping(e.get("extensions"), f"{key}.extensions").items():
        if extension_number_problem(number):
            raise ConfigError(
                f"{key}.extensions.{number}", "an extension number is 2-10 digits"
            )
        extensions[number] = known(name, f"{key}.extensions.{number}")
    subnets = []
    for text, name in _mapping(e.get("subnets"), f"{key}.subnets").items():
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ConfigError(
                f"{key}.subnets.{text}", "is not an address or network (CIDR)"
            ) from None
        subnets.append((network, known(name, f"{key}.subnets.{text}")))
    subnets.sort(key=lambda item: -item[0].prefixlen)
    return EmergencyConfig(
        trunks=trunks,
        dial=dial,
        test_numbers=tests,
        prefixes=prefixes,
        callback_minutes=minutes,
        pidf_element=element,
        notify_email=emails,
        smtp=smtp,
        locations=locations,
        extensions=extensions,
        subnets=tuple(subnets),
    )
