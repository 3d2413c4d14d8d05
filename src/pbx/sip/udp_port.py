"""
The SIP UDP socket, read with the kernel's receive time of each datagram.

How long a request waited in the socket's receive queue is the one signal
of overload a UDP client feels: past 500 ms it sends the request again
(RFC 3261 §17.1.1.2 Timer A, §17.1.2.2 Timer E), each copy is read and
answered in turn, and a server a little behind its load soon spends most
of its time on copies.  Linux stamps each datagram as it arrives
(``SO_TIMESTAMPNS``, socket(7)); :class:`TimedPort` reads that stamp with
the datagram (``recvmsg``) and hands the wait to the protocol, so that
:mod:`pbx.sip.overload` can refuse new work the moment requests wait too
long, whatever the cause (pbx's own load, another process on the core, a
pause of the reactor).

Where the stamp is not there (another kernel, a reactor without real
sockets), the wait is unknown (None) and nothing is refused on it.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from typing import Any, Protocol

from twisted.internet import udp
from twisted.internet.posixbase import PosixReactorBase
from twisted.python import log

__all__ = ["SO_TIMESTAMPNS", "TimedDatagramReceiver", "TimedPort", "listen_timed"]

#: Linux's SO_TIMESTAMPNS (include/uapi/asm-generic/socket.h, the same value
#: names the control message, SCM_TIMESTAMPNS): a ``struct timespec`` of
#: CLOCK_REALTIME with each datagram.  Python's socket module lacks it.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_CONTROL_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


class TimedDatagramReceiver(Protocol):
    """A datagram protocol that also takes how long each datagram waited."""

    def datagram_waited(self, data: bytes, addr: Any, waited: float | None) -> None:
        """One datagram that waited ``waited`` seconds to be read (None: unknown)."""


class TimedPort(udp.Port):
    """
    A UDP port that stamps each datagram with the seconds it waited in the
    receive queue and hands both to ``protocol.datagram_waited``.

    The loop is Twisted's ``udp.Port.doRead`` with ``recvmsg`` for
    ``recvfrom``: at most ``maxThroughput`` octets a turn, so other sockets
    and timers get their turn too.
    """

    #: Where the kernel time is read (the stamp's clock, CLOCK_REALTIME).
    now = staticmethod(time.time)
    #: Whether the kernel stamps datagrams on this socket.
    stamped = False

    def _bindSocket(self) -> None:  # noqa: N802 - twisted API
        super()._bindSocket()
        if sys.platform.startswith("linux"):
            try:
                self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.stamped = True
            except OSError:
                self.stamped = False

    def doRead(self) -> None:  # noqa: N802 - twisted API
        """Read what the socket holds, up to ``maxThroughput`` octets."""
        read = 0
        sock, size, protocol = self.socket, self.maxPacketSize, self.protocol
        space = _CONTROL_SPACE if self.stamped else 0
        while read < self.maxThroughput:
            try:
                data, ancillary, _flags, addr = sock.recvmsg(size, space)
            except OSError as se:
                no = se.args[0]
                if no in udp._sockErrReadIgnore:
                    return
                if no in udp._sockErrReadRefuse:
                    if self._connectedAddr:
                        protocol.connectionRefused()
                    return
                raise
            read += len(data)
            if self.addressFamily == socket.AF_INET6:
                addr = addr[:2]
            waited = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    waited = max(0.0, self.now() - (seconds + nanoseconds * 1e-9))
            try:
                protocol.datagram_waited(data, addr, waited)
            except BaseException:
                log.err()


def listen_timed(reactor: Any, port: int, protocol: TimedDatagramReceiver, interface: str = "") -> Any:
    """
    Listen on UDP ``port`` with a :class:`TimedPort` where ``reactor`` runs
    real sockets; elsewhere (a test's memory reactor) through its own
    ``listenUDP``, the protocol then called as any datagram protocol.
    """
    if not isinstance(reactor, PosixReactorBase):
        return reactor.listenUDP(port, protocol, interface=interface)
    p = TimedPort(port, protocol, interface=interface, reactor=reactor)
    p.startListening()
    return p
