"""
Follow-me: an extension's call rings the user's other numbers too.

The ``follow_me:`` section::

    follow_me:
      "1001":
        after: 10                  # seconds the extension rings alone
        numbers: ["1002", "0049301234567"]
        mode: also                 # also: they ring with the extension; only: instead of it
        timeout: 20                # seconds the other numbers ring (default: calls.ring_timeout)
        confirm: false             # "press 1 to accept" on the other numbers

A number goes through the dialplan as if the user had dialled it: one that
reaches an extension rings that extension's phones (its own forwards do not
apply, its do-not-disturb does); one routed elsewhere (an outside line) is
not rung by this release and is logged.  When nobody answers, the call goes
on as a call to the extension would: its forwards, then its diverters
(voicemail).  How the numbers ring is :class:`pbx.calls.ringers.FollowMeRinger`.
"""

from __future__ import annotations

from attrs import frozen

from pbx.errors import ConfigError
from pbx.validation import extension_number_problem

MODES = ("also", "only")
_KEYS = {"after", "numbers", "mode", "timeout", "confirm"}
#: Dialled numbers a follow-me entry may name: digits, with a leading + or *.
_MAX_DIGITS = 32


@frozen
class FollowMe:
    """
    One extension's follow-me.

    :ivar timeout: seconds the other numbers ring; 0 means ``calls.ring_timeout``.
    """

    number: str
    numbers: tuple[str, ...]
    after: int = 10
    mode: str = "also"
    timeout: int = 0
    confirm: bool = False


def _dialled(value: object, key: str) -> str:
    text = (
        str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    )
    if (
        not isinstance(text, str)
        or not text
        or len(text) > _MAX_DIGITS
        or not (text.lstrip("+*").isdigit() and text.isascii())
    ):
        raise ConfigError(
            key, "must be a number to dial (digits, optionally after + or *)"
        )
    return text


def parse_follow_me(raw: object) -> dict[str, FollowMe]:
    """
    Validate the ``follow_me:`` section: extension number -> follow-me.

    :raises ConfigError: naming the key and the problem.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "follow_me", "must be a mapping of extension number to settings"
        )
    result = {}
    for number, value in raw.items():
        key = f"follow_me.{number}"
        if isinstance(number, bool) or extension_number_problem(str(number)):
            raise ConfigError(key, "an extension number is 2-10 digits")
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a mapping with after: and numbers:")
        unknown = sorted(set(map(str, value)) - _KEYS)
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]}",
                f"unknown key (known: {', '.join(sorted(_KEYS))})",
            )
        numbers = value.get("numbers")
        if not isinstance(numbers, list) or not numbers:
            raise ConfigError(f"{key}.numbers", "must be a list of numbers")
        dialled = tuple(
            _dialled(n, f"{key}.numbers[{i}]") for i, n in enumerate(numbers)
        )
        if str(number) in dialled:
            raise ConfigError(f"{key}.numbers", "names the extension itself")
        for name, low in (("after", 0), ("timeout", 1)):
            seconds = value.get(name)
            if seconds is not None and (
                isinstance(seconds, bool)
                or not isinstance(seconds, int)
                or not low <= seconds <= 600
            ):
                raise ConfigError(
                    f"{key}.{name}",
                    f"must be a whole number of seconds from {low} to 600",
                )
        mode = value.get("mode", "also")
        if mode not in MODES:
            raise ConfigError(f"{key}.mode", f"must be one of {', '.join(MODES)}")
        confirm = value.get("confirm", False)
        if not isinstance(confirm, bool):
            raise ConfigError(f"{key}.confirm", "must be true or false")
        after = value.get("after")
        result[str(number)] = FollowMe(
            str(number),
            dialled,
            10 if after is None else after,
            mode,
            value.get("timeout") or 0,
            confirm,
        )
    return result
