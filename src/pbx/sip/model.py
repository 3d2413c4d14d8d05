"""
The SIP message model (RFC 3261 §7): :class:`Headers`, :class:`Request` and
:class:`Response`, with accessors that parse header values on first use and
cache them until the headers change.

Import these from :mod:`pbx.sip.message`, which also parses and frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from attrs import Factory, define, field

from pbx.sip.headers import (
    LIST_HEADERS,
    CSeq,
    NameAddr,
    Via,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_uint,
    parse_via,
    split_list,
)
from pbx.sip.uri import URI, SIPParseError

__all__ = ["REASON_PHRASES", "Headers", "Request", "Response", "reason_phrase"]


REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK",
    202: "Accepted", 204: "No Notification", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    429: "Provide Referrer Identity", 430: "Flow Failed",
    439: "First Hop Lacks Outbound Support", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}  # fmt: skip
_CLASS_PHRASES = {1: "Provisional", 2: "Success", 3: "Redirection",
                  4: "Client Error", 5: "Server Error", 6: "Global Failure"}  # fmt: skip


def reason_phrase(status: int) -> str:
    """
    Give the default reason phrase for a status code.

    :param status: 100 to 699.
    :returns: the RFC phrase, or a generic one for the code's class.
    """
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")


def _check_value(value: str) -> str:
    # A CR or LF in a value would let it smuggle in extra header lines.
    if "\r" in value or "\n" in value:
        raise ValueError("header values must not contain CR or LF")
    return value.strip()


class Headers:
    """
    An ordered multi-map of header lines (RFC 3261 §7.3).

    Lookups are case-insensitive and understand compact forms; names are
    stored canonically (:func:`pbx.sip.headers.canonical_name`).  Values are
    the raw text of each line.  A plain class rather than attrs: it has its
    own constructor from pairs and its own equality.
    """

    __slots__ = ("_items", "_cache")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        """
        Make headers from ``(name, value)`` pairs.

        :param items: ``(name, value)`` pairs, in order.
        :raises ValueError: on a name that is not a token or a value with CR/LF.
        """
        self._items: list[tuple[str, str, str]] = []
        self._cache: dict[str, Any] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._items = items
        headers._cache = {}
        return headers

    def get(self, name: str) -> str | None:
        """
        Return the first value of a header.

        :param name: any spelling, e.g. ``call-id`` or ``i``.
        :returns: the first line's value (its first element for list
            headers), or ``None``.
        """
        key = header_key(name)[0]
        for k, _, value in self._items:
            if k == key:
                if key in LIST_HEADERS:
                    elements = [e for e in split_list(value) if e]
                    if not elements:
                        continue
                    return elements[0]
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """
        Return every value of a header, across lines.

        :param name: any spelling.
        :returns: for list headers (Via, Contact, Route...) the comma-separated
            elements of all lines; otherwise one value per line.
        """
        key = header_key(name)[0]
        values = [value for k, _, value in self._items if k == key]
        if key in LIST_HEADERS:
            return [e for value in values for e in split_list(value) if e]
        return values

    def add(self, name: str, value: str) -> None:
        """
        Append a header line.

        :param name: any spelling; stored canonically.
        :param value: the value.
        """
        key, canonical = header_key(name)
        self._items.append((key, canonical, _check_value(value)))
        self._cache.clear()

    def prepend(self, name: str, value: str) -> None:
        """
        Insert a line before the first line of the same header (or at the top),
        as a proxy adds its Via or Record-Route (RFC 3261 §16.6).

        :param name: any spelling.
        :param value: the value.
        """
        key, canonical = header_key(name)
        index = next((i for i, item in enumerate(self._items) if item[0] == key), 0)
        self._items.insert(index, (key, canonical, _check_value(value)))
        self._cache.clear()

    def set(self, name: str, value: str) -> None:
        """
        Replace all lines of a header by one, where the first one was.

        :param name: any spelling.
        :param value: the value.
        """
        key, canonical = header_key(name)
        value = _check_value(value)
        items = []
        placed = False
        for item in self._items:
            if item[0] != key:
                items.append(item)
            elif not placed:
                items.append((key, canonical, value))
                placed = True
        if not placed:
            items.append((key, canonical, value))
        self._items = items
        self._cache.clear()

    def remove(self, name: str) -> None:
        """
        Remove every line of a header.

        :param name: any spelling.
        """
        key = header_key(name)[0]
        self._items = [item for item in self._items if item[0] != key]
        self._cache.clear()

    def copy(self) -> Headers:
        """
        Copy.

        :returns: an independent copy.
        """
        return Headers._from_parsed(list(self._items))

    def _values(self, key: str) -> list[str]:
        return [value for k, _, value in self._items if k == key]

    def __contains__(self, name: object) -> bool:
        """Whether a header (any spelling) is present."""
        if not isinstance(name, str):
            return False
        key = header_key(name)[0]
        return any(item[0] == key for item in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Iterate ``(name, value)`` lines in order."""
        return ((name, value) for _, name, value in self._items)

    def items(self) -> list[tuple[str, str]]:
        """
        List the lines.

        :returns: ``(canonical name, value)`` pairs in order.
        """
        return [(name, value) for _, name, value in self._items]

    def __len__(self) -> int:
        """The number of lines."""
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        """Same lines, same order (names compared case-insensitively)."""
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [
            (k, v) for k, _, v in other._items
        ]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """Show the lines."""
        return f"Headers({self.items()!r})"


def _first_values(headers: Headers) -> dict[str, str]:
    """Map each header key to its first value (cached)."""
    first: dict[str, str] | None = headers._cache.get("")
    if first is None:
        first = {}
        for key, _, value in reversed(headers._items):
            first[key] = value
        headers._cache[""] = first
    return first


def _required(headers: Headers, key: str, name: str) -> str:
    value = _first_values(headers).get(key)
    if value is None:
        raise SIPParseError(f"Missing {name} header")
    return value


def _name_addrs(headers: Headers, key: str, name: str) -> tuple[NameAddr, ...]:
    out = []
    for value in headers._values(key):
        for element in split_list(value) or [""]:
            if not element:
                raise SIPParseError(f"Empty {name} value")
            if element == "*" and key == "contact":
                continue
            out.append(parse_name_addr(element))
    return tuple(out)


def _vias(headers: Headers) -> tuple[Via, ...]:
    out = []
    for value in headers._values("via"):
        for element in split_list(value) or [""]:
            if not element:
                raise SIPParseError("Empty Via value")
            out.append(parse_via(element))
    return tuple(out)


class _Message:
    """
    Accessors shared by requests and responses.  Parsed values are cached in
    the :class:`Headers` (and forgotten when they change).  Accessors of
    required headers raise :class:`SIPParseError` when the header is missing
    or malformed; :func:`parse_message` has already checked them.  Treat the
    values returned as read-only: change a message through its headers.
    """

    __slots__ = ()
    headers: Headers
    body: bytes

    @property
    def vias(self) -> list[Via]:
        """Every Via value in order, top first."""
        cache = self.headers._cache
        vias = cache.get("vias")
        if vias is None:
            vias = cache["vias"] = _vias(self.headers)
        return list(vias)

    @property
    def top_via(self) -> Via:
        """The first Via."""
        vias = self.vias
        if not vias:
            raise SIPParseError("Missing Via header")
        return vias[0]

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return _required(self.headers, "call-id", "Call-ID")

    @property
    def cseq(self) -> CSeq:
        """The parsed CSeq."""
        cache = self.headers._cache
        cseq = cache.get("cseq")
        if cseq is None:
            cseq = cache["cseq"] = parse_cseq(_required(self.headers, "cseq", "CSeq"))
        return cseq  # type: ignore[no-any-return]

    @property
    def from_(self) -> NameAddr:
        """The parsed From."""
        cache = self.headers._cache
        value = cache.get("from")
        if value is None:
            value = _required(self.headers, "from", "From")
            value = cache["from"] = parse_name_addr(value)
        return value  # type: ignore[no-any-return]

    @property
    def to(self) -> NameAddr:
        """The parsed To."""
        cache = self.headers._cache
        value = cache.get("to")
        if value is None:
            value = cache["to"] = parse_name_addr(_required(self.headers, "to", "To"))
        return value  # type: ignore[no-any-return]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0-255, RFC 3261 §20.22), or ``None`` when absent."""
        value = _first_values(self.headers).get("max-forwards")
        return None if value is None else parse_uint(value, 255)

    def _name_addrs(self, key: str, name: str) -> list[NameAddr]:
        cache = self.headers._cache
        values = cache.get(key)
        if values is None:
            values = cache[key] = _name_addrs(self.headers, key, name)
        return list(values)

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value except ``*`` (see :attr:`contact_wildcard`)."""
        return self._name_addrs("contact", "Contact")

    @property
    def contact_wildcard(self) -> bool:
        """Whether a Contact is ``*`` (REGISTER removing all bindings, §10.2.2)."""
        return "*" in self.headers.get_all("Contact")

    @property
    def routes(self) -> list[NameAddr]:
        """Every Route value in order."""
        return self._name_addrs("route", "Route")

    @property
    def record_routes(self) -> list[NameAddr]:
        """Every Record-Route value in order."""
        return self._name_addrs("record-route", "Record-Route")

    @property
    def expires(self) -> int | None:
        """Expires (delta-seconds), or ``None`` when absent."""
        value = _first_values(self.headers).get("expires")
        return None if value is None else parse_uint(value)

    @property
    def content_length(self) -> int | None:
        """The declared Content-Length, or ``None`` when absent."""
        value = _first_values(self.headers).get("content-length")
        return None if value is None else parse_uint(value)


def _serialise(start_line: str, headers: Headers, body: bytes) -> bytes:
    # Content-Length always reflects the body, in place of the first
    # Content-Length line (so canonical input round-trips byte for byte).
    length = str(len(body))
    lines = [start_line]
    placed = False
    for key, name, value in headers._items:
        if key == "content-length":
            if placed:
                continue
            value, placed = length, True
        lines.append(f"{name}: {value}")
    if not placed:
        lines.append("Content-Length: " + length)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


@define(eq=False)
class Request(_Message):
    """
    A SIP request.

    :ivar method: case-sensitive method token; unknown methods are valid.
    :ivar uri: the Request-URI.
    :ivar headers: the header lines.
    :ivar body: the body octets.
    :ivar version: the SIP-Version.
    """

    method: str
    uri: URI
    headers: Headers = field(factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def raw_uri(self) -> str:
        """The Request-URI text (as received, if it was parsed and unchanged)."""
        return str(self.uri)

    def to_bytes(self) -> bytes:
        """
        Serialise, with a Content-Length matching the body.

        :returns: the wire form.
        """
        return _serialise(
            f"{self.method} {self.uri} {self.version}", self.headers, self.body
        )


@define(eq=False)
class Response(_Message):
    """
    A SIP response.

    :ivar status: the status code, 100-699.
    :ivar reason: the reason phrase (defaults to :func:`reason_phrase`).
    :ivar headers: the header lines.
    :ivar body: the body octets.
    :ivar version: the SIP-Version.
    """

    status: int
    reason: str = field(
        default=Factory(lambda self: reason_phrase(self.status), takes_self=True)
    )
    headers: Headers = field(factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def to_bytes(self) -> bytes:
        """
        Serialise, with a Content-Length matching the body.

        :returns: the wire form.
        """
        return _serialise(
            f"{self.version} {self.status} {self.reason}", self.headers, self.body
        )


# Headers that must not repeat (RFC 3261 §7.3.1; RFC 4475 §3.3.8, §3.3.9).
