"""
One UDP socket of one relay leg (RTP or RTCP): :class:`RelayEndpoint`, the
Twisted protocol every relayed packet passes through, and the rules of
which source it accepts.  :mod:`pbx.media.relay` pairs four of them into a
session.

Where a leg's packets go (symmetric RTP, RFC 4961; "comedia"): to the
address its SDP announced until the phone's first acceptable packet arrives,
then to the source address of that packet ("latching").  Phones behind NAT
send from another address than their SDP says; latching reaches them anyway.
Which sources may latch is the :class:`LatchMode`; once latched, packets from
any other source are dropped and counted, unless the latched source has been
silent for ``relatch_after`` seconds (a phone that moved after a re-INVITE).

The hot path is :meth:`RelayEndpoint.datagramReceived`: one tuple compare,
one clock read, a few attribute reads, ``socket.sendto`` and three integer
increments.  Nothing is parsed or logged per packet.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from pbx.media import srtp

Address = tuple[str, int]

ANY_SOURCE = "*"
"""``source_ip`` for :meth:`pbx.media.relay.RelaySession.set_remote`: any source may latch."""


class LatchMode:
    """Which source address may latch a leg (see the module docstring)."""

    ANY = "any"
    """The first packet from any source latches: works behind any NAT, weakest against injection."""
    EXPECTED = "expected"
    """Only the expected IP latches when one is known and publicly routable;
    otherwise (no SDP yet, or a private SDP address: the phone is behind NAT) any source."""
    STRICT = "strict"
    """Only the expected IP latches; nothing latches before it is known."""


def _dropping_sender(data: bytes, addr: Address) -> None:
    raise OSError("relay socket not open")


def _sender(transport: Any) -> Callable[[bytes, Address], Any]:
    """
    The fastest way to send a datagram on ``transport``.

    A real Twisted UDP port's ``write`` validates the address with Python
    string parsing on every call; relay addresses are already validated (SDP
    in :meth:`pbx.media.relay.RelaySession.set_remote`, the kernel for latched ones), so the
    socket's own ``sendto`` is used.  It raises :class:`OSError` where
    ``write`` would have dropped (EAGAIN) or raised; the caller counts it.
    """
    sock = getattr(transport, "socket", None)
    if isinstance(sock, socket.socket):
        return sock.sendto
    return transport.write  # type: ignore[no-any-return]


class _Nowhere:
    """The peer of a closed socket: it has no destination, so nothing is relayed to it."""

    dest: Address | None = None
    send: Callable[[bytes, Address], Any] = staticmethod(_dropping_sender)
    transform: Callable[[bytes], bytes | None] | None = None
    last_seen: float | None = None


#: What a closed socket relays to (see :meth:`RelayEndpoint.stopProtocol`).
NOWHERE = _Nowhere()


class RelayEndpoint(DatagramProtocol):
    """
    One UDP socket of one leg (RTP or RTCP); relays to its ``peer``, the
    socket of the same kind on the other leg.

    :ivar remote: where the SDP of this leg says to send, or None.
    :ivar expected_ip: the IP that may latch: an address, :data:`ANY_SOURCE`, or None (not known yet).
    :ivar latched: the source address this leg's packets come from, once learned.
    :ivar dest: where packets for this leg go now (None: nowhere; on hold or unknown).
    :ivar last_seen: clock time of the last accepted packet, or None.
    """

    log = Logger()
    noisy = False  # no "Starting protocol" log line for each of the 4 sockets of every call

    def __init__(self, clock: IReactorTime, *, latch_before_sdp: bool = True,
                 relatch_after: float | None = 2.0) -> None:
        """
        :param clock: time source for the latch timer and statistics.
        :param latch_before_sdp: whether a source may latch before the SDP is known.
        :param relatch_after: seconds of silence of the latched source after which
            another source may latch; None never re-latches.
        """
        self._now = clock.seconds
        self.latch_before_sdp = latch_before_sdp
        self.relatch_after = relatch_after
        # The other leg's socket; until paired, an echo; once closed, nowhere.
        self.peer: RelayEndpoint | _Nowhere = self
        self.send: Callable[[bytes, Address], Any] = _dropping_sender
        self.remote: Address | None = None
        self.expected_ip: str | None = None
        self.latched: Address | None = None
        self.held = False
        #: Whether this leg hears a :class:`RelayFeed` (music on hold) instead of the other leg.
        self.fed = False
        self.closed = False
        self.dest: Address | None = None
        self.last_seen: float | None = None
        self.packets = 0  # received from this leg and sent on to the peer
        self.bytes = 0
        self.dropped_source = 0  # from a source other than the latched one
        self.dropped_no_dest = 0  # the other leg has no address or is on hold
        self.send_errors = 0
        self.latches = 0
        #: Rewrites each packet before it is relayed (transcoding); None
        #: relays packets untouched, which is the fast path.
        self.transform: Callable[[bytes], bytes | None] | None = None
        self._transcode: Callable[[bytes], bytes | None] | None = None
        #: SRTP of this leg's phone: unprotects what it sends, protects what it
        #: is sent (see :meth:`set_crypto`); None for plain RTP.
        self.unprotect: Callable[[bytes], bytes | None] | None = None
        self.protect: Callable[[bytes], bytes] | None = None
        self._raw_send: Callable[[bytes, Address], Any] = _dropping_sender
        #: Sees each accepted packet (see :meth:`set_tap`); None: untapped.
        self.tap: Callable[[bytes], object] | None = None
        self._on_failure: Callable[[Callable[[bytes], object]], object] | None = None

    def startProtocol(self) -> None:  # noqa: N802 - twisted API
        """Hoist the send function of our socket."""
        self._raw_send = _sender(self.transport)
        self._wire()

    def stopProtocol(self) -> None:  # noqa: N802 - twisted API
        """
        The socket is closed: nothing is sent to or from it any more.  It
        lets go of its peer (the other leg's socket, which points back at
        it, or itself): the sockets of a finished call are freed by reference
        counting instead of waiting for the garbage collector, whose pauses
        stall the reactor.
        """
        self.closed = True
        self.send = self._raw_send = _dropping_sender
        self.dest = None
        self.peer = NOWHERE

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802 - twisted API
        """Relay one packet to the other leg, if its source is (or may become) latched."""
        if addr != self.latched and not self._latch(addr):
            self.dropped_source += 1
            return
        self.last_seen = self._now()
        peer = self.peer
        dest = peer.dest
        if dest is None:
            self.dropped_no_dest += 1
            return
        if self.transform is not None:
            data = self.transform(data)  # type: ignore[assignment]
            if not data:
                return
        try:
            peer.send(data, dest)
        except OSError:  # EAGAIN (send buffer full), EMSGSIZE, unreachable...
            self.send_errors += 1
            return
        self.packets += 1
        self.bytes += len(data)

    def _latch(self, addr: Address) -> bool:
        """A packet from an unlatched source: latch it if the rules allow."""
        if self.latched is not None:
            # RFC 4961 §3 leaves this to us: keep the current source until it
            # has been silent a while, so injected packets cannot steal media.
            after = self.relatch_after
            if after is None or self._now() - (self.last_seen or 0.0) < after:
                return False
        expected = self.expected_ip
        if expected is None:
            if not self.latch_before_sdp:
                return False
        elif expected != ANY_SOURCE and addr[0] != expected:
            return False
        if self.latched is not None:
            self.log.info("media source moved from {old} to {new}", old=self.latched, new=addr)
        self.latched = addr
        self.latches += 1
        self._update_dest()
        return True

    def _update_dest(self) -> None:
        if self.closed or self.held or self.fed:
            self.dest = None
        else:
            self.dest = self.latched or self.remote

    def set_remote(self, remote: Address | None, expected_ip: str | None) -> None:
        """Point at a new SDP address; a changed address forgets the latched source."""
        if remote != self.remote:
            self.latched = None
        self.remote = remote
        self.expected_ip = expected_ip
        self._update_dest()

    def set_transform(self, transform: Callable[[bytes], bytes | None] | None) -> None:
        """Rewrite each packet this leg sends (transcoding), after any SRTP unprotect; None: as is."""
        self._transcode = transform
        self._wire()

    def set_crypto(self, unprotect: Callable[[bytes], bytes | None] | None,
                   protect: Callable[[bytes], bytes] | None) -> None:
        """This leg's phone speaks SRTP (or SRTCP): unprotect what it sends, protect what it is sent."""
        self.unprotect, self.protect = unprotect, protect
        self._wire()

    def _wire(self) -> None:
        """Compose the receive transform and the send function; plain legs keep the bare ones."""
        self.transform = srtp.inbound(self.unprotect, self._transcode)
        raw = self._raw_send
        self.send = raw if self.protect is None or self.closed else srtp.outbound(self.protect, raw)

    def set_held(self, held: bool) -> None:
        """Stop (or resume) sending to this leg."""
        self.held = held
        self._update_dest()

    def set_tap(self, listener: Callable[[bytes], object] | None,
                on_failure: Callable[[Callable[[bytes], object]], object] | None = None) -> None:
        """
        Hand every packet this leg sends, once accepted, to ``listener``
        (a recording); None removes it.

        The hot path stays untouched: a tapped endpoint gets an instance
        attribute ``datagramReceived`` that shadows the class's method (the
        UDP port looks it up on the instance), so an untapped endpoint runs
        exactly the method above.  The listener sees each accepted packet as
        it arrived (before any transform), after it was relayed; one that
        raises is logged and removed, and ``on_failure(listener)`` told.
        """
        self.__dict__.pop("datagramReceived", None)
        self.tap = listener
        self._on_failure = on_failure
        if listener is not None:
            self.datagramReceived = self._tapped  # type: ignore[method-assign]

    def _tapped(self, data: bytes, addr: Address) -> None:
        RelayEndpoint.datagramReceived(self, data, addr)
        listener = self.tap
        if addr == self.latched and listener is not None:
            try:
                listener(data)
            except Exception:
                self.log.failure("relay tap {listener!r} failed; removed", listener=listener)
                on_failure = self._on_failure
                self.set_tap(None)
                if on_failure is not None:
                    on_failure(listener)

    def set_fed(self, fed: bool) -> None:
        """Stop (or resume) relaying the other leg's packets to this leg, which hears a feed instead."""
        self.fed = fed
        self._update_dest()

    def stats(self) -> dict[str, Any]:
        """Counters of this socket."""
        return {
            "packets": self.packets, "bytes": self.bytes, "dropped_source": self.dropped_source,
            "dropped_no_dest": self.dropped_no_dest, "send_errors": self.send_errors,
            "latches": self.latches, "latched": self.latched, "last_packet": self.last_seen,
        }

