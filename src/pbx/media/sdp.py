"""
SDP session descriptions (RFC 4566): parse and build.

:func:`parse_sdp` turns a body into a :class:`SessionDescription` of frozen
values and :meth:`SessionDescription.to_bytes` writes one back, CRLF-terminated
in the order of RFC 4566 §5, so ``parse_sdp(d.to_bytes()) == d``.

The parser is strict about the structure a B2BUA relies on (``v=``, ``o=``,
``s=``, ``t=``, ``c=``, ``b=`` and ``m=`` lines; every ``SDPError`` becomes a
``488``) and lenient about the rest: LF-only line endings, trailing whitespace
and blank lines are accepted, unknown attributes and unknown line types are
kept and written back.  A malformed attribute value (``a=rtpmap``, ``a=ptime``,
``a=rtcp``) never fails the parse: the helper that reads it skips it.

Nothing here imports Twisted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from attrs import field, frozen

__all__ = [
    "DIRECTIONS",
    "Attribute",
    "Bandwidth",
    "Connection",
    "MediaDescription",
    "Origin",
    "RTCPAddress",
    "SDPError",
    "SessionDescription",
    "Timing",
    "direction",
    "effective_connection",
    "is_hold",
    "parse_sdp",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

Attribute = tuple[str, str | None]

# RFC 4566 §9: token-char.
_TOKEN_CHARS = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_TOKEN = re.compile(_TOKEN_CHARS + r"\Z")
_PROTO = re.compile(rf"{_TOKEN_CHARS}(?:/{_TOKEN_CHARS})*\Z")
_VISIBLE = re.compile(r"[\x21-\x7e]+\Z")
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_DIGITS = re.compile(r"[0-9]{1,20}\Z")
_LINE = re.compile(r"([a-z])=(.*)\Z", re.DOTALL)
_PTIME = re.compile(r"([0-9]{1,5})(?:\.[0-9]*)?\Z")
_FIELDS = re.compile(r"[ \t]+")
# RFC 4566 §5: lines of the session part; only i, c, b, k, a go after m=.
_SESSION_ONLY = frozenset("vosuepzrt")
_ONCE = {
    "i": "information",
    "u": "uri",
    "c": "connection",
    "z": "time_zones",
    "k": "key",
}
_LISTS = {"e": "emails", "p": "phones", "b": "bandwidths", "a": "attributes"}


class SDPError(ValueError):
    """A session description is malformed or unusable: answer ``488``."""


def _frozen(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(items)


def _uint(text: str, what: str, maximum: int | None = None) -> int:
    """Parse ASCII digits (never more than 20, so ``int`` cannot fail)."""
    if not _DIGITS.match(text):
        raise SDPError(f"{what}: not a number: {text!r}")
    value = int(text)
    if maximum is not None and value > maximum:
        raise SDPError(f"{what}: out of range: {text!r}")
    return value


def _fields(value: str) -> list[str]:
    value = value.strip(" \t")
    return _FIELDS.split(value) if value else []


@frozen
class Connection:
    """
    A ``c=`` line (RFC 4566 §5.7), also the address part of ``o=``.

    :ivar address: unicast address or host name, or multicast address with its
        ``/ttl`` and ``/count`` suffixes; IPv6 without brackets (RFC 5118 §4.6).
    """

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """``IN IP6`` for an IPv6 literal ``address``, else ``IN IP4``."""
        return cls("IN", "IP6" if ":" in address else "IP4", address)

    @property
    def host(self) -> str:
        """The address without multicast ``/ttl`` or ``/count`` suffixes."""
        return self.address.split("/", 1)[0]

    @property
    def is_null(self) -> bool:
        """True for ``0.0.0.0`` or ``::``: RFC 2543-style hold (RFC 3264 §8.4)."""
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

    def to_text(self) -> str:
        """The line value, e.g. ``IN IP4 192.0.2.1``."""
        return f"{self.nettype} {self.addrtype} {self.address}"


@frozen
class Origin:
    """The ``o=`` line (RFC 4566 §5.2)."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    def to_text(self) -> str:
        """The line value."""
        return (f"{self.username} {self.sess_id} {self.sess_version} "
                f"{self.nettype} {self.addrtype} {self.address}")  # fmt: skip


@frozen
class Bandwidth:
    """A ``b=`` line (RFC 4566 §5.8), e.g. ``AS:64``."""

    bwtype: str
    value: int


@frozen
class Timing:
    """A ``t=`` line and the ``r=`` lines that follow it (RFC 4566 §5.9-5.10)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = field(default=(), converter=_frozen)


@frozen
class RTCPAddress:
    """An ``a=rtcp`` attribute (RFC 3605): where RTCP goes if not to port + 1."""

    port: int
    connection: Connection | None = None


@frozen
class MediaDescription:
    """
    One ``m=`` section (RFC 4566 §5.14) with its ``i=``, ``c=``, ``b=``,
    ``k=`` and ``a=`` lines.

    :ivar formats: payload type numbers as strings for RTP profiles, else
        the format tokens as written.
    :ivar attributes: ``(name, value)`` in order; ``value`` is ``None`` for a
        property attribute such as ``a=sendrecv``.
    :ivar extra_lines: ``(type, value)`` of lines of unknown type, kept.
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...] = field(converter=_frozen)
    port_count: int = 1
    information: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = field(default=(), converter=_frozen)
    key: str | None = None
    attributes: tuple[Attribute, ...] = field(default=(), converter=_frozen)
    extra_lines: tuple[tuple[str, str], ...] = field(default=(), converter=_frozen)

    @property
    def is_rtp(self) -> bool:
        """True for RTP profiles (``RTP/AVP``, ``UDP/TLS/RTP/SAVPF``...)."""
        return "RTP/" in self.proto.upper()

    @property
    def is_secure(self) -> bool:
        """True for SRTP and DTLS profiles (``RTP/SAVP``, ``UDP/TLS/...``)."""
        proto = self.proto.upper()
        return "SAVP" in proto or "TLS" in proto

    def attribute(self, name: str) -> str | None:
        """
        The value of the first attribute named ``name`` (case-insensitive).

        :returns: the value, ``""`` for a property attribute, ``None`` if absent.
        """
        for found in self.attribute_values(name):
            return found
        return None

    def attribute_values(self, name: str) -> list[str]:
        """Values of every attribute named ``name``; ``""`` for property ones."""
        name = name.lower()
        return [v or "" for n, v in self.attributes if n.lower() == name]

    def has_attribute(self, name: str) -> bool:
        """True when an attribute named ``name`` is present."""
        name = name.lower()
        return any(n.lower() == name for n, _ in self.attributes)

    @property
    def rtpmap(self) -> dict[str, tuple[str, int, int]]:
        """
        ``a=rtpmap`` (RFC 4566 §6) as payload type -> (encoding, clock rate,
        channels); channels default to 1; malformed lines are skipped.
        """
        result: dict[str, tuple[str, int, int]] = {}
        for value in self.attribute_values("rtpmap"):
            parts = _fields(value)
            codec = parts[1].split("/") if len(parts) == 2 else []
            if not _DIGITS.match(parts[0] if parts else "") or not (
                len(codec) in (2, 3) and codec[0] and all(map(_DIGITS.match, codec[1:]))
            ):
                continue
            channels = int(codec[2]) if len(codec) == 3 else 1
            result.setdefault(parts[0], (codec[0], int(codec[1]), channels))
        return result

    @property
    def fmtp(self) -> dict[str, str]:
        """``a=fmtp`` as payload type (or format) -> parameter string."""
        result: dict[str, str] = {}
        for value in self.attribute_values("fmtp"):
            fmt, _, params = value.strip(" \t").partition(" ")
            if fmt:
                result.setdefault(fmt, params.strip(" \t"))
        return result

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (RFC 4566 §6), ``None`` if absent or bad."""
        value = (self.attribute("ptime") or "").strip(" \t")
        match = _PTIME.match(value)  # decimals such as 20.0 are seen in the wild
        return int(match.group(1)) if match and int(match.group(1)) > 0 else None

    @property
    def rtcp(self) -> RTCPAddress | None:
        """``a=rtcp`` (RFC 3605), ``None`` if absent or malformed."""
        parts = _fields(self.attribute("rtcp") or "")
        if not parts or not _DIGITS.match(parts[0]) or int(parts[0]) > 65535:
            return None
        if len(parts) == 1:
            return RTCPAddress(int(parts[0]))
        if len(parts) != 4:
            return None
        return RTCPAddress(int(parts[0]), Connection(*parts[1:]))

    def own_direction(self) -> str | None:
        """The direction attribute of this section, ``None`` if it has none."""
        return _direction_of(self.attributes)

    def _lines(self) -> list[str]:
        port = (
            f"{self.port}/{self.port_count}" if self.port_count != 1 else str(self.port)
        )
        lines = [f"m={' '.join([self.media, port, self.proto, *self.formats])}"]
        if self.information is not None:
            lines.append(f"i={self.information}")
        if self.connection is not None:
            lines.append(f"c={self.connection.to_text()}")
        lines += [f"b={b.bwtype}:{b.value}" for b in self.bandwidths]
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines += [_attribute_line(a) for a in self.attributes]
        lines += [f"{t}={v}" for t, v in self.extra_lines]
        return lines


@frozen
class SessionDescription:
    """
    A whole session description (RFC 4566 §5).

    :ivar timings: ``t=`` lines with their ``r=`` lines; at least one.
    :ivar attributes: session-level ``(name, value)`` attributes in order.
    :ivar extra_lines: session-level lines of unknown type, kept.
    """

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = field(default=(), converter=_frozen)
    phones: tuple[str, ...] = field(default=(), converter=_frozen)
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = field(default=(), converter=_frozen)
    timings: tuple[Timing, ...] = field(default=(Timing(),), converter=_frozen)
    time_zones: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = field(default=(), converter=_frozen)
    media: tuple[MediaDescription, ...] = field(default=(), converter=_frozen)
    extra_lines: tuple[tuple[str, str], ...] = field(default=(), converter=_frozen)

    def to_bytes(self) -> bytes:
        """The description in RFC 4566 §5 order, every line ending in CRLF."""
        # RFC 4566 §5.3: s= must not be empty; a single space stands for none.
        lines = [f"v={self.version}", f"o={self.origin.to_text()}",
                 f"s={self.session_name or ' '}"]  # fmt: skip
        for letter, value in (("i", self.information), ("u", self.uri)):
            if value is not None:
                lines.append(f"{letter}={value}")
        lines += [f"e={e}" for e in self.emails] + [f"p={p}" for p in self.phones]
        if self.connection is not None:
            lines.append(f"c={self.connection.to_text()}")
        lines += [f"b={b.bwtype}:{b.value}" for b in self.bandwidths]
        for timing in self.timings or (Timing(),):  # RFC 4566 §5: t= is mandatory
            lines.append(f"t={timing.start} {timing.stop}")
            lines += [f"r={r}" for r in timing.repeats]
        for letter, value in (("z", self.time_zones), ("k", self.key)):
            if value is not None:
                lines.append(f"{letter}={value}")
        lines += [_attribute_line(a) for a in self.attributes]
        lines += [f"{t}={v}" for t, v in self.extra_lines]
        for media in self.media:
            lines += media._lines()
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _attribute_line(attribute: Attribute) -> str:
    name, value = attribute
    return f"a={name}" if value is None else f"a={name}:{value}"


def _direction_of(attributes: Iterable[Attribute]) -> str | None:
    for name, _ in attributes:
        if name.lower() in DIRECTIONS:
            return name.lower()
    return None


def effective_connection(
    session: SessionDescription, media: MediaDescription
) -> Connection | None:
    """
    The connection a stream uses: its own ``c=``, else the session's
    (RFC 4566 §5.7).

    :returns: the connection, or ``None`` when neither is present (only
        possible for a stream with port 0).
    """
    return media.connection if media.connection is not None else session.connection


def direction(session: SessionDescription, media: MediaDescription) -> str:
    """
    The direction of a stream: its own attribute, else the session-level one,
    else ``sendrecv`` (RFC 3264 §5.1).
    """
    return media.own_direction() or _direction_of(session.attributes) or "sendrecv"


def is_hold(session: SessionDescription, media: MediaDescription) -> bool:
    """
    True when the author of ``session`` puts ``media`` on hold: direction
    ``sendonly`` or ``inactive``, or connection address ``0.0.0.0``
    (RFC 2543-style hold, RFC 3264 §8.4).
    """
    connection = effective_connection(session, media)
    if connection is not None and connection.is_null:
        return True
    return direction(session, media) in ("sendonly", "inactive")


# Parsing ------------------------------------------------------------------


def _split_lines(data: bytes) -> list[tuple[int, str, str]]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SDPError("SDP body must be bytes")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SDPError(f"SDP is not UTF-8: {e.reason} at byte {e.start}") from None
    lines = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip(" \t\r")
        if not line:
            continue  # blank lines, including the trailing one, are tolerated
        if "\r" in line or "\x00" in line:
            raise SDPError(f"line {number}: CR or NUL inside a line")
        match = _LINE.match(line)
        if match is None:
            raise SDPError(f"line {number}: expected <type>=<value>, got {line[:40]!r}")
        lines.append((number, match.group(1), match.group(2)))
    return lines


def _address(addrtype: str, nettype: str, address: str, what: str) -> str:
    """Check the address of ``c=``/``o=``; IPv6 brackets are tolerated, dropped."""
    if addrtype == "IP6" and address.startswith("[") and "]" in address:
        host, _, rest = address[1:].partition("]")
        address = host + rest
    if not _VISIBLE.match(address):
        raise SDPError(f"{what}: bad address {address!r}")
    if nettype != "IN":
        return address
    host, *suffixes = address.split("/")
    for suffix in suffixes:
        _uint(suffix, f"{what}: multicast suffix")
    try:
        if addrtype == "IP4" and re.fullmatch(r"[0-9.]+", host):
            ipaddress.IPv4Address(host)
        elif addrtype == "IP6" and ":" in host:
            ipaddress.IPv6Address(host)
        elif addrtype in ("IP4", "IP6") and not _HOSTNAME.match(host):
            raise ValueError(host)
    except ValueError:
        raise SDPError(f"{what}: bad {addrtype} address {host!r}") from None
    return address


def _connection(value: str, what: str = "c= line") -> Connection:
    parts = _fields(value)
    if len(parts) != 3 or not all(_TOKEN.match(p) for p in parts[:2]):
        raise SDPError(f"{what}: expected <nettype> <addrtype> <address>")
    return Connection(parts[0], parts[1], _address(parts[1], parts[0], parts[2], what))


def _origin(value: str) -> Origin:
    parts = _fields(value)
    if len(parts) != 6:
        raise SDPError("o= line: expected 6 fields")
    if not _TOKEN.match(parts[1]):
        raise SDPError(f"o= line: bad sess-id {parts[1]!r}")
    address = _connection(" ".join(parts[3:]), "o= line").address
    return Origin(parts[0], parts[1], _uint(parts[2], "o= line: sess-version"),
                  parts[3], parts[4], address)  # fmt: skip


def _bandwidth(value: str) -> Bandwidth:
    bwtype, sep, amount = value.partition(":")
    if not sep or not _TOKEN.match(bwtype):
        raise SDPError(f"b= line: expected <bwtype>:<bandwidth>, got {value!r}")
    return Bandwidth(bwtype, _uint(amount.strip(" \t"), "b= line"))


def _attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    if not _TOKEN.match(name):
        raise SDPError(f"a= line: bad attribute name {name!r}")
    return (name, rest if sep else None)


def _media_line(value: str) -> dict[str, object]:
    parts = _fields(value)
    if len(parts) < 3:
        raise SDPError("m= line: expected <media> <port> <proto> <fmt> ...")
    media, port_text, proto, *formats = parts
    if not _TOKEN.match(media) or not _PROTO.match(proto):
        raise SDPError(f"m= line: bad media or proto in {value!r}")
    port_text, sep, count_text = port_text.partition("/")
    port = _uint(port_text, "m= line: port", 65535)
    count = _uint(count_text, "m= line: port count", 65535) if sep else 1
    if count < 1:
        raise SDPError("m= line: port count must be at least 1")
    if not formats and port != 0:
        raise SDPError("m= line: no formats")
    for fmt in formats:
        if "RTP/" in proto.upper():  # RFC 3551 §3: RTP formats are payload types
            _uint(fmt, "m= line: payload type", 127)
        elif not _TOKEN.match(fmt):
            raise SDPError(f"m= line: bad format {fmt!r}")
    return {"media": media, "port": port, "proto": proto, "formats": formats,
            "port_count": count}  # fmt: skip


def _add_line(sections: list[dict[str, Any]], letter: str, value: str) -> None:
    """Add one line after ``s=`` to the session (``sections[0]``) or last m=."""
    section = sections[-1]
    if letter == "m":
        if not sections[0]["timings"]:
            raise SDPError("m= line before any t= line")
        sections.append(_media_line(value))
    elif len(sections) > 1 and letter in _SESSION_ONLY:
        raise SDPError(f"{letter}= line not allowed in a media section")  # §5 order
    elif letter in "vos":
        raise SDPError(f"duplicate {letter}= line")
    elif letter in _ONCE:
        if _ONCE[letter] in section:
            # At media level, several c= lines only serve layered multicast.
            raise SDPError(f"more than one {letter}= line in a section")
        section[_ONCE[letter]] = _connection(value) if letter == "c" else value
    elif letter == "t":
        parts = _fields(value)
        if len(parts) != 2:
            raise SDPError("t= line: expected <start> <stop>")
        start, stop = (_uint(p, "t= line") for p in parts)
        section["timings"].append(Timing(start, stop))
    elif letter == "r":
        if not section["timings"]:
            raise SDPError("r= line before any t= line")
        last = section["timings"].pop()
        section["timings"].append(Timing(last.start, last.stop, (*last.repeats, value)))
    elif letter in _LISTS:
        parse = {"b": _bandwidth, "a": _attribute}.get(letter, str)
        section.setdefault(_LISTS[letter], []).append(parse(value))
    else:  # unknown type: kept (RFC 4566 §5 would have us drop the whole SDP)
        section.setdefault("extra_lines", []).append((letter, value))


def parse_sdp(data: bytes) -> SessionDescription:
    """
    Parse a session description.

    :param data: the body, UTF-8, CRLF or LF line endings.
    :raises SDPError: on malformed or ambiguous input, with a message for the
        ``488`` Warning; never any other exception.
    """
    lines = _split_lines(data)
    if not lines:
        raise SDPError("empty session description")
    for index, letter in enumerate("vos"):
        if len(lines) <= index or lines[index][1] != letter:
            present = any(t == letter for _, t, _ in lines)
            raise SDPError(f"{letter}= line {'out of order' if present else 'missing'}")
    if lines[0][2].strip(" \t") != "0":
        raise SDPError(f"unsupported SDP version {lines[0][2]!r}")
    try:
        origin = _origin(lines[1][2])
    except SDPError as e:
        raise SDPError(f"line {lines[1][0]}: {e}") from None
    session: dict[str, Any] = {
        "origin": origin,
        "session_name": lines[2][2],
        "timings": [],
    }
    sections: list[dict[str, Any]] = [session]
    for number, letter, value in lines[3:]:
        try:
            _add_line(sections, letter, value)
        except SDPError as e:
            raise SDPError(f"line {number}: {e}") from None
    if not session["timings"]:
        raise SDPError("t= line missing")
    media = [MediaDescription(**m) for m in sections[1:]]
    result = SessionDescription(media=media, **session)
    for index, m in enumerate(result.media):
        # RFC 4566 §5.7: every live stream needs a c= line, its own or the session's.
        if m.port != 0 and effective_connection(result, m) is None:
            raise SDPError(f"no c= line for m= line {index + 1} ({m.media})")
    return result
