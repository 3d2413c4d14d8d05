"""
Where signers' certificates may be fetched from.

An Identity header names the URL its certificate is fetched from, so a
verifier that fetched anything would make HTTP requests wherever a caller
chose (RFC 8224 §12.3).  Only ``https`` URLs with a host name or a public
address are fetched unless ``allowed_x5u`` lists prefixes; then only URLs
under those, ``http`` included only where a prefix says ``http://``.  A
URL with ``.`` or ``..`` path segments, user information, a fragment or
non-ASCII characters never is.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["MAX_URL_LENGTH", "normalise_prefix", "x5u_problem"]

#: Longest x5u URL considered.
MAX_URL_LENGTH = 2048


def normalise_prefix(prefix: str) -> str | None:
    """
    The form an allowed ``x5u`` prefix is compared in.

    :param prefix: ``https://host[:port]/path...`` or ``http://...``.
    :returns: scheme and host lower-cased, a ``/`` after a bare host (so
        ``https://certs.example.com`` does not allow ``https://certs.example.com.evil.org``);
        None when it is not an http(s) URL with a host.
    """
    parts = urlsplit(prefix)
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
    ):
        return None
    if parts.query or parts.fragment or any(c.isspace() for c in prefix):
        return None
    path = parts.path or "/"
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


def x5u_problem(url: str, allowed: Sequence[str]) -> str | None:
    """
    Say why ``url`` may not be fetched.

    :param url: an ``x5u`` from a PASSporT.
    :param allowed: normalised prefixes (:func:`normalise_prefix`); empty:
        any ``https`` URL.
    :returns: a short phrase, or None when it may be fetched.
    """
    if (
        len(url) > MAX_URL_LENGTH
        or not url.isascii()
        or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url)
    ):
        return "is not a URL"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL"
    if "@" in parts.netloc or parts.fragment:
        return "has user information or a fragment"
    segments = parts.path.lower().replace("%2e", ".").split("/")
    if "." in segments or ".." in segments:
        return "has '.' or '..' path segments"
    normal = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path or '/'}"
    if parts.query:
        normal += f"?{parts.query}"
    if allowed:
        if not any(normal.startswith(prefix) for prefix in allowed):
            return "is not under an allowed_x5u prefix"
    elif parts.scheme.lower() != "https":
        return "is not https (list an http prefix in allowed_x5u to allow it)"
    elif not _public_host(parts.hostname):
        # RFC 8224 §12.3: the caller chooses the URL; without a list, keep
        # verifiers from being sent to this network's own servers.
        return "is a private or local address (list it in allowed_x5u to allow it)"
    return None


def _public_host(host: str) -> bool:
    """Whether ``host`` is a name, or an address that is globally reachable."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.lower() != "localhost" and not host.lower().endswith(".localhost")
    return address.is_global
