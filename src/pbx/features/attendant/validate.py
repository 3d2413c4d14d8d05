"""
Small checks shared by the attendant's parsers.

Every error is a :class:`pbx.errors.ConfigError` whose key is a dotted path
relative to where parsing started: the feature section for the config file
(``menus.main.options.7.extension``), the request body for the API
(``options.7.extension``).
"""

from __future__ import annotations

import re
from typing import Any

from pbx.errors import ConfigError
from pbx.validation import text_problem

#: Menu and schedule names.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: Longest string a menu or schedule may hold (a .wav path is the longest).
MAX_STRING = 1024
#: Extension numbers and mailboxes an action may name.
NUMBER = re.compile(r"[0-9]{1,15}")


def join(prefix: str, key: object) -> str:
    """``prefix.key``, or just ``key`` at the top."""
    return f"{prefix}.{key}" if prefix else str(key)


def where(key: str) -> str:
    """The key to name in an error about a whole value: ``key`` or ``(body)``."""
    return key or "(body)"


def kind(value: Any) -> str:
    """How to name the type of a YAML/JSON value in an error."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def mapping(value: Any, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
    """
    A mapping with string keys, optionally only from ``allowed``.

    :raises ConfigError: for another type or an unknown key.
    """
    if not isinstance(value, dict):
        raise ConfigError(where(key), f"must be a mapping, not {kind(value)}")
    result = {str(k): v for k, v in value.items()}
    if allowed is not None:
        for name in sorted(set(result) - allowed):
            raise ConfigError(join(key, name), f"unknown key (known: {', '.join(sorted(allowed))})")
    return result


def string(value: Any, key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
    """
    A non-empty string, optionally matching ``pattern`` whole.

    :raises ConfigError: naming ``what`` the string should be.
    """
    if not isinstance(value, str):
        hint = " (quote it)" if isinstance(value, int | float) and not isinstance(value, bool) else ""
        raise ConfigError(where(key), f"must be a string, not {kind(value)}{hint}")
    # The core's text checks first (no line breaks or control characters):
    # the API hands these strings in too, and they reach logs and file names.
    problem = text_problem(value, MAX_STRING)
    if problem is not None:
        raise ConfigError(where(key), problem)
    if not value or (pattern is not None and not pattern.fullmatch(value)):
        raise ConfigError(where(key), f"{value!r} is not {what or 'valid'}")
    return value


def name(value: Any, key: str) -> str:
    """A menu or schedule name."""
    return string(value, key, NAME, "a name (letters, digits, - and _, up to 64)")


def number(value: Any, key: str) -> str:
    """An extension number or mailbox."""
    return string(value, key, NUMBER, "an extension number (digits)")


def seconds(value: Any, key: str, default: float, low: float, high: float) -> float:
    """
    A number of seconds in ``[low, high]``.

    :raises ConfigError: for another type or a value out of range.
    """
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number of seconds, not {kind(value)}")
    if not low <= value <= high:
        raise ConfigError(key, f"{value} is outside {low:g}..{high:g}")
    return float(value)


def count(value: Any, key: str, default: int, low: int, high: int) -> int:
    """
    A whole number in ``[low, high]``.

    :raises ConfigError: for another type or a value out of range.
    """
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be a whole number, not {kind(value)}")
    if not low <= value <= high:
        raise ConfigError(key, f"{value} is outside {low}..{high}")
    return value


def true(value: Any, key: str) -> None:
    """A flag that only makes sense as ``true`` (``{directory: true}``)."""
    if value is not True:
        raise ConfigError(key, "must be true")
