"""
Multicast paging: the pager's audio as RTP to a group address and port,
for phones that listen to a multicast page (Yealink, Snom, Grandstream,
Cisco call it "multicast paging" or "multicast listening").

A :class:`MulticastSender` is one more member of the page's
:class:`~pbx.media.mix.Mix`, muted like the member phones, so it hears
the pager and nobody else.  Every ptime (20 ms) it takes that frame,
encodes it in the group's codec and sends one RTP packet (RFC 3550,
payload types of RFC 3551) to the group; silence while the pager says
nothing, so listeners keep the page open until it ends.

It ticks on a 20 ms timer of its own (a feature is not given the media
clock), phase-locked to the media clock's: both run on the one reactor
at the same period, so it takes each round of the mix once.  When the
reactor runs late it sends one packet and the RTP timestamp skips the
time missed.

The socket only sends: nothing is read from it, so it needs no place in
the reactor.  It is non-blocking; a datagram the kernel cannot take at
once is dropped (a lost RTP packet) rather than waited for.  The TTL is 1
by default, so a page does not leave the local network (RFC 1112 §6.1);
``IP_MULTICAST_LOOP`` lets listeners on this host (and tests) hear it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pbx.interfaces import ICodec
from pbx.media.codecs import G722, PCMA, PCMU
from pbx.media.media_clock import stop_counted
from pbx.media.mix import Member, Mix
from pbx.media.rtp import RTPSender

__all__ = ["CODECS", "MulticastSender", "multicast_socket"]

#: The codecs a group may name, by their option value.
CODECS: dict[str, Callable[[], ICodec]] = {"pcmu": PCMU, "pcma": PCMA, "g722": G722}


class SendSocket(Protocol):
    """What the sender needs of a socket."""

    def sendto(self, data: bytes, address: tuple[str, int], /) -> int:
        """Send one datagram."""

    def close(self) -> None:
        """Release the socket."""


def multicast_socket(interface: str, ttl: int, loop: bool) -> SendSocket:
    """
    A non-blocking UDP socket for sending to multicast groups.

    :param interface: the IPv4 address of the interface multicast leaves
        from (``IP_MULTICAST_IF``), or "" for the one the routing table picks.
    :param ttl: ``IP_MULTICAST_TTL`` (1: the local network only).
    :param loop: ``IP_MULTICAST_LOOP``: whether listeners on this host hear it.
    :raises OSError: if the socket cannot be made so.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if loop else 0)
        if interface:
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface)
            )
            sock.bind((interface, 0))
    except OSError:
        sock.close()
        raise
    return sock


class MulticastSender:
    """
    Sends what its place in a mix hears to a multicast group as RTP.

    :param clock: the time source of the 20 ms timer.
    :param destination: the group address and port.
    :param codec: the stream's codec (its static payload type is used).
    :param sock: where datagrams go (:func:`multicast_socket`).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        destination: tuple[str, int],
        codec: ICodec,
        sock: SendSocket,
        ptime: float = 0.02,
    ) -> None:
        self.destination = destination
        self.codec = codec
        self._clock = clock
        self._socket = sock
        self._ptime = ptime
        self._encoder: Any = codec.new_encoder()
        self._rtp = RTPSender(int(codec.payload_type))
        self._member: Member | None = None
        self._loop: LoopingCall | None = None
        #: RTP packets sent, and those the socket refused (dropped).
        self.packets_sent = 0
        self.packets_dropped = 0

    @property
    def samples(self) -> int:
        """PCM samples of one frame at the codec's rate."""
        return int(self.codec.sample_rate * self._ptime)

    @property
    def ticks(self) -> int:
        """RTP clock ticks of one frame (G.722: 8000 Hz clock for 16 kHz audio, RFC 3551 §4.5.2)."""
        return int(self.codec.clock_rate * self._ptime)

    @property
    def running(self) -> bool:
        """Whether packets are being sent."""
        return self._loop is not None

    def start(self, mix: Mix) -> None:
        """Join ``mix`` (muted: it only listens) and send a packet every ptime from the next tick on."""
        if self._loop is not None:
            return
        self._member = mix.add(self, int(self.codec.sample_rate))
        mix.set_muted(self, True)
        self._loop = LoopingCall.withCount(self._tick)
        self._loop.clock = self._clock
        self._loop.start(self._ptime, now=False)

    def stop(self) -> None:
        """Stop sending, leave the mix and close the socket."""
        loop, self._loop = self._loop, None
        if loop is not None:
            stop_counted(loop)
        member, self._member = self._member, None
        if member is not None:
            member.remove()
        self._socket.close()

    def _tick(self, elapsed: int) -> None:
        # Periodic work: one bad tick must not stop the stream.
        try:
            self._send(elapsed)
        except Exception:
            self.log.failure(
                "multicast page to {address}:{port}: a packet failed",
                address=self.destination[0],
                port=self.destination[1],
            )

    def _send(self, elapsed: int) -> None:
        if self._member is None:
            return
        if elapsed > 1:
            # The reactor was late: the stream's timestamps keep real time
            # (RFC 3550 §5.1) and the next packet starts a talkspurt.
            self._rtp.advance((elapsed - 1) * self.ticks)
        frame = self._member.take()
        n = self.samples
        if frame is None:
            frame = np.zeros(n, dtype=np.int16)
        elif len(frame) != n:
            frame = np.pad(frame[:n], (0, n - len(frame[:n])))
        packet = self._rtp.next_packet(self._encoder.encode(frame), self.ticks)
        try:
            self._socket.sendto(packet.to_bytes(), self.destination)
        except OSError as e:
            if not self.packets_dropped:
                self.log.warn(
                    "multicast page to {address}:{port}: cannot send: {error}",
                    address=self.destination[0],
                    port=self.destination[1],
                    error=str(e),
                )
            self.packets_dropped += 1
            return
        self.packets_sent += 1
