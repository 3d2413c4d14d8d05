"""
Cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3) and spotting
the CRLF keep-alives of RFC 5626 §3.5.1 between them.

Kept apart from :mod:`pbx.sip.message` (which re-exports both names) to keep
modules small; it needs nothing of the message model.
"""

from __future__ import annotations

import enum

from attrs import define, field

from pbx.sip.headers import parse_uint
from pbx.sip.uri import SIPParseError

__all__ = ["KeepAlive", "StreamFramer"]


class KeepAlive(enum.Enum):
    """Keep-alives found between messages on a stream (RFC 5626 §3.5.1)."""

    #: CRLF CRLF: the peer pings; answer with one CRLF.
    PING = "ping"
    #: a single CRLF: the peer answered our ping.
    PONG = "pong"


def _stream_content_length(head: bytes) -> int:
    found: str | None = None
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon and name.rstrip(" \t").lower() in ("content-length", "l"):
            value = value.strip()
            if found is not None and value != found:
                raise SIPParseError("Multiple Content-Length headers")
            found = value
    if found is None:
        raise SIPParseError("Missing Content-Length")  # RFC 3261 §18.3
    try:
        return parse_uint(found)
    except SIPParseError:
        raise SIPParseError("Malformed Content-Length") from None


@define(eq=False)
class StreamFramer:
    """
    Cut a TCP/TLS byte stream into messages by Content-Length (RFC 3261 §18.3).

    A :class:`SIPParseError` from :meth:`feed` means framing is lost (no,
    negative or conflicting Content-Length, or a message over ``max_size``):
    close the connection.

    :ivar max_size: the largest message accepted, in octets.
    """

    max_size: int = 65536
    _buffer: bytearray = field(factory=bytearray, init=False)
    _scanned: int = field(default=0, init=False)
    _pending: int | None = field(default=None, init=False)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        """
        Add received bytes.

        :param data: bytes as they arrived.
        :returns: complete messages (for :func:`parse_message` with
            ``stream=True``) and keep-alives, in order.
        :raises SIPParseError: when the stream cannot be framed any more.
        """
        buffer = self._buffer
        buffer += data
        out: list[bytes | KeepAlive] = []
        while True:
            if self._pending is None:
                while buffer.startswith(b"\r\n"):
                    if buffer.startswith(b"\r\n\r\n"):
                        out.append(KeepAlive.PING)
                        del buffer[:4]
                    elif len(buffer) < 4 and b"\r\n\r\n".startswith(buffer):
                        return out  # maybe the start of a ping
                    else:
                        out.append(KeepAlive.PONG)
                        del buffer[:2]
                end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
                if end < 0:
                    if len(buffer) > self.max_size:
                        raise SIPParseError("Message too large")
                    self._scanned = len(buffer)
                    return out
                self._pending = end + 4 + _stream_content_length(bytes(buffer[:end]))
                if self._pending > self.max_size:
                    raise SIPParseError("Message too large")
            if len(buffer) < self._pending:
                return out
            out.append(bytes(buffer[: self._pending]))
            del buffer[: self._pending]
            self._pending = None
            self._scanned = 0
