"""
SIP header names and the values the core needs parsed (RFC 3261 §7.3, §20).

Names: :func:`canonical_name` maps compact forms (RFC 3261 §7.3.3 and the
IANA registry) and any spelling of a known header to one canonical spelling.
Unknown extension headers keep the spelling they arrived with.

Values: :class:`Via`, :class:`NameAddr` (From, To, Contact, Route...) and
:class:`CSeq`, plus :func:`split_list` for the comma-separated list headers.
Only headers whose grammar is a list are ever split: ``Authorization``,
``Date``, ``User-Agent`` and every unknown header are opaque single values
(RFC 4475 §3.1.1.1 keeps ``;;,,;;,;`` whole).
"""

from __future__ import annotations

import re

from attrs import evolve, field, frozen

from pbx.sip.uri import URI, SIPParseError, parse_hostport, parse_uri

__all__ = [
    "COMPACT_FORMS",
    "HEADER_NAMES",
    "LIST_HEADERS",
    "CSeq",
    "NameAddr",
    "Via",
    "canonical_name",
    "header_key",
    "parse_cseq",
    "parse_name_addr",
    "parse_params",
    "parse_via",
    "quote",
    "split_list",
    "unquote",
]

# RFC 3261 §7.3.3 and the IANA "Header Fields" registry.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN = """
Accept Accept-Contact Accept-Encoding Accept-Language Accept-Resource-Priority
Alert-Info Allow Allow-Events Answer-Mode Authentication-Info Authorization
Call-ID Call-Info Contact Content-Disposition Content-Encoding Content-ID
Content-Language Content-Length Content-Transfer-Encoding Content-Type CSeq Date
Error-Info Event Expires Feature-Caps Flow-Timer From Geolocation History-Info
Identity Identity-Info In-Reply-To Info-Package Join Max-Breadth Max-Forwards
MIME-Version Min-Expires Min-SE Organization P-Access-Network-Info
P-Asserted-Identity P-Associated-URI P-Called-Party-ID P-Charging-Vector
P-Early-Media P-Preferred-Identity P-Visited-Network-ID Path Permission-Missing
Priority Privacy Proxy-Authenticate Proxy-Authorization Proxy-Require RAck
Reason Record-Route Recv-Info Refer-Sub Refer-To Referred-By Reject-Contact
Replaces Reply-To Request-Disposition Require Resource-Priority Retry-After Route
RSeq Security-Client Security-Server Security-Verify Server Service-Route
Session-Expires Session-ID SIP-ETag SIP-If-Match Subject Subscription-State
Supported Target-Dialog Timestamp To Trigger-Consent Unsupported User-Agent
User-to-User Via Warning WWW-Authenticate
""".split()

# Headers whose RFC grammar is ``x *(COMMA x)`` (RFC 3261 §7.3.1): several
# lines are equivalent to one comma-joined line.  Keys are lower-case.
LIST_HEADERS: frozenset[str] = frozenset(
    """accept accept-contact accept-encoding accept-language
    accept-resource-priority alert-info allow allow-events call-info contact
    content-encoding content-language error-info history-info in-reply-to
    p-asserted-identity p-associated-uri p-preferred-identity
    p-visited-network-id path permission-missing proxy-require reason
    record-route recv-info reject-contact request-disposition require
    resource-priority route security-client security-server security-verify
    service-route supported trigger-consent unsupported via warning""".split()
)

TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# A header parameter value: token, host (IPv6 with or without brackets,
# RFC 5118 §4.5) or quoted-string (RFC 3261 §25.1 gen-value).
_PARAM_VALUE = re.compile(r'[A-Za-z0-9\-.!%*_+`\'~:\[\]]+|"(?:[^"\\]|\\.)*"', re.S)
# An unquoted display name word: token characters, or UTF-8 text.
_DISPLAY_WORD = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]+")
_LIST_SPECIAL = re.compile(r'[",<>\\]')
_TOKEN_MATCH = TOKEN.fullmatch
_VALUE_MATCH = _PARAM_VALUE.fullmatch
_MAX_UINT32 = 2**32 - 1

# Exact spelling -> (lower-case key, canonical name); the message parser's
# hot loop reads it directly.  It holds the canonical, lower-case and compact
# spellings; other spellings are added when first seen, within a bound, so
# hostile peers cannot make it grow without limit.
HEADER_NAMES: dict[str, tuple[str, str]] = {}
_NAMES = HEADER_NAMES
for _name in _KNOWN:
    _NAMES[_name] = _NAMES[_name.lower()] = (_name.lower(), _name)
for _letter, _name in COMPACT_FORMS.items():
    _NAMES[_letter] = _NAMES[_letter.upper()] = (_name.lower(), _name)
_NAMES_LIMIT = len(_NAMES) + 512


def header_key(name: str) -> tuple[str, str]:
    """
    Resolve a header name to its lookup key and canonical spelling.

    :param name: a header name as received (any case, compact or not).
    :returns: ``(key, canonical)``: ``("call-id", "Call-ID")`` for ``i``;
        ``("x-foo", "X-Foo")`` for an unknown ``X-Foo``.
    :raises SIPParseError: when ``name`` is not a token.
    """
    found = _NAMES.get(name)
    if found is not None:
        return found
    lower = name.lower()
    found = _NAMES.get(lower)
    if found is None:
        if not TOKEN.fullmatch(name):
            raise SIPParseError("Malformed header name")
        found = (lower, name)
    if len(_NAMES) < _NAMES_LIMIT and len(name) <= 64:
        _NAMES[name] = found
    return found


def canonical_name(name: str) -> str:
    """
    Give a header name its canonical spelling.

    :param name: e.g. ``v``, ``VIA``, ``call-id``.
    :returns: e.g. ``Via``, ``Via``, ``Call-ID``; unknown names unchanged.
    :raises SIPParseError: when ``name`` is not a token.
    """
    return header_key(name)[1]


def split_list(value: str) -> list[str]:
    """
    Split a list header value at commas outside quoted strings and ``<>``.

    :param value: e.g. ``<sip:a@b;x=1,2>, "Doe, J" <sip:c@d>``.
    :returns: the stripped elements, empty ones included (so that callers can
        reject ``a,,b`` where the grammar forbids it); ``[]`` for a blank value.
    """
    if "," not in value:
        value = value.strip()
        return [value] if value else []
    parts = []
    start = 0
    in_quote = in_angle = False
    skip = -1
    for match in _LIST_SPECIAL.finditer(value):
        i = match.start()
        if i == skip:
            continue
        char = value[i]
        if in_quote:
            if char == "\\":
                skip = i + 1  # quoted-pair
            elif char == '"':
                in_quote = False
        elif char == '"':
            in_quote = True
        elif in_angle:
            in_angle = char != ">"
        elif char == "<":
            in_angle = True
        elif char == ",":
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return parts


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """
    Read the quoted-string opening at ``text[start]``.

    :returns: the unescaped content and the index just past the closing quote.
    :raises SIPParseError: if it is never closed (RFC 4475 §3.1.2.6 quotbal).
    """
    out = []
    i = start + 1
    quote_at = text.find('"', i)
    while True:  # linear: each search starts where the last one ended
        if quote_at < 0:
            raise SIPParseError("Unterminated quoted string")
        backslash = text.find("\\", i, quote_at)
        if backslash < 0:
            out.append(text[i:quote_at])
            return "".join(out), quote_at + 1
        out.append(text[i:backslash])
        out.append(text[backslash + 1])  # quoted-pair; backslash < quote_at
        i = backslash + 2
        if quote_at < i:
            quote_at = text.find('"', i)


def quote(text: str) -> str:
    """
    Make a quoted-string (RFC 3261 §25.1).

    :param text: any text.
    :returns: ``text`` in double quotes with ``"`` and ``\\`` escaped.
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(value: str) -> str:
    """
    Undo :func:`quote`; return other values unchanged.

    :param value: a parameter value as stored, e.g. ``"<urn:uuid:...>"``.
    :returns: the content of the quoted-string, or ``value`` itself.
    :raises SIPParseError: on an unterminated quoted-string.
    """
    if value.startswith('"'):
        return _read_quoted(value, 0)[0]
    return value


def _split_semicolons(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    parts = []
    start = 0
    semi, quote_at = text.find(";"), text.find('"')
    while True:
        if quote_at >= 0 and (semi < 0 or quote_at < semi):
            end = _read_quoted(text, quote_at)[1]
            quote_at = text.find('"', end)
            if 0 <= semi < end:  # that ";" was inside the quotes
                semi = text.find(";", end)
            continue
        if semi < 0:
            parts.append(text[start:])
            return parts
        parts.append(text[start:semi])
        start = semi + 1
        semi = text.find(";", start)


def parse_params(text: str) -> dict[str, str | None]:
    """
    Parse ``*( SEMI generic-param )`` (RFC 3261 §25.1), LWS allowed around
    ``;`` and ``=``.

    :param text: e.g. ``;tag=1928 ; lr`` (leading ``;`` required), or blank.
    :returns: names (lower-cased) to values in order; ``None`` for a valueless
        parameter; quoted values keep their quotes (see :func:`unquote`).  A
        repeated name keeps its first value.
    :raises SIPParseError: on empty parameters (``;;``, RFC 4475 §3.1.2.1) or
        bad names and values.
    """
    if not text or text[0] != ";":
        text = text.strip()
        if not text:
            return {}
        if text[0] != ";":
            raise SIPParseError("Malformed parameters")
    params: dict[str, str | None] = {}
    body = text[1:]
    # Fast path: match first, strip only when LWS made the match fail.
    for piece in body.split(";") if '"' not in body else _split_semicolons(body):
        name, eq, value = piece.partition("=")
        if not _TOKEN_MATCH(name):
            name = name.strip()
            if not _TOKEN_MATCH(name):
                raise SIPParseError("Malformed parameter")
        key = name.lower()
        if key in params:
            continue
        if eq:
            if not _VALUE_MATCH(value):
                value = value.strip()
                if not _VALUE_MATCH(value):
                    raise SIPParseError("Malformed parameter value")
            params[key] = value
        else:
            params[key] = None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params.items())


@frozen
class Via:
    """
    One via-parm of a Via header (RFC 3261 §20.42).

    :ivar transport: upper-cased transport (``UDP``, ``TCP``, ``TLS``, ``WS``,
        or any unknown token: RFC 4475 §3.1.1.10).
    :ivar host: sent-by host; IPv6 references keep their brackets.
    :ivar port: sent-by port, or ``None``.
    :ivar params: names (lower-cased) to values, in order.
    :ivar protocol: ``SIP/2.0``.
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(factory=dict)
    protocol: str = "SIP/2.0"

    def __str__(self) -> str:
        """
        Serialise as ``SIP/2.0/UDP host:port;params``.

        :returns: the via-parm text.
        """
        return f"{self.protocol}/{self.transport} {self.sent_by}" + _format_params(
            self.params
        )

    @property
    def sent_by(self) -> str:
        """``host`` or ``host:port``."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (RFC 3261 §8.1.1.7), or ``None``."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (RFC 3261 §18.2.1), or ``None``."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The numeric ``rport`` value (RFC 3581), or ``None``."""
        value = self.params.get("rport")
        if value is not None and value.isascii() and value.isdigit() and len(value) < 6:
            return int(value)
        return None

    @property
    def wants_rport(self) -> bool:
        """Whether ``rport`` is present (the client asks for RFC 3581)."""
        return "rport" in self.params

    def with_params(self, **params: str | None) -> Via:
        """
        Copy this Via with parameters added or replaced.

        :param params: e.g. ``received="192.0.2.1", rport="5060"``.
        :returns: the new Via; this one is unchanged.
        """
        return evolve(self, params={**self.params, **params})


def parse_via(text: str) -> Via:
    """
    Parse one via-parm; ``SIP / 2.0 / UDP host ; branch = x`` is legal
    (RFC 3261 §25.1 SLASH, COLON, SEMI and EQUAL allow LWS).

    :param text: one element of a Via list (see :func:`split_list`).
    :returns: the Via.
    :raises SIPParseError: when malformed.
    """
    text = text.strip()
    semi = text.find(";")
    head, params_text = (text, "") if semi < 0 else (text[:semi], text[semi:])
    transport, space, sent_by = head[8:].partition(" ")
    if head.startswith("SIP/2.0/") and space and _TOKEN_MATCH(transport):
        # Fast path: no LWS inside sent-protocol.
        protocol, sent_by = "SIP/2.0", sent_by.strip()
    else:
        protocol, transport, sent_by = _parse_sent_protocol(head)
    if " " in sent_by or "\t" in sent_by:
        # COLON = SWS ":" SWS: LWS may only sit next to the colon.
        words = sent_by.split()
        for left, right in zip(words, words[1:], strict=False):
            if not (left.endswith(":") or right.startswith(":")):
                raise SIPParseError("Malformed Via sent-by")
        sent_by = "".join(words)
    try:
        host, port = parse_hostport(sent_by)
    except SIPParseError:
        raise SIPParseError("Malformed Via sent-by") from None
    return Via(transport.upper(), host, port, parse_params(params_text), protocol)


def _parse_sent_protocol(head: str) -> tuple[str, str, str]:
    pieces = head.split("/", 2)
    if len(pieces) != 3:
        raise SIPParseError("Malformed Via header")
    name, version = pieces[0].strip(), pieces[1].strip()
    transport_and_host = pieces[2].split(None, 1)
    if len(transport_and_host) != 2:
        raise SIPParseError("Malformed Via header")
    transport, sent_by = transport_and_host[0], transport_and_host[1].strip()
    if not (_TOKEN_MATCH(name) and _TOKEN_MATCH(version)):
        raise SIPParseError("Malformed Via header")
    if not _TOKEN_MATCH(transport):
        raise SIPParseError("Malformed Via transport")
    protocol = "SIP/2.0" if name == "SIP" and version == "2.0" else f"{name}/{version}"
    return protocol, transport, sent_by


@frozen
class NameAddr:
    """
    A ``name-addr`` or ``addr-spec`` with header parameters (From, To,
    Contact, Route, Record-Route, Refer-To...).

    :ivar uri: the address.
    :ivar display_name: unquoted, unescaped display name, or ``None``.
    :ivar params: header parameters (not URI parameters: in a bare addr-spec
        everything after ``;`` belongs to the header, RFC 3261 §20.10).
    """

    uri: URI
    display_name: str | None = None
    params: dict[str, str | None] = field(factory=dict)

    def __str__(self) -> str:
        """
        Serialise, always in ``<>`` form (RFC 3261 §20.10 requires it
        whenever the URI has ``,``, ``;`` or ``?``; it is never wrong).

        :returns: e.g. ``"Alice" <sip:alice@example.com>;tag=1``.
        """
        name = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{name}<{self.uri}>" + _format_params(self.params)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 §19.3), or ``None``."""
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """
        Copy with a ``tag`` parameter.

        :param tag: the tag.
        :returns: the new value; this one is unchanged.
        """
        return evolve(self, params={**self.params, "tag": tag})


def parse_name_addr(text: str) -> NameAddr:
    """
    Parse ``name-addr`` or ``addr-spec`` followed by header parameters.

    :param text: e.g. ``"A. G. Bell" <sip:agb@bell-telephone.com>;tag=a48s``,
        ``caller<sip:c@example.com>`` (RFC 4475 §3.1.1.6 tolerates no LWS) or
        ``sip:c@example.com;tag=1``.
    :returns: the parsed value.
    :raises SIPParseError: on unbalanced quotes, unquoted non-token display
        names, LWS inside ``<>`` or a bare URI with ``?`` or ``,``
        (RFC 4475 §3.1.2.6, 3.1.2.13-15).
    """
    text = text.strip()
    display: str | None = None
    if text.startswith('"'):
        display, after = _read_quoted(text, 0)
        lt = after
        while lt < len(text) and text[lt] in " \t":
            lt += 1
        if lt >= len(text) or text[lt] != "<":
            raise SIPParseError("Malformed name-addr")
    else:
        lt = text.find("<")
        if lt > 0:
            words = text[:lt].split()
            for word in words:
                if not _DISPLAY_WORD.fullmatch(word):
                    raise SIPParseError("Malformed display name")
            display = " ".join(words) or None
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SIPParseError("Unterminated <")
        uri_text = text[lt + 1 : gt]
        if uri_text != uri_text.strip():
            raise SIPParseError("Whitespace inside <>")
        uri = parse_uri(uri_text)
        return NameAddr(uri, display, parse_params(text[gt + 1 :]))
    semi = text.find(";")
    uri_text = text if semi < 0 else text[:semi].rstrip()
    if "?" in uri_text or "," in uri_text:
        # RFC 3261 §20.10 (RFC 4475 §3.1.2.13 regbadct).
        raise SIPParseError("URI with '?' or ',' must be enclosed in <>")
    uri = parse_uri(uri_text)
    return NameAddr(uri, None, parse_params(text[semi:]) if semi >= 0 else {})


@frozen
class CSeq:
    """
    The CSeq header (RFC 3261 §20.16).

    :ivar number: sequence number, 0 to 2**32-1.
    :ivar method: the method, case-sensitive.
    """

    number: int
    method: str

    def __str__(self) -> str:
        """
        Serialise.

        :returns: e.g. ``1 INVITE``.
        """
        return f"{self.number} {self.method}"


def parse_uint(text: str, maximum: int = _MAX_UINT32) -> int:
    """
    Parse ``1*DIGIT`` (leading zeros allowed) bounded by ``maximum``.

    :param text: the digits, surrounding LWS allowed.
    :param maximum: the largest legal value.
    :returns: the value.
    :raises SIPParseError: on anything but digits, or an overlarge value
        (RFC 4475 §3.1.2.4 scalar02).
    """
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise SIPParseError("Not a number")
    digits = text.lstrip("0")
    if len(digits) > 20:  # never hand int() thousands of digits
        raise SIPParseError("Number too large")
    value = int(digits or "0")
    if value > maximum:
        raise SIPParseError("Number too large")
    return value


def parse_cseq(text: str) -> CSeq:
    """
    Parse a CSeq value; ``0009 INVITE`` (leading zeros) is legal.

    :param text: the value.
    :returns: the CSeq.
    :raises SIPParseError: when malformed or above 2**32-1.
    """
    parts = text.split()
    if len(parts) != 2 or not TOKEN.fullmatch(parts[1]):
        raise SIPParseError("Malformed CSeq header")
    try:
        number = parse_uint(parts[0])
    except SIPParseError:
        raise SIPParseError("Malformed CSeq header") from None
    return CSeq(number, parts[1])
