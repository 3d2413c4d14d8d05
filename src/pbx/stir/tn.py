"""
Telephone numbers in the canonical form PASSporTs carry (RFC 8224 §8.3),
and the number a SIP or tel URI names.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import re

from pbx.sip.uri import URI, unescape

__all__ = ["MAX_TN_DIGITS", "canonical_tn", "number_of", "tn_problem"]

#: Most digits a canonical number may have (E.164's 15, with room for
#: national prefixes some carriers keep).
MAX_TN_DIGITS = 20

# RFC 3966 §5.1.1 visual separators, and the space people type.
_SEPARATORS = str.maketrans("", "", "-.() ")
_DIGITS = re.compile(r"[0-9]+")


def tn_problem(number: object) -> str | None:
    """
    Say what keeps ``number`` from being a telephone number.

    :param number: the candidate (from configuration, a header or a PASSporT).
    :returns: a short phrase, or None when :func:`canonical_tn` accepts it.
    """
    if not isinstance(number, str):
        return "must be a string of digits"
    digits = number.split(";", 1)[0].translate(_SEPARATORS)
    if digits.startswith("+"):
        digits = digits[1:]
    if not _DIGITS.fullmatch(digits):
        return "is not a telephone number (digits, an optional leading +)"
    if len(digits) > MAX_TN_DIGITS:
        return f"has more than {MAX_TN_DIGITS} digits"
    return None


def canonical_tn(number: str) -> str:
    """
    The canonical form of a telephone number: digits only.

    RFC 8224 §8.3: URI parameters, visual separators and the leading ``+``
    are removed, so ``+1 (555) 123-4567;npdi`` becomes ``15551234567``.

    :param number: a number as dialled, configured or found in a URI's user part.
    :returns: the digits.
    :raises ValueError: when it is not a telephone number.
    """
    problem = tn_problem(number)
    if problem is not None:
        raise ValueError(f"{number!r} {problem}")
    digits = number.split(";", 1)[0].translate(_SEPARATORS)
    return digits[1:] if digits.startswith("+") else digits


def number_of(uri: URI) -> str | None:
    """
    The telephone number a From, To, P-Asserted-Identity or Request-URI names.

    :param uri: a ``tel`` URI, or a SIP URI whose user part is a number
        (``sip:+15551230000;npdi@carrier.example.com;user=phone``).
    :returns: the number, canonical; None for a name (``sip:alice@...``) or
        an anonymous caller.
    """
    if uri.scheme == "tel" or uri.is_sip:
        user = unescape(uri.user) if uri.user else ""
        if tn_problem(user) is None:
            return canonical_tn(user)
    return None
