"""
Phone numbers at the edge: E.164 (ITU-T E.164, ``+`` and up to 15 digits)
from what carriers put in Request-URIs and To headers.

Pure code.
"""

from __future__ import annotations

import re

__all__ = ["E164", "normalise", "sent_number"]

#: An E.164 number as pbx keeps it.
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SEPARATORS = re.compile(r"[\s().\-]")


def normalise(number: str, country_code: str = "1") -> str | None:
    """
    ``number`` as E.164, or None if it is no phone number.

    ``+...`` stays; an international prefix (``00``; ``011`` in the North
    American plan) becomes ``+``; a number that starts with the trunk's
    country code and is longer than a national number (10 digits) gains
    ``+``; any other national number gets ``+`` and the country code (a
    leading trunk ``0`` dropped outside the North American plan).
    Visual separators (spaces, dashes, dots, brackets) are ignored (RFC 3966 §5.1.1).
    """
    text = _SEPARATORS.sub("", number)
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):
        digits = text[2:]
    elif country_code == "1" and text.startswith("011"):
        digits = text[3:]
    elif text.startswith(country_code) and len(text) > 10:
        digits = text
    else:
        national = text[1:] if country_code != "1" and text.startswith("0") else text
        digits = country_code + national
    candidate = "+" + digits
    return candidate if text[-1:].isdigit() and E164.fullmatch(candidate) else None


def sent_number(dialled: str, strip: int, prepend: str) -> str:
    """The number sent to the trunk: ``dialled`` without its first ``strip`` digits, after ``prepend``."""
    return prepend + dialled[strip:]
