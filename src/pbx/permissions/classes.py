"""
Classes of service and the table that puts a dialled number in one.

The classes form one ladder, lowest first::

    internal < local < national < international < premium

An extension's class allows calls to numbers of that class and every class
below it.  Premium-rate numbers (+1 900, +1 976 ...) sit at the top, above
international: they are the numbers toll fraud aims at, so only an extension
given ``premium`` reaches them, and ``premium`` reaches everything.

A :class:`NumberTable` maps prefixes of E.164 numbers to classes; the
longest prefix that matches a number wins.  A prefix is ``+`` and digits, or
plain digits for numbers that are not E.164 (a tie line's ``2xxx``), and may
hold the dialplan's digit classes ``X`` (0-9), ``Z`` (1-9) and ``N`` (2-9).
Of two matching prefixes of one length, the one with fewer digit classes
wins (``+1900`` before ``+1NXX``).  The NANP default (:func:`nanp_table`)::

    +            international   (any other country code)
    +1           national
    +1<area>     local           (each configured area code)
    +1900 +1976  premium
    +1876 ...    international   (the Caribbean countries inside +1)

A number no prefix matches is ``internal`` when it is a short number
without ``+`` (:data:`INTERNAL_DIGITS` digits at most: an extension), and
``premium`` otherwise: a number nobody classified is one only the top class
may call (fail closed).

Pure: no Twisted.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping

from attrs import frozen

__all__ = [
    "CLASS_NAMES",
    "INTERNAL_DIGITS",
    "NANP_FOREIGN",
    "NumberTable",
    "ServiceClass",
    "nanp_table",
    "normalise",
    "prefix_problem",
]

#: The longest number without ``+`` that counts as an extension when no
#: prefix matches it (pbx's extension numbers are 2-10 digits, but a
#: 10-digit national number sent without ``+1`` must not pass as one).
INTERNAL_DIGITS = 6
#: Area codes inside +1 that are other countries (the Caribbean and
#: Bermuda), billed as international calls and the usual targets of
#: "one ring" fraud; US territories (787, 340, 671 ...) are not listed.
NANP_FOREIGN = (
    "242", "246", "264", "268", "284", "345", "441", "473", "649", "658", "664",
    "721", "758", "767", "784", "809", "829", "849", "868", "869", "876",
)  # fmt: skip
_PREFIX = re.compile(r"\+?[0-9XZNxzn]{0,15}")
_SEPARATORS = str.maketrans("", "", "-.() ")
_DIGIT_CLASSES = {"X": "0123456789", "Z": "123456789", "N": "23456789"}


class ServiceClass(enum.IntEnum):
    """A class of service; a higher class allows every lower one."""

    INTERNAL = 0
    LOCAL = 1
    NATIONAL = 2
    INTERNATIONAL = 3
    PREMIUM = 4

    @property
    def label(self) -> str:
        """The name the configuration and the API use (``international``)."""
        return self.name.lower()

    @classmethod
    def named(cls, name: str) -> ServiceClass:
        """
        The class called ``name`` (``international``).

        :raises KeyError: for a name that is no class.
        """
        if name not in CLASS_NAMES:
            raise KeyError(name)
        return cls[name.upper()]

    def allows(self, wanted: ServiceClass) -> bool:
        """Whether an extension of this class may call a number of class ``wanted``."""
        return wanted <= self


#: The class names, lowest first, as the configuration spells them.
CLASS_NAMES = tuple(c.label for c in ServiceClass)


def normalise(number: str) -> str:
    """``number`` without the visual separators a phone may send (RFC 3966 §5.1.1)."""
    return number.translate(_SEPARATORS)


def prefix_problem(prefix: str) -> str | None:
    """What is wrong with ``prefix`` as a table entry, or None."""
    if not prefix or not _PREFIX.fullmatch(prefix):
        return "a prefix is '+' and up to 15 digits, or digits (X, Z, N match a digit)"
    return None


def _matches(prefix: str, number: str) -> bool:
    if len(number) < len(prefix):
        return False
    for want, got in zip(prefix, number, strict=False):
        allowed = _DIGIT_CLASSES.get(want)
        if allowed is None:
            if want != got:
                return False
        elif got not in allowed:
            return False
    return True


@frozen
class NumberTable:
    """
    Prefixes and their classes, tried longest (then most literal) first.

    :ivar entries: ``(prefix, class)`` in match order.
    """

    entries: tuple[tuple[str, ServiceClass], ...]

    @classmethod
    def of(cls, table: Mapping[str, ServiceClass]) -> NumberTable:
        """
        A table from a prefix mapping.

        :raises ValueError: for a prefix :func:`prefix_problem` refuses.
        """
        for prefix in table:
            problem = prefix_problem(prefix)
            if problem:
                raise ValueError(f"{prefix!r}: {problem}")
        order = sorted(
            ((p.upper(), c) for p, c in table.items()),
            key=lambda item: (
                -len(item[0]),
                sum(ch in _DIGIT_CLASSES for ch in item[0]),
                item[0],
            ),
        )
        return cls(tuple(order))

    def match(self, number: str) -> tuple[str, ServiceClass] | None:
        """The entry that classifies ``number``, or None."""
        digits = normalise(number)
        for prefix, service_class in self.entries:
            if _matches(prefix, digits):
                return prefix, service_class
        return None

    def classify(self, number: str) -> ServiceClass:
        """
        The class of ``number``: its longest matching prefix's, else internal
        for a short number without ``+``, else premium (fail closed).
        """
        found = self.match(number)
        if found is not None:
            return found[1]
        digits = normalise(number)
        if digits.isdigit() and len(digits) <= INTERNAL_DIGITS:
            return ServiceClass.INTERNAL
        return ServiceClass.PREMIUM

    def as_dict(self) -> dict[str, str]:
        """The table as a JSON-ready mapping of prefix to class name."""
        return {prefix: c.label for prefix, c in self.entries}


def nanp_table(area_codes: Iterable[str] = ()) -> dict[str, ServiceClass]:
    """
    The North American Numbering Plan's default prefixes.

    :param area_codes: the local area codes (three digits each): ``+1`` and
        each is local.
    """
    table = {
        "+": ServiceClass.INTERNATIONAL,
        "+1": ServiceClass.NATIONAL,
        "+1900": ServiceClass.PREMIUM,
        "+1976": ServiceClass.PREMIUM,
    }
    for code in NANP_FOREIGN:
        table[f"+1{code}"] = ServiceClass.INTERNATIONAL
    for code in area_codes:
        table[f"+1{code}"] = ServiceClass.LOCAL
    return table
