"""
SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), parsed and compared.

A :class:`URI` keeps every component in its escaped, on-the-wire form, so
``str(parse_uri(text)) == text`` and a proxy never re-encodes what it relays.
Escapes are undone only when comparing (:meth:`URI.equivalent`, exactly once,
RFC 4475 §3.1.1.3) or when asked to (:func:`unescape`).

URIs of any other scheme (``http:``, ``urn:``, ``isbn:``...) parse as opaque
absolute URIs: RFC 3261 §8.2.2.1 makes an unknown Request-URI scheme a 416
decision of the application, not a syntax error (RFC 4475 §3.3.2).

:class:`SIPParseError`, the one exception every parser of :mod:`pbx.sip`
raises, lives here because this is the lowest layer.
"""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar

from attrs import field, frozen

__all__ = ["SIPParseError", "URI", "parse_uri", "unescape"]


class SIPParseError(ValueError):
    """
    A SIP message, header value or URI is malformed.

    :ivar reason: a short phrase fit for a ``400 <reason>`` response.
    :ivar status: the status code a server should answer with.

    :func:`pbx.sip.message.parse_message` raises the subclass
    :class:`pbx.sip.message.MalformedMessage`, which carries the request to
    answer.
    """

    status: ClassVar[int] = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Characters that never appear unescaped in any URI we accept (RFC 3986 §2,
# RFC 3261 §25.1): controls, whitespace, quotes and angle brackets.  LWS inside
# a Request-URI is RFC 4475 §3.1.2.8 (lwsruri), <> is §3.1.2.14 (badaspec).
_BAD_CHARS = re.compile(r'[\x00-\x20\x7f"<>\\]')
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TEL_NUMBER = re.compile(r"\+?[0-9A-Fa-f*#().-]+")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_ESCAPE_BYTES = re.compile(rb"%([0-9A-Fa-f]{2})")
# RFC 3261 §19.1.4: characters outside "reserved" equal their %HEX HEX form.
_RESERVED = frozenset(";/?:@&=+$,[]%")
# §19.1.4: these uri-parameters never match when present in only one URI;
# transport per the section's examples.
_MUST_MATCH_PARAMS = ("user", "ttl", "method", "maddr", "transport")
_TEL_SEPARATORS = str.maketrans("", "", "-.()")

Params = tuple[tuple[str, str | None], ...]


def _canonical_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    if char in _RESERVED or ord(char) > 0x7E:
        return match.group(0).upper()
    return char


def _canon(text: str | None) -> str | None:
    """
    Undo the escapes that RFC 3261 §19.1.4 makes insignificant, exactly once.

    Reserved characters (and ``%`` itself) stay escaped, upper-cased, so that
    ``%2541`` canonicalises to ``%2541``, never to ``A``.
    """
    if text is None or "%" not in text:
        return text
    return _ESCAPE.sub(_canonical_escape, text)


def unescape(text: str) -> str:
    """
    Decode every ``%XX`` escape of ``text`` once (RFC 3261 §25.1 ``escaped``).

    Decoded octets are read as UTF-8; invalid sequences and malformed escapes
    are kept (surrogate-escaped), so this never raises.

    :param text: an escaped URI component, e.g. a user part.
    :returns: the unescaped text; ``null-%00-null`` keeps its NUL.
    """
    if "%" not in text:
        return text
    raw = _ESCAPE_BYTES.sub(_decode_escape, text.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")


def _decode_escape(match: re.Match[bytes]) -> bytes:
    return bytes((int(match.group(1), 16),))


def _valid_ipv6(address: str) -> bool:
    if ":::" in address and "." in address:
        # RFC 5118 §4.10: RFC 3261's ABNF wrongly admits three colons before
        # an embedded IPv4 part ("2001:db8:::192.0.2.1"); tolerate it.
        address = address.replace(":::", "::", 1)
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def _host_key(host: str) -> str:
    """Return ``host`` in the form compared by RFC 3261 §19.1.4."""
    if host.startswith("["):
        inner = host[1:-1].replace(":::", "::", 1)
        try:
            return "[" + ipaddress.IPv6Address(inner).compressed + "]"
        except ValueError:
            return host.lower()
    return host.lower()


def parse_hostport(text: str) -> tuple[str, int | None]:
    """
    Parse ``host [":" port]`` (RFC 3261 §25.1 ``hostport``).

    :param text: e.g. ``example.com:5060`` or ``[2001:db8::1]:5070``.
    :returns: the host as written (IPv6 references keep their brackets) and
        the port, or ``None`` when absent.
    :raises SIPParseError: on an invalid host or port.
    """
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not _valid_ipv6(text[1:close]):
            raise SIPParseError("Invalid IPv6 reference")
        host, rest = text[: close + 1], text[close + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SIPParseError("Invalid host")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.partition(":")
        if not _HOSTNAME.fullmatch(host):
            raise SIPParseError("Invalid host")
        if not colon:
            return host, None
    # RFC 5118 §4.2: an unbracketed IPv6 address ends up here as a bad port.
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise SIPParseError("Invalid port")
    port = int(port_text)
    if port > 65535:
        raise SIPParseError("Invalid port")
    return host, port


def _parse_uri_params(text: str) -> Params:
    params = []
    for piece in text.split(";"):
        name, eq, value = piece.partition("=")
        if not name:
            raise SIPParseError("Empty URI parameter")
        if "%" in name:
            name = _canon(name) or ""  # so that has_param("lr") sees "%6C%72"
        params.append((name.lower(), value if eq else None))
    return tuple(params)


def _format_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


# Not slotted: a dict-backed frozen instance can be filled with one
# ``__dict__.update`` by :func:`_make`, which halves the cost of parsing.
@frozen(slots=False)
class URI:
    """
    A parsed URI.

    For ``sip``/``sips`` all components are used.  For ``tel`` the number is
    :attr:`user` and :attr:`host` is empty.  Any other scheme keeps the text
    after the colon in :attr:`opaque`.  Components hold escaped text as it was
    received; ``==`` compares them literally, :meth:`equivalent` applies
    RFC 3261 §19.1.4.

    :ivar scheme: the scheme, lower-cased.
    :ivar user: the user part (escaped), or ``None``.
    :ivar password: the password (escaped), or ``None``.
    :ivar host: hostname, IPv4 address or bracketed IPv6 reference.
    :ivar port: the port, or ``None`` when absent.
    :ivar params: ``(name, value)`` pairs in order; names lower-cased, value
        ``None`` for a parameter without ``=``.
    :ivar headers: ``(name, value)`` pairs from the ``?`` part, escaped.
    :ivar opaque: everything after ``scheme:`` for other schemes.
    """

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None
    # The text this URI was parsed from; never copied by attrs.evolve (not an
    # __init__ argument), so a changed URI is always re-serialised.
    _text: str | None = field(default=None, init=False, eq=False, repr=False)

    def __str__(self) -> str:
        """
        Serialise; a parsed, unchanged URI gives back exactly its input.

        :returns: the URI text.
        """
        if self._text is not None:
            return self._text
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}" if self.scheme else self.opaque
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += (":", self.password)
            if self.scheme != "tel":
                out.append("@")
        out.append(self.hostport)
        out.append(_format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{n}={v}" for n, v in self.headers))
        return "".join(out)

    @property
    def is_sip(self) -> bool:
        """Whether this is a ``sip:`` or ``sips:`` URI."""
        return self.scheme in ("sip", "sips")

    @property
    def hostport(self) -> str:
        """``host`` or ``host:port`` as it would be written."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def host_address(self) -> str:
        """The host without IPv6 brackets (for sockets and comparisons)."""
        host = self.host
        return host[1:-1] if host.startswith("[") else host

    def param(self, name: str) -> str | None:
        """
        Return a URI parameter's value.

        :param name: parameter name, any case.
        :returns: the value; ``None`` when absent or valueless (use
            :meth:`has_param` to tell those apart).
        """
        name = name.lower()
        for n, v in self.params:
            if n == name:
                return v
        return None

    def has_param(self, name: str) -> bool:
        """
        Tell whether a URI parameter is present.

        :param name: parameter name, any case (``lr``, ``transport``...).
        :returns: ``True`` when present, with or without a value.
        """
        name = name.lower()
        return any(n == name for n, _ in self.params)

    def equivalent(self, other: URI) -> bool:
        """
        Compare two URIs by the rules of RFC 3261 §19.1.4 (RFC 3966 §4 for tel).

        :param other: the URI to compare with.
        :returns: ``True`` when they designate the same resource.
        """
        if self.scheme != other.scheme:
            return False  # sip never equals sips
        if self.opaque is not None or other.opaque is not None:
            return _canon(self.opaque) == _canon(other.opaque)
        if self.scheme == "tel":
            mine = (self.user or "").translate(_TEL_SEPARATORS).lower()
            theirs = (other.user or "").translate(_TEL_SEPARATORS).lower()
            return mine == theirs and _param_map(self) == _param_map(other)
        if _canon(self.user) != _canon(other.user):
            return False
        if _canon(self.password) != _canon(other.password):
            return False
        if _host_key(self.host) != _host_key(other.host) or self.port != other.port:
            return False
        mine_p, theirs_p = _param_map(self), _param_map(other)
        for name in mine_p.keys() & theirs_p.keys():
            if mine_p[name] != theirs_p[name]:
                return False
        for name in _MUST_MATCH_PARAMS:
            if (name in mine_p) != (name in theirs_p):
                return False
        # §19.1.4: header components are never ignored.
        return _header_set(self) == _header_set(other)


def _param_map(uri: URI) -> dict[str, str | None]:
    result: dict[str, str | None] = {}
    for name, value in uri.params:
        key = (_canon(name) or "").lower()
        result.setdefault(key, None if value is None else (_canon(value) or "").lower())
    return result


def _header_set(uri: URI) -> list[tuple[str, str]]:
    return sorted(((_canon(n) or "").lower(), _canon(v) or "") for n, v in uri.headers)


def _make(
    text: str,
    scheme: str,
    user: str | None = None,
    password: str | None = None,
    host: str = "",
    port: int | None = None,
    params: Params = (),
    headers: tuple[tuple[str, str], ...] = (),
    opaque: str | None = None,
) -> URI:
    # The hot path: equivalent to URI(...) plus setting _text, without the
    # per-field object.__setattr__ calls of a frozen attrs __init__.
    uri = object.__new__(URI)
    uri.__dict__.update(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=params,
        headers=headers,
        opaque=opaque,
        _text=text,
    )
    return uri


def _parse_sip(text: str, scheme: str, rest: str) -> URI:
    # RFC 3261 §19.1.1: no unescaped "@" may follow the userinfo, so the first
    # "@" ends it; the user part itself may hold ";" and "?" (RFC 4475
    # §3.1.1.9 semiuri, §3.1.1.2 intmeth).
    at = rest.find("@")
    user = password = None
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not user:
            raise SIPParseError("Empty user part in URI")
        if colon:
            password = pw
    rest, qmark, headers_text = rest.partition("?")
    hostport, semi, params_text = rest.partition(";")
    host, port = parse_hostport(hostport)
    params = _parse_uri_params(params_text) if semi else ()
    headers: tuple[tuple[str, str], ...] = ()
    if qmark:
        pairs = []
        for piece in headers_text.split("&"):
            name, _, value = piece.partition("=")
            if not name:
                raise SIPParseError("Empty URI header")
            pairs.append((name, value))
        headers = tuple(pairs)
    return _make(
        text,
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=params,
        headers=headers,
    )


# URIs are immutable, and a PBX sees the same few again and again (its own
# domain, AORs, refreshed contacts), so parsed ones are kept, boundedly.
_CACHE: dict[str, URI] = {}
_CACHE_SIZE = 4096
_CACHE_MAX_TEXT = 256


def parse_uri(text: str) -> URI:
    """
    Parse a SIP, SIPS, tel or other absolute URI.

    :param text: the URI, without ``<>`` and without surrounding whitespace.
    :returns: the URI; ``str()`` of it gives back ``text``.
    :raises SIPParseError: when ``text`` is not a URI.
    """
    uri = _CACHE.get(text)
    if uri is None:
        uri = _parse_uri(text)
        if len(text) <= _CACHE_MAX_TEXT:  # bounded memory whatever peers send
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.clear()
            _CACHE[text] = uri
    return uri


def _parse_uri(text: str) -> URI:
    colon = text.find(":")
    if colon <= 0 or _BAD_CHARS.search(text):
        raise SIPParseError("Malformed URI")
    scheme = text[:colon].lower()
    rest = text[colon + 1 :]
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(text, scheme, rest)
    if not _SCHEME.fullmatch(scheme) or not rest:
        raise SIPParseError("Malformed URI")
    if scheme == "tel":
        number, semi, params_text = rest.partition(";")
        if not _TEL_NUMBER.fullmatch(number):
            raise SIPParseError("Malformed tel URI")
        params = _parse_uri_params(params_text) if semi else ()
        return _make(text, scheme=scheme, user=number, params=params)
    return _make(text, scheme=scheme, opaque=rest)
