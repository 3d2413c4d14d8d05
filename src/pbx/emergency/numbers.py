"""
Kari's Law: which dialled numbers are emergency calls.

911 dialled directly, and with any outside-line prefix (``9911``), is an
emergency call; so is 933, the address read-back test, which routes the
same way.  :func:`is_emergency` is the first thing outbound routing asks,
before permissions, limits, DND or trunk counts: an emergency number is
never blocked by any of them.

Visual separators a phone may send (RFC 3966 §5.1.1: ``-``, ``.``, ``(``,
``)``, spaces) are ignored.  Pure: no Twisted.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DEFAULT_NUMBERS", "DEFAULT_PREFIXES", "is_emergency"]

DEFAULT_NUMBERS = ("911", "933")
DEFAULT_PREFIXES = ("9",)
_SEPARATORS = str.maketrans("", "", "-.() ")


def is_emergency(
    dialled: str,
    numbers: Iterable[str] = DEFAULT_NUMBERS,
    prefixes: Iterable[str] = DEFAULT_PREFIXES,
) -> str | None:
    """
    The emergency number ``dialled`` stands for, or None.

    :param dialled: the number as dialled (the Request-URI's user part).
    :param numbers: the emergency numbers (``emergency.dial``).
    :param prefixes: the outside-line prefixes (``emergency.prefixes``).
    :returns: the normalised number (``"911"`` for ``"9911"`` or ``"9-911"``).
    """
    digits = dialled.translate(_SEPARATORS)
    numbers = tuple(numbers)
    if digits in numbers:
        return digits
    for prefix in prefixes:
        if prefix and digits.startswith(prefix) and digits[len(prefix) :] in numbers:
            return digits[len(prefix) :]
    return None
