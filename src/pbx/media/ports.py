"""
The pool of RTP/RTCP port pairs media relay sockets bind to.

RFC 3550 §11: RTP uses an even port and RTCP the next (odd) one, so the pool
hands out even ports only and keeps ``port + 1`` with each.  A pair is chosen
at random among the free ones, so an attacker who sees one call's port cannot
guess the next call's port and inject media into it.

A port the relay fails to bind (another program holds it, or a socket of a
call that just ended is not closed yet) is reported with
:meth:`PortAllocator.mark_unusable`: it is set aside rather than handed out
again at once, and only offered again when every other pair is in use.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

if TYPE_CHECKING:
    from pbx.config import RTPConfig


class PortsExhausted(Exception):
    """Every RTP/RTCP port pair of the range is in use."""


class PortAllocator:
    """
    Hands out even RTP ports (RTCP on ``port + 1``) from ``port_min``-``port_max``.

    :ivar capacity: how many pairs the range holds.
    """

    def __init__(
        self, port_min: int, port_max: int, rng: random.Random | None = None
    ) -> None:
        """
        :param port_min: lowest port of the range (an odd value starts at the next even port).
        :param port_max: highest port of the range; the last pair's RTCP port is at most this.
        :param rng: source of randomness; a ``SystemRandom`` unless given (tests pass a seeded one).
        :raises ValueError: the range holds no pair.
        """
        first = port_min + (port_min & 1)
        if not 0 < port_min <= port_max <= 65535:
            raise ValueError(f"bad port range {port_min}-{port_max}")
        self._free = list(range(first, port_max, 2))  # p + 1 <= port_max
        if not self._free:
            raise ValueError(f"port range {port_min}-{port_max} holds no RTP/RTCP pair")
        self.capacity = len(self._free)
        self._in_use: set[int] = set()
        self._unusable: list[int] = []
        self._rng = rng if rng is not None else random.SystemRandom()

    @classmethod
    def from_config(
        cls, rtp: RTPConfig, rng: random.Random | None = None
    ) -> PortAllocator:
        """The allocator for the ``rtp:`` section of the configuration."""
        return cls(rtp.port_min, rtp.port_max, rng)

    @property
    def in_use(self) -> int:
        """How many pairs are handed out and not yet released."""
        return len(self._in_use)

    @property
    def available(self) -> int:
        """How many pairs :meth:`allocate` may still hand out (set-aside ones included)."""
        return len(self._free) + len(self._unusable)

    def is_allocated(self, port: int) -> bool:
        """Whether ``port`` (an RTP port) is handed out now."""
        return port in self._in_use

    def allocate(self) -> int:
        """
        Take a free pair at random.

        :returns: the even RTP port; the caller also owns ``port + 1`` for RTCP.
        :raises PortsExhausted: every pair is in use.
        """
        free = self._free
        if not free:
            if not self._unusable:
                raise PortsExhausted(f"all {self.capacity} RTP port pairs are in use")
            # Everything else is taken: give the set-aside ports another try.
            free.extend(self._unusable)
            self._unusable.clear()
        i = self._rng.randrange(len(free))
        port = free[i]
        free[i] = free[-1]  # O(1) removal; order of the free list is irrelevant
        free.pop()
        self._in_use.add(port)
        return port

    def claim(self, port: int) -> bool:
        """
        Take the pair at ``port`` if it is free (a call that hands its media
        port to the next one: the port its peer already sends to).

        :returns: whether ``port`` is now handed out to the caller.
        """
        for pool in (self._free, self._unusable):
            if port in pool:
                pool.remove(port)
                self._in_use.add(port)
                return True
        return False

    def release(self, port: int) -> None:
        """
        Give a pair back.

        :param port: the RTP port :meth:`allocate` returned.
        :raises ValueError: ``port`` is not handed out (released twice, or never allocated).
        """
        try:
            self._in_use.remove(port)
        except KeyError:
            raise ValueError(f"RTP port {port} is not allocated") from None
        self._free.append(port)

    def mark_unusable(self, port: int) -> None:
        """
        Give back a pair that could not be bound; it is set aside and only
        handed out again when no other pair is free.

        :param port: the RTP port :meth:`allocate` returned.
        :raises ValueError: ``port`` is not handed out.
        """
        try:
            self._in_use.remove(port)
        except KeyError:
            raise ValueError(f"RTP port {port} is not allocated") from None
        self._unusable.append(port)


#: Bytes read per datagram: one RTP packet fits unfragmented.
MAX_PACKET = 8192

_log = Logger()


def bind_pair(
    reactor: IReactorUDP,
    allocator: PortAllocator,
    interface: str,
    protocols: Callable[[], tuple[DatagramProtocol, DatagramProtocol]],
    attempts: int,
    prefer: int | None = None,
) -> tuple[int, DatagramProtocol, DatagramProtocol, Any, Any]:
    """
    Bind RTP on an even port from ``allocator`` and RTCP on the next one
    (RFC 3550 §11), with fresh ``protocols()`` for each try.

    A pair that cannot be bound is marked unusable and another tried, up to
    ``attempts`` pairs in a row.

    :param prefer: the RTP port to take if it is free and binds.
    :returns: (RTP port, RTP protocol, RTCP protocol, RTP listening port, RTCP listening port).
    :raises PortsExhausted: the range has no free pair left.
    :raises CannotListenError: ``attempts`` pairs in a row failed to bind.
    """
    error: CannotListenError | None = None
    wanted = prefer if prefer is not None and allocator.claim(prefer) else None
    for _ in range(attempts):
        if wanted is not None:
            port, wanted = wanted, None
        else:
            port = allocator.allocate()
        rtp, rtcp = protocols()
        bound: list[Any] = []
        try:
            for number, protocol in ((port, rtp), (port + 1, rtcp)):
                bound.append(reactor.listenUDP(number, protocol, interface, MAX_PACKET))
        except CannotListenError as e:
            _log.warn("RTP port {port} cannot be bound ({error}); trying another", port=e.port, error=e.socketError)
            error = e
            for p in bound:
                p.stopListening()
            allocator.mark_unusable(port)
            continue
        except BaseException:
            for p in bound:
                p.stopListening()
            allocator.release(port)
            raise
        return port, rtp, rtcp, bound[0], bound[1]
    assert error is not None
    raise error
