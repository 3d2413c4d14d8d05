"""
The SIP ``Identity`` header (RFC 8224 §4.1), built and parsed.

::

    Identity: <PASSporT>;info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken

The parser takes what peers send: white space around ``;`` and ``=``,
parameters in any order and case, ``info`` in angle brackets or quotes,
several values in one header line separated by commas.  Anything else is
malformed.  Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from attrs import frozen

__all__ = [
    "IdentityError",
    "IdentityHeader",
    "build_identity",
    "parse_identity",
    "split_identities",
]

# A JWS in compact serialisation; the middle part is empty in a PASSporT's
# compact form (RFC 8225 §7).
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")
_PARAM_NAME = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_PARAM_VALUE = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
#: Longest Identity header value accepted.
MAX_IDENTITY_LENGTH = 8192


class IdentityError(ValueError):
    """An Identity header value that does not parse; the message says why."""


@frozen
class IdentityHeader:
    """One Identity header value."""

    token: str
    """The PASSporT, a JWS in compact serialisation."""
    info: str
    """The ``info`` URI: where the signer's certificate is."""
    alg: str | None = None
    ppt: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    """Every parameter, names lower-cased, values without brackets or quotes."""


def build_identity(token: str, x5u: str) -> str:
    """
    The Identity header value for a SHAKEN PASSporT.

    :param token: the signed PASSporT (:func:`pbx.stir.passport.sign`).
    :param x5u: its certificate's URL, the same as the PASSporT's ``x5u``.
    :returns: ``token;info=<x5u>;alg=ES256;ppt=shaken``.
    """
    return f"{token};info=<{x5u}>;alg=ES256;ppt=shaken"


def split_identities(values: Iterable[str]) -> list[str]:
    """
    Separate Identity header values that share a header line.

    :param values: the values of every Identity header in the request.
    :returns: one string per value; commas inside ``<...>`` or quotes stay.
    """
    out: list[str] = []
    for value in values:
        if "," not in value:
            out.append(value)
            continue
        start, depth, quoted = 0, False, False
        for i, c in enumerate(value):
            if c == '"' and not depth:
                quoted = not quoted
            elif c == "<" and not quoted:
                depth = True
            elif c == ">" and not quoted:
                depth = False
            elif c == "," and not quoted and not depth:
                out.append(value[start:i])
                start = i + 1
        out.append(value[start:])
    return [v.strip() for v in out if v.strip()]


def parse_identity(value: str) -> IdentityHeader:
    """
    Parse one Identity header value.

    :param value: the value, as received.
    :returns: the token and parameters.
    :raises IdentityError: when it is not ``token *(;param)`` with an ``info`` URI.
    """
    if len(value) > MAX_IDENTITY_LENGTH:
        raise IdentityError(f"longer than {MAX_IDENTITY_LENGTH} characters")
    text = value.strip()
    semi = text.find(";")
    token = (text if semi < 0 else text[:semi]).strip()
    if not _TOKEN.fullmatch(token):
        raise IdentityError("does not start with a JWS (header.claims.signature)")
    params: list[tuple[str, str]] = []
    rest = "" if semi < 0 else text[semi:]
    while rest:
        name, param_value, rest = _param(rest)
        if any(n == name for n, _ in params):
            raise IdentityError(f"parameter {name} appears twice")
        params.append((name, param_value))
    found = dict(params)
    info = found.get("info")
    if not info:
        # RFC 8224 §4.1: ident-info is mandatory.
        raise IdentityError("has no info parameter")
    return IdentityHeader(
        token=token,
        info=info,
        alg=found.get("alg"),
        ppt=found.get("ppt"),
        params=tuple(params),
    )


def _param(rest: str) -> tuple[str, str, str]:
    """Take ``;name=value`` off the front of ``rest``: (name, value, what follows)."""
    rest = rest.lstrip()
    if not rest.startswith(";"):
        raise IdentityError("parameters must be separated by ';'")
    rest = rest[1:].lstrip()
    eq = rest.find("=")
    if eq < 0:
        raise IdentityError("a parameter has no value")
    name = rest[:eq].strip().lower()
    if not _PARAM_NAME.fullmatch(name):
        raise IdentityError("a parameter name is malformed")
    rest = rest[eq + 1 :].lstrip()
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            raise IdentityError(f"{name}: '<' without '>'")
        found, rest = rest[1:end], rest[end + 1 :]
        if not found or any(c.isspace() or c in '<"' for c in found):
            raise IdentityError(f"{name}: malformed URI")
    elif rest.startswith('"'):
        end = rest.find('"', 1)
        if end < 0:
            raise IdentityError(f"{name}: unterminated quoted string")
        found, rest = rest[1:end], rest[end + 1 :]
    else:
        match = _PARAM_VALUE.match(rest)
        if match is None:
            raise IdentityError(f"{name}: malformed value")
        found, rest = match.group(), rest[match.end() :]
    rest = rest.lstrip()
    if rest and not rest.startswith(";"):
        raise IdentityError(f"{name}: unexpected text after the value")
    return name, found, rest
