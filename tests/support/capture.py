"""
A packet capture on the loopback interface (an ``AF_PACKET`` socket, so
root only), and a check of what the captured RTP carries.

:class:`LoopbackCapture` keeps the UDP datagrams to or from a port range
while it runs; :func:`plain_tone_packets` finds those whose payload, read as
RTP with PCMU, is a clear tone: what an encrypted call must never show.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable, Sequence

from support.calls import tone_share

ETH_P_ALL = 0x0003
_ETHERNET = 14  # the loopback interface has (zero) Ethernet headers


def _ulaw_to_linear(code: int) -> int:
    """G.711 mu-law to a 16-bit sample (ITU-T G.711, the inverse of support.calls.ulaw)."""
    code = ~code & 0xFF
    magnitude = ((code & 0x0F) << 3) + 0x84
    magnitude <<= (code & 0x70) >> 4
    return (0x84 - magnitude) if code & 0x80 else (magnitude - 0x84)


_ULAW = [_ulaw_to_linear(code) for code in range(256)]


class LoopbackCapture:
    """
    UDP datagrams on ``lo`` whose source or destination port is in
    ``ports``, captured by a thread from :meth:`start` to :meth:`stop`.

    :ivar packets: (source port, destination port, UDP payload) per datagram.
    """

    def __init__(self, ports: range) -> None:
        """:raises PermissionError: not root (``AF_PACKET`` needs CAP_NET_RAW)."""
        self._ports = ports
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._socket.bind(("lo", 0))
        self._socket.settimeout(0.2)
        self._running = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.packets: list[tuple[int, int, bytes]] = []

    def start(self) -> None:
        """Start capturing."""
        self._running = True
        self._thread.start()

    def stop(self) -> list[tuple[int, int, bytes]]:
        """Stop capturing; :returns: what was captured."""
        self._running = False
        self._thread.join(5)
        self._socket.close()
        return self.packets

    def _run(self) -> None:
        while self._running:
            try:
                frame, (_, _, kind, *_) = self._socket.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            if kind == socket.PACKET_OUTGOING:
                continue  # each loopback packet is seen twice: going out and coming in
            self._take(frame[_ETHERNET:])

    def _take(self, ip: bytes) -> None:
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
            return
        start = (ip[0] & 0x0F) * 4
        source, dest, length = struct.unpack("!HHH", ip[start : start + 6])
        if source in self._ports or dest in self._ports:
            self.packets.append((source, dest, ip[start + 8 : start + length]))


def rtp_payload(datagram: bytes) -> bytes:
    """The payload of an RTP packet (RFC 3550 §5.1: after the CSRCs and any extension)."""
    if len(datagram) < 12 or datagram[0] >> 6 != 2:
        return b""
    offset = 12 + 4 * (datagram[0] & 0x0F)
    if datagram[0] & 0x10 and len(datagram) >= offset + 4:
        offset += 4 + 4 * struct.unpack("!H", datagram[offset + 2 : offset + 4])[0]
    return datagram[offset:]


def plain_tone_packets(
    packets: Iterable[tuple[int, int, bytes]], tones: Sequence[float], share: float = 0.5
) -> list[tuple[int, int]]:
    """
    The (source, destination) ports of every RTP packet whose payload,
    decoded as PCMU, is mostly one of ``tones``: plain audio on the wire.
    """
    found = []
    for source, dest, datagram in packets:
        payload = rtp_payload(datagram)
        if len(payload) < 160 or 200 <= datagram[1] <= 204:
            continue  # no 20 ms frame of PCMU, or RTCP
        samples = [_ULAW[b] for b in payload[:160]]
        if any(tone_share(samples, tone) > share for tone in tones):
            found.append((source, dest))
    return found
