"""
Cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3) and spotting
the CRLF keep-alives of RFC 5626 §3.5.1 between them.

Kept apart from :mod:`pbx.sip.message` (which re-exports both names) to keep
modules small; it needs nothing of the message model.
"""

from __future__ import annotations

import enum
import re

from attrs import define, field

from pbx.sip.headers import parse_uint
from pbx.sip.uri import SIPParseError

__all__ = ["KeepAlive", "StreamFramer"]

_FOLD = re.compile(r"\r\n[ \t]+")


class KeepAlive(enum.Enum):
    """Keep-alives found between messages on a stream (RFC 5626 §3.5.1)."""

    #: CRLF CRLF: the peer pings; answer with one CRLF.
    PING = "ping"
    #: a single CRLF: the peer answered our ping.
    PONG = "pong"


def _stream_content_length(head: bytes) -> int:
    found: str | None = None
    text = _FOLD.sub(" ", head.decode("latin-1"))  # RFC 3261 §7.3.1
    for line in text.split("\r\n")[1:]:
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

    @property
    def buffered(self) -> int:
        """Octets held: the start of a message not yet complete."""
        return len(self._buffer)

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
        pos = 0  # start of the next message; consumed octets go in one del
        while True:
            if self._pending is None:
                run = pos
                while buffer.startswith(b"\r\n", run):
                    run += 2
                pairs = (run - pos) // 2
                left = len(buffer) - run
                if pairs % 2 and (left == 0 or (left == 1 and buffer[run] == 13)):
                    pairs, run = pairs - 1, run - 2  # maybe half a ping: wait
                out += [KeepAlive.PING] * (pairs // 2)
                if pairs % 2:
                    out.append(KeepAlive.PONG)
                pos = run
                end = buffer.find(b"\r\n\r\n", max(pos, self._scanned - 3))
                if end < 0:
                    if len(buffer) - pos > self.max_size:
                        raise SIPParseError("Message too large")
                    self._scanned = len(buffer)
                    break
                length = _stream_content_length(bytes(buffer[pos:end]))
                self._pending = end + 4 - pos + length
                if self._pending > self.max_size:
                    raise SIPParseError("Message too large")
            if len(buffer) - pos < self._pending:
                break
            out.append(bytes(buffer[pos : pos + self._pending]))
            pos += self._pending
            self._pending = None
            self._scanned = pos
        del buffer[:pos]
        self._scanned = max(0, self._scanned - pos)
        return out
