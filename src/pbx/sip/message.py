"""
SIP messages (RFC 3261 §7): parse, answer and frame.  The public face of
:mod:`pbx.sip.model` (Headers, Request, Response) and :mod:`pbx.sip.framing`.

:func:`parse_message` turns one datagram (or one message framed by
:class:`StreamFramer`) into a :class:`Request` or :class:`Response`.  Header
lines are split eagerly; header values are parsed on first use and cached.
The headers every element needs (Via, From, To, Call-ID, CSeq, Max-Forwards,
Content-Length, Contact) are checked before a message is returned, so a
message that parses never fails later on those, and a malformed request comes
back inside :class:`MalformedMessage` for a ``400`` (RFC 3261 §8.2, RFC 4475).
"""

from __future__ import annotations

import re

from pbx.sip.framing import KeepAlive, StreamFramer
from pbx.sip.headers import HEADER_NAMES, TOKEN, header_key, parse_uint
from pbx.sip.model import (
    REASON_PHRASES,
    Headers,
    Request,
    Response,
    _first_values,
    reason_phrase,
)
from pbx.sip.uri import URI, SIPParseError, parse_uri

__all__ = [
    "REASON_PHRASES",
    "Headers",
    "KeepAlive",
    "MalformedMessage",
    "Request",
    "Response",
    "SIPParseError",
    "StreamFramer",
    "UnsupportedVersion",
    "make_response",
    "parse_message",
    "reason_phrase",
]


class MalformedMessage(SIPParseError):
    """
    A message :func:`parse_message` rejects.

    :ivar request: the partially parsed request when a response can still be
        sent (start line and at least one Via were read), else ``None``.
    """

    def __init__(self, reason: str, request: Request | None = None) -> None:
        super().__init__(reason)
        self.request = request


class UnsupportedVersion(MalformedMessage):
    """The SIP-Version is not ``SIP/2.0``: answer 505 (RFC 3261 §21.5.20)."""

    status = 505


_SINGLE = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "from": "From",
    "to": "To",
    "max-forwards": "Max-Forwards",
    "content-length": "Content-Length",
}
_REQUIRED = (("via", "Via"), ("from", "From"), ("to", "To"),
             ("call-id", "Call-ID"), ("cseq", "CSeq"))  # fmt: skip
_VERSION = re.compile(r"SIP/\d+\.\d+", re.I)
_FOLD_CRLF = re.compile(r"\r\n[ \t]+")
_FOLD_LF = re.compile(r"\n[ \t]+")


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """
    Parse one SIP message.

    :param data: one UDP datagram, or one message cut by :class:`StreamFramer`.
    :param stream: the message came over a stream: Content-Length is then
        mandatory (RFC 3261 §18.3).  Over datagrams a missing Content-Length
        means the body runs to the end, and octets past it are dropped.
    :returns: the request or response.
    :raises UnsupportedVersion: for a version other than SIP/2.0 (answer 505).
    :raises MalformedMessage: for anything malformed; ``request`` is set when
        the start line and a Via could be read, so ``400 <reason>`` can go back.
    """
    try:
        return _parse(data, stream)
    except MalformedMessage:
        raise
    except SIPParseError as e:
        raise MalformedMessage(e.reason) from None


def _parse(data: bytes, stream: bool) -> Request | Response:
    if type(data) is not bytes:
        data = bytes(data)
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 §7.5
        start += 2
    end = data.find(b"\r\n\r\n", start)
    lf_end = data.find(b"\n\n", start)
    if end >= 0 and (lf_end < 0 or end < lf_end):
        head_end, body_start = end, end + 4
    elif lf_end >= 0:
        head_end, body_start = lf_end, lf_end + 2
    elif stream:
        raise SIPParseError("Incomplete header section")
    else:
        # The datagram ends inside the header section (RFC 4475 §3.1.2.15).
        head_end = body_start = len(data)
    text = data[start:head_end].decode("utf-8", "surrogateescape")
    if body_start == head_end:
        text = text.rstrip("\r\n")
    if not text:
        raise SIPParseError("Empty message")
    crlf = body_start - head_end == 4 or (body_start == head_end and "\r\n" in text)
    eol = "\r\n" if crlf else "\n"  # tolerate LF-only messages
    if eol + " " in text or eol + "\t" in text:
        # RFC 3261 §7.3.1: a folded line is equivalent to one SP.  One linear
        # pass, however many continuation lines a peer sends.
        text = _FOLD_CRLF.sub(" ", text) if crlf else _FOLD_LF.sub(" ", text)
    lines = text.split(eol)

    items: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    duplicate = None
    names = HEADER_NAMES
    first = lines[0]
    if "\r" in first or "\n" in first:
        raise SIPParseError("Bare CR or LF in start line")
    for line in lines[1:]:
        if "\r" in line or "\n" in line:
            raise SIPParseError("Bare CR or LF in header section")
        name, colon, value = line.partition(":")
        if not colon:
            raise SIPParseError("Malformed header line")
        known = names.get(name)
        key, name = known if known else header_key(name.rstrip(" \t"))
        if key in _SINGLE:
            if key in seen:
                duplicate = duplicate or _SINGLE[key]
            seen.add(key)
        items.append((key, name, value.strip()))
    headers = Headers._from_parsed(items)

    message: Request | Response
    uri_error = version_error = None
    if first[:4].upper() == "SIP/":
        parts = first.split(" ", 2)
        code = parts[1] if len(parts) > 1 else ""
        if not (len(code) == 3 and code.isascii() and code.isdigit()) or code[0] == "0":
            raise SIPParseError("Malformed Status-Line")  # RFC 4475 §3.1.2.19
        if int(code) > 699:
            raise SIPParseError("Status code out of range")
        if parts[0].upper() != "SIP/2.0":
            raise UnsupportedVersion("Version Not Supported")
        reason = parts[2] if len(parts) > 2 else ""
        message = Response(int(code), reason, headers, version=parts[0])
    else:
        words = first.split()
        if len(words) < 3 or not TOKEN.fullmatch(words[0]):
            raise SIPParseError("Malformed Request-Line")
        method, version = words[0], words[-1]
        raw_uri = " ".join(words[1:-1])
        if not _VERSION.fullmatch(version):
            raise SIPParseError("Malformed Request-Line")
        if len(words) != 3 or first != " ".join(words):
            # RFC 3261 §7.1: exactly one SP between elements, none inside the
            # URI (RFC 4475 §3.1.2.8-10); still a request we can answer 400.
            uri_error = "Malformed Request-Line"
        elif version.upper() != "SIP/2.0":
            version_error = "Version Not Supported"
        try:
            uri = parse_uri(raw_uri)
        except SIPParseError as e:
            uri_error = uri_error or f"Malformed Request-URI ({e.reason})"
            uri = URI(scheme="", opaque=raw_uri)
        else:
            if uri.headers:
                # RFC 3261 §19.1.1 table (RFC 4475 §3.1.2.11 escruri).
                uri_error = uri_error or "Request-URI must not contain headers"
        message = Request(method, uri, headers, b"", version)

    try:
        if version_error:
            raise UnsupportedVersion(version_error)
        if uri_error:
            raise SIPParseError(uri_error)
        if duplicate:
            raise SIPParseError(f"Multiple {duplicate} headers")
        message.body = _body(message, data[body_start:], stream)
        _validate(message)
    except SIPParseError as e:
        if not (isinstance(message, Request) and "via" in {item[0] for item in items}):
            raise
        if isinstance(e, MalformedMessage):
            e.request = message
            raise
        raise MalformedMessage(e.reason, message) from None
    return message


def _body(message: Request | Response, rest: bytes, stream: bool) -> bytes:
    declared = message.headers.get("Content-Length")
    if declared is None:
        if stream:
            raise SIPParseError("Missing Content-Length")
        return rest
    try:
        length = parse_uint(declared)
    except SIPParseError:
        raise SIPParseError("Malformed Content-Length") from None  # §3.1.2.3
    if length > len(rest):
        raise SIPParseError("Content-Length larger than message")  # §3.1.2.2
    # RFC 3261 §18.3: octets past Content-Length are discarded (dblreq).
    return rest if length == len(rest) else rest[:length]


def _validate(message: Request | Response) -> None:
    """Parse the headers every element relies on (RFC 3261 §8.1.1)."""
    headers = message.headers
    first = _first_values(headers)
    for key, name in _REQUIRED:
        if key not in first:
            raise SIPParseError(f"Missing {name} header")
    call_id = first["call-id"]
    if not call_id or " " in call_id or "\t" in call_id:
        raise SIPParseError("Malformed Call-ID header")
    try:
        message.vias  # noqa: B018 (parses and caches)
    except SIPParseError as e:
        raise SIPParseError(f"Malformed Via header ({e.reason})") from None
    try:
        message.from_  # noqa: B018
    except SIPParseError as e:
        raise SIPParseError(f"Malformed From header ({e.reason})") from None
    try:
        message.to  # noqa: B018
    except SIPParseError as e:
        raise SIPParseError(f"Malformed To header ({e.reason})") from None
    if isinstance(message, Request) and message.cseq.method != message.method:
        raise SIPParseError("CSeq method does not match")  # RFC 4475 §3.1.2.17
    message.cseq  # noqa: B018
    if "max-forwards" in first:
        try:
            parse_uint(first["max-forwards"], 255)
        except SIPParseError:
            raise SIPParseError("Malformed Max-Forwards header") from None
    if "contact" in first:
        try:
            message.contacts  # noqa: B018
        except SIPParseError as e:
            raise SIPParseError(f"Malformed Contact header ({e.reason})") from None


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
) -> Response:
    """
    Make a response to ``request`` (RFC 3261 §8.2.6).

    Copies every Via (in order), From, To, Call-ID and CSeq; copies Timestamp
    into a 100 (§8.2.6.1).  Headers a partial request lacks are left out.

    :param request: the request, possibly the partial one of a SIPParseError.
    :param status: the status code.
    :param reason: the reason phrase; defaults to :func:`reason_phrase`.
    :param to_tag: a tag to add to To if it has none.
    :returns: the response; add Contact, Allow... before sending.
    """
    order = {"via": 0, "from": 1, "to": 2, "call-id": 3, "cseq": 4}
    if status == 100:
        order["timestamp"] = 5
    lines = []
    seen = set()
    for item in request.headers._items:
        key = item[0]
        if key in order and (key == "via" or key not in seen):
            seen.add(key)  # a partial request may repeat From, To...: copy one
            lines.append(item)
    if to_tag is not None:
        try:
            has_tag = request.to.tag is not None
        except SIPParseError:
            has_tag = True  # never extend a To we cannot read
        if not has_tag:
            lines = [
                (k, n, f"{v};tag={to_tag}" if k == "to" else v) for k, n, v in lines
            ]
    lines.sort(key=lambda item: order[item[0]])  # stable: Vias keep their order
    return Response(
        status, reason or reason_phrase(status), Headers._from_parsed(lines)
    )
