"""
The one set of checks for strings that come from outside (the REST API, the
configuration file) and can end up in a SIP header, a log line or a file name.

Each check takes the value and returns a short phrase saying what is wrong
with it, or None when it is acceptable; callers attach the field's name: the
API answers ``422 {"error": "<field>: <problem>"}``, the configuration loader
raises ``ConfigError(<key>, <problem>)``.  Pure: no Twisted, no I/O.

What every text refuses: control characters (a CR or LF would split a SIP
header or forge a log line, RFC 3261 §7.3.1), lone surrogates (they cannot
be encoded as UTF-8, so nothing could store or send them), line and
paragraph separators, and the bidirectional overrides that make a log line
read differently from what it holds.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

__all__ = [
    "MAX_NAME_LENGTH",
    "admin_username_problem",
    "display_name_problem",
    "email_problem",
    "extension_number_problem",
    "json_problem",
    "pin_format_problem",
    "printable",
    "text_problem",
]

#: Longest display name or caller ID, in characters.
MAX_NAME_LENGTH = 100
#: RFC 5321 §4.5.3.1.3: a path holds at most 256 octets, so an address at most 254.
MAX_EMAIL_LENGTH = 254
#: Deepest nesting of arrays and objects a JSON body may have.
MAX_JSON_DEPTH = 16

_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Unicode bidirectional embeddings, overrides and isolates (UAX #9).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_EXTENSION_NUMBER = re.compile(r"[0-9]{2,10}")
_ADMIN_USERNAME = re.compile(r"[A-Za-z0-9_.@\-]{1,64}")
_PIN = re.compile(r"[0-9]{4,12}")
# Local part and domain without white space, quotes or angle brackets; one @.
_EMAIL = re.compile(r"[^@\s\"<>(),;:\\\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?")


def _bad_character(value: str) -> str | None:
    for c in value:
        if c in _BIDI_CONTROLS:
            return f"holds the direction control U+{ord(c):04X}"
        category = unicodedata.category(c)
        if category in _REFUSED_CATEGORIES:
            if c in "\r\n":
                return "holds a line break"
            if category == "Cs":
                return "holds a lone surrogate (not valid Unicode text)"
            return f"holds the control character U+{ord(c):04X}"
    return None


def printable(text: str) -> str:
    """
    ``text`` with every character :func:`text_problem` refuses made a space:
    for values stored before these checks existed, on their way into a header.
    """
    if _bad_character(text) is None:
        return text
    return "".join(
        " " if c in _BIDI_CONTROLS or unicodedata.category(c) in _REFUSED_CATEGORIES else c for c in text
    )


def text_problem(value: Any, max_length: int) -> str | None:
    """
    Say what makes ``value`` unfit as a line of text.

    :param value: the candidate (anything: it comes from JSON or YAML).
    :param max_length: most characters accepted.
    :returns: a short phrase, or None when it is acceptable.
    """
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    return _bad_character(value)


def display_name_problem(value: Any) -> str | None:
    """
    Check an extension's name or caller ID: it is put in From and
    P-Asserted-Identity as a quoted display name (RFC 3261 §25.1).
    """
    return text_problem(value, MAX_NAME_LENGTH)


def email_problem(value: Any) -> str | None:
    """Check an e-mail address (empty means none): ``local@domain``, at most 254 characters."""
    problem = text_problem(value, MAX_EMAIL_LENGTH)
    if problem is not None or not value:
        return problem
    if not _EMAIL.fullmatch(value):
        return "is not an e-mail address"
    return None


def extension_number_problem(value: Any) -> str | None:
    """Check an extension number: 2-10 ASCII digits."""
    if not isinstance(value, str) or not _EXTENSION_NUMBER.fullmatch(value):
        return "must be 2-10 digits"
    return None


def admin_username_problem(value: Any) -> str | None:
    """Check an API administrator's user name: 1-64 letters, digits or ``_.@-``."""
    if not isinstance(value, str) or not _ADMIN_USERNAME.fullmatch(value):
        return "must be 1-64 letters, digits or _.@-"
    return None


def pin_format_problem(value: Any) -> str | None:
    """Check the form of a PIN: 4-12 ASCII digits (its strength is :func:`pbx.security.passwords.pin_problem`)."""
    if not isinstance(value, str) or not _PIN.fullmatch(value):
        return "must be 4-12 digits"
    return None


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """
    Check a decoded JSON document: nesting at most ``max_depth`` deep, and
    every string (keys too) valid Unicode.

    :returns: a short phrase, or None when it is acceptable.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"is nested deeper than {max_depth} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str) and not _encodable(item):
            return "holds a lone surrogate (not valid Unicode text)"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
