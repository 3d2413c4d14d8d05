"""
The RTP/RTCP relay a B2BUA anchors media on.

Each call gets a :class:`RelaySession`: two legs, ``"a"`` and ``"b"``, each
with an RTP socket on an even port and an RTCP socket on the next one
(RFC 3550 §11).  A packet that arrives on one leg's socket is written,
unchanged, from the other leg's socket of the same kind to the address of
the phone on that leg.

Each socket is a :class:`~pbx.media.relay_endpoint.RelayEndpoint`: where
it sends (latching, :class:`LatchMode`) and the hot path are
:mod:`pbx.media.relay_endpoint`'s.

Packets are relayed unchanged: SSRC, sequence numbers and timestamps are the
endpoints' business.  A phone that restarts its stream after a re-INVITE
changes SSRC or jumps its sequence (RFC 3550 §8.2 and appendix A.1 tell
receivers to cope), and the relay neither hides nor causes that.  RTCP-mux
(RFC 5761) works when both legs use it: their RTCP then arrives on the RTP
socket and is relayed like RTP.

A leg whose phone speaks SRTP (:meth:`RelaySession.set_crypto`, keys from
:mod:`pbx.media.srtp`) has its own contexts: what its phone sends is
unprotected on arrival (the socket's ``transform``) and what goes to it is
protected on the way out (the socket's ``send``), RTCP likewise (SRTCP).  Two
SRTP legs are decrypted with one leg's key and encrypted with the other's;
an SRTP leg meets a plain one; two plain legs pay nothing for this.

A leg can hear a shared source instead of the other leg (music on hold,
announcements): :meth:`RelaySession.feed` sends each frame of the source
from that leg's RTP socket (:class:`RelayFeed`), and the other leg's RTP
towards it is dropped until :meth:`RelaySession.unfeed`.  The feed's RTP
header continues the stream the leg's phone has been hearing: that stream's
SSRC, with sequence numbers and timestamps that go on from the last packet
relayed (the feed takes them from the other leg's next packet, which it
watches for), at the same pace as the other leg's, so relaying resumes
about where the feed stopped.  A phone
sees one stream throughout (RFC 3550 §8.2: some, baresip 1.0 among them,
drop a new SSRC mid-call).  The feed is only ever sent while the other
leg's packets are not, so the relayed path never rewrites a header: a call
that is not fed costs exactly what it did.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from attrs import define

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime, IReactorUDP
from twisted.logger import Logger

from pbx.media import srtp
from pbx.media.ports import PortAllocator, bind_pair
from pbx.media.relay_endpoint import ANY_SOURCE, LatchMode, RelayEndpoint
from pbx.media.relay_feed import RelayFeed

__all__ = ["ANY_SOURCE", "FLOWING", "LEGS", "LatchMode", "Relay", "RelayEndpoint", "RelayFeed", "RelayLeg",
           "RelaySession"]

LEGS = ("a", "b")
#: Seconds since a leg's last packet within which its stream counts as flowing (see :meth:`RelaySession.feed`).
FLOWING = 0.5


def _nothing() -> None:
    pass


@define(eq=False)
class RelayLeg:
    """One leg of a session: RTP on ``port``, RTCP on ``port + 1``."""

    port: int
    rtp: RelayEndpoint
    rtcp: RelayEndpoint


def _check_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None


class RelaySession:
    """
    The media of one call: legs ``"a"`` and ``"b"``, relayed to each other.

    :ivar created: clock time the session was opened.
    :ivar closed: whether :meth:`Relay.close` has run.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, a: RelayLeg, b: RelayLeg, latch: str = LatchMode.EXPECTED) -> None:
        """
        :param clock: time source.
        :param a: the first leg (conventionally the caller's).
        :param b: the second leg.
        :param latch: a :class:`LatchMode` value.
        """
        self._legs = {"a": a, "b": b}
        self._latch = latch
        a.rtp.peer, b.rtp.peer, a.rtcp.peer, b.rtcp.peer = b.rtp, a.rtp, b.rtcp, a.rtcp
        self._now = clock.seconds
        self.created = clock.seconds()
        self.closed = False
        self._released = False
        self._waiting: list[Deferred[None]] = []
        self._feeds: dict[str, tuple[RelayFeed, Callable[[], object]]] = {}
        #: The :meth:`tap` listener and the :meth:`listen` listeners of each leg.
        self._taps: dict[str, Callable[[bytes], object]] = {}
        self._listeners: dict[str, list[Callable[[bytes], object]]] = {}
        #: Each SRTP leg's contexts, and the unprotecting view its listeners hear through.
        self._crypto: dict[str, srtp.LegCrypto] = {}
        self._views: dict[str, Callable[[bytes], bytes | None]] = {}

    def when_closed(self) -> Deferred[None]:
        """Fires once :meth:`Relay.close` has given every port of this session back."""
        if self._released:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def ports_released(self, _: object = None) -> None:
        """:meth:`Relay.close` is done: wake whoever waits in :meth:`when_closed`."""
        self._released = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def leg(self, leg: str) -> RelayLeg:
        """The leg named ``leg``; :raises ValueError: not ``"a"`` or ``"b"``."""
        try:
            return self._legs[leg]
        except KeyError:
            raise ValueError(f"leg must be 'a' or 'b', not {leg!r}") from None

    def local_port(self, leg: str) -> int:
        """Our RTP port for ``leg``: what the SDP sent to that leg announces."""
        return self.leg(leg).port

    def endpoints(self) -> list[RelayEndpoint]:
        """The four sockets: a RTP, a RTCP, b RTP, b RTCP."""
        return [e for leg in self._legs.values() for e in (leg.rtp, leg.rtcp)]

    def set_remote(self, leg: str, host: str, port: int, *, rtcp_port: int | None = None,
                   source_ip: str | None = None) -> None:
        """
        What ``leg`` announced in SDP (an offer, an answer, or a re-INVITE).

        :param host: the connection address (``c=``); an IP address. ``0.0.0.0``
            (RFC 2543 hold) or port 0 (a rejected stream) means "send nothing".
        :param port: the RTP port (``m=``).
        :param rtcp_port: the RTCP port from ``a=rtcp`` (RFC 3605); ``port + 1`` if None.
        :param source_ip: the IP this leg's media may come from: :data:`ANY_SOURCE`,
            or e.g. the IP its SIP messages came from; None derives it from ``host``
            and the :class:`LatchMode`.
        :raises ValueError: ``host`` is not an IP address or a port is out of range.
        """
        ip = _check_ip(host)
        for p in (port, rtcp_port or 0):
            if not 0 <= p <= 65535:
                raise ValueError(f"port {p} out of range")
        rtcp = port + 1 if rtcp_port is None else rtcp_port
        if source_ip is None:
            nat = self._latch == LatchMode.EXPECTED and not ip.is_global  # RFC 1918 etc.
            source_ip = ANY_SOURCE if nat or self._latch == LatchMode.ANY else str(ip)
        elif source_ip != ANY_SOURCE:
            source_ip = str(_check_ip(source_ip))
        unset = port == 0 or ip.is_unspecified
        legs, host = self.leg(leg), str(ip)
        legs.rtp.set_remote(None if unset else (host, port), source_ip)
        legs.rtcp.set_remote(None if unset or not 0 < rtcp <= 65535 else (host, rtcp), source_ip)

    def set_transform(self, leg: str, transform: Callable[[bytes], bytes | None] | None) -> None:
        """Rewrite the RTP ``leg`` sends before it reaches the other leg (None: relay as is)."""
        self.leg(leg).rtp.set_transform(transform)

    def set_crypto(self, leg: str, crypto: srtp.LegCrypto | None) -> None:
        """
        ``leg``'s phone speaks SRTP with ``crypto`` (its contexts for RTP and
        RTCP), or plain RTP again (None).  Listeners of the leg hear it
        unprotected, through contexts of their own.
        """
        legs = self.leg(leg)
        if crypto is None:
            legs.rtp.set_crypto(None, None)
            legs.rtcp.set_crypto(None, None)
            self._crypto.pop(leg, None)
            self._views.pop(leg, None)
        else:
            legs.rtp.set_crypto(crypto.unprotect, crypto.protect)
            legs.rtcp.set_crypto(crypto.unprotect_rtcp, crypto.protect_rtcp)
            self._crypto[leg] = crypto
            self._views[leg] = crypto.listener_view()
        self._install_taps(leg)

    def crypto(self, leg: str) -> srtp.LegCrypto | None:
        """``leg``'s SRTP contexts, None while it speaks plain RTP."""
        self.leg(leg)
        return self._crypto.get(leg)

    def tap(self, leg: str, listener: Callable[[bytes], object]) -> None:
        """
        Hand each RTP packet ``leg`` sends (accepted from its latched
        source, as it arrived) to ``listener(data)`` after relaying it: what
        a recording is made of.  One listener per leg; a second replaces
        the first.  An untapped session costs exactly what it did (see
        :meth:`RelayEndpoint.set_tap`).

        :raises ValueError: ``leg`` is not ``"a"`` or ``"b"``.
        """
        self.leg(leg)
        self._taps[leg] = listener
        self._install_taps(leg)

    def untap(self, leg: str) -> None:
        """Stop handing ``leg``'s packets to its listener, if any."""
        self.leg(leg)
        self._taps.pop(leg, None)
        self._install_taps(leg)

    def listen(self, leg: str, listener: Callable[[bytes], object]) -> Callable[[], None]:
        """
        Hand each RTP packet ``leg`` sends to ``listener`` too, beside the
        :meth:`tap` listener and any other: a supervisor listening to a call
        that is being recorded.  A listener that raises is logged and removed.

        :returns: a function that removes this listener (calling it again does nothing).
        :raises ValueError: ``leg`` is not ``"a"`` or ``"b"``.
        """
        self.leg(leg)
        self._listeners.setdefault(leg, []).append(listener)
        self._install_taps(leg)

        def remove() -> None:
            listeners = self._listeners.get(leg, [])
            if listener in listeners:
                listeners.remove(listener)
                self._install_taps(leg)

        return remove

    def _install_taps(self, leg: str) -> None:
        """Give ``leg``'s endpoint its one tap: the only listener as it is, or all of them in turn."""
        main, more = self._taps.get(leg), list(self._listeners.get(leg, ()))
        every = ([main] if main is not None else []) + more
        if len(every) <= 1:
            # The common case (a recording, or a call's key watch): one call per packet.
            only = every[0] if every else None
            forget = None if only is None else (lambda _: self._forget(leg, only))
            self.leg(leg).rtp.set_tap(self._plain(leg, only), forget)
            return

        def each(data: bytes) -> None:
            for listener in every:
                try:
                    listener(data)
                except Exception:
                    self.log.failure("relay listener {listener!r} failed; removed", listener=listener)
                    self._forget(leg, listener)
                    return

        self.leg(leg).rtp.set_tap(self._plain(leg, each))

    def _forget(self, leg: str, listener: Callable[[bytes], object]) -> None:
        """A listener of ``leg`` failed: it hears no more."""
        if self._taps.get(leg) is listener:
            del self._taps[leg]
        elif listener in self._listeners.get(leg, ()):
            self._listeners[leg].remove(listener)
        self._install_taps(leg)

    def _plain(self, leg: str, listener: Callable[[bytes], object] | None) -> Callable[[bytes], object] | None:
        """``listener`` hearing ``leg``'s packets as RTP: unprotected first on an SRTP leg."""
        view = self._views.get(leg)
        if view is None or listener is None:
            return listener

        def plain(data: bytes) -> None:
            rtp = view(data)
            if rtp:
                listener(rtp)

        return plain

    def feed(self, leg: str, source: Any, payload_type: int) -> None:
        """
        ``leg`` hears ``source`` (a :class:`~pbx.media.playout.Playout`)
        instead of the other leg: each of its frames goes out from ``leg``'s
        RTP socket, to where ``leg``'s RTP goes, under an RTP header of
        ``leg``'s own that continues the stream ``leg`` was hearing
        (:class:`RelayFeed`, which takes its numbering from the other
        leg's next packet) when the other leg's stream flows (a packet in the last
        :data:`FLOWING` seconds) and is not transcoded; otherwise a stream
        of its own.  The other leg's RTP towards ``leg`` is dropped
        meanwhile; RTCP still flows.  Feeding a fed leg replaces its source.

        :param source: has ``add(sink) -> remove`` and ``timestamp_step``.
        :param payload_type: the payload type ``leg`` negotiated for the source's codec.
        """
        self.unfeed(leg)
        endpoint = self.leg(leg).rtp
        other, peer = ("b" if leg == "a" else "a"), endpoint.peer
        # Continue the other leg's stream if it flows (a transcoded call's relayed
        # timestamps are rescaled: not a stream to follow as it arrives).
        follow = (peer.transform is None and peer.last_seen is not None
                  and self._now() - peer.last_seen < FLOWING)
        feed = RelayFeed(endpoint, payload_type, source.timestamp_step, follow=follow)
        stop_source = source.add(feed)
        stop_observing: Callable[[], None] = _nothing
        if follow:
            def observe(data: bytes) -> None:
                if feed.observe(data):
                    stop_observing()  # the feed has its numbering: the leg runs its plain path again

            stop_observing = self.listen(other, observe)

        def stop() -> None:
            stop_source()
            stop_observing()

        self._feeds[leg] = (feed, stop)
        endpoint.set_fed(True)

    def unfeed(self, leg: str) -> None:
        """Stop feeding ``leg``: it hears the other leg again, relayed unchanged."""
        fed = self._feeds.pop(leg, None)
        endpoint = self.leg(leg).rtp
        if fed is not None:
            fed[1]()
        endpoint.set_fed(False)

    def feeding(self, leg: str) -> RelayFeed | None:
        """The feed ``leg`` hears, if any."""
        fed = self._feeds.get(leg)
        return fed[0] if fed is not None else None

    def hold(self, leg: str) -> None:
        """``leg`` does not want media (sendonly, inactive): drop RTP towards it.

        RTCP keeps flowing both ways (RFC 3264 §5.1: it is sent even when a stream is inactive).
        """
        self.leg(leg).rtp.set_held(True)

    def unhold(self, leg: str) -> None:
        """``leg`` wants media again: resume RTP towards it."""
        self.leg(leg).rtp.set_held(False)

    def pin(self, leg: str, host: str, port: int) -> None:
        """
        ``leg``'s media comes from ``host:port`` (RTP) and the next port
        (RTCP), latched at once: pbx's own endpoint seated there
        (:mod:`pbx.calls.transfer_app`), whose source is known, so a party
        that left the seat and still sends for a moment cannot take it.
        """
        legs = self.leg(leg)
        for endpoint, source in ((legs.rtp, (host, port)), (legs.rtcp, (host, port + 1))):
            endpoint.latched = source
            endpoint._update_dest()

    @property
    def last_activity(self) -> float:
        """Clock time of the last accepted packet on any socket, or the session's creation."""
        seen = [e.last_seen for e in self.endpoints() if e.last_seen is not None]
        return max([self.created, *seen])

    def inactive_for(self, now: float) -> float:
        """Seconds without an accepted RTP or RTCP packet, for the media-inactivity timeout."""
        return max(0.0, now - self.last_activity)

    def stats(self) -> dict[str, Any]:
        """Counters of the session, e.g. for the call record and the operator console."""
        result: dict[str, Any] = {}
        dropped = 0
        for name, leg in self._legs.items():
            other = "b" if name == "a" else "a"
            rtp, rtcp = leg.rtp.stats(), leg.rtcp.stats()
            seen = [t for t in (rtp["last_packet"], rtcp["last_packet"]) if t is not None]
            result[name] = {
                "local_port": leg.port, "remote": leg.rtp.remote, "latched": leg.rtp.latched,
                "held": leg.rtp.held, "last_packet": max(seen) if seen else None,
                "srtp": crypto.suite if (crypto := self._crypto.get(name)) else "",
                "rtp": rtp, "rtcp": rtcp,
            }
            result[f"{name}_to_{other}"] = {
                "packets": rtp["packets"] + rtcp["packets"], "bytes": rtp["bytes"] + rtcp["bytes"]}
            dropped += sum(s["dropped_source"] + s["dropped_no_dest"] + s["send_errors"] for s in (rtp, rtcp))
        result["dropped"] = dropped
        return result


class Relay:
    """
    Opens and closes relay sessions on ports of one :class:`PortAllocator`.

    Every port is given back on every path: when a session closes, and when
    opening one fails part-way.
    """

    log = Logger()

    def __init__(self, reactor: IReactorUDP, allocator: PortAllocator, interface: str = "0.0.0.0", *,
                 latch: str = LatchMode.EXPECTED, relatch_after: float | None = 2.0,
                 max_bind_attempts: int = 8, clock: IReactorTime | None = None) -> None:
        """
        :param reactor: binds the UDP sockets; also the clock unless ``clock`` is given.
        :param allocator: the RTP port range.
        :param interface: the local address to bind ("0.0.0.0", "::", one address).
        :param latch: a :class:`LatchMode` value.
        :param relatch_after: seconds of silence before another source may latch; None: never.
        :param max_bind_attempts: pairs tried per leg before giving up on bind failures.
        :param clock: the time source; ``reactor`` when None.
        """
        if latch not in (LatchMode.ANY, LatchMode.EXPECTED, LatchMode.STRICT):
            raise ValueError(f"unknown latch mode {latch!r}")
        self._reactor = reactor
        self._clock = clock if clock is not None else IReactorTime(reactor)
        self._allocator = allocator
        self._interface = interface
        self._latch = latch
        self._relatch_after = relatch_after
        self._max_bind_attempts = max_bind_attempts
        self._sessions: set[RelaySession] = set()

    @property
    def allocator(self) -> PortAllocator:
        """The port range this relay takes its ports from."""
        return self._allocator

    @property
    def sessions(self) -> int:
        """How many sessions are open."""
        return len(self._sessions)

    def open_session(self) -> RelaySession:
        """
        Bind two legs (RTP + RTCP each) on free port pairs.

        :raises PortsExhausted: the range has no free pair left.
        :raises CannotListenError: ``max_bind_attempts`` pairs in a row failed to bind.
        """
        legs: list[RelayLeg] = []
        try:
            for _ in LEGS:
                legs.append(self._open_leg())
        except BaseException:
            for leg in legs:
                self._close_leg(leg)
            raise
        session = RelaySession(self._clock, legs[0], legs[1], self._latch)
        self._sessions.add(session)
        return session

    def _endpoint(self) -> RelayEndpoint:
        return RelayEndpoint(self._clock, latch_before_sdp=self._latch != LatchMode.STRICT,
                             relatch_after=self._relatch_after)

    def _open_leg(self) -> RelayLeg:
        port, rtp, rtcp, _, _ = bind_pair(self._reactor, self._allocator, self._interface,
                                          lambda: (self._endpoint(), self._endpoint()), self._max_bind_attempts)
        assert isinstance(rtp, RelayEndpoint) and isinstance(rtcp, RelayEndpoint)
        return RelayLeg(port, rtp, rtcp)

    def _close_leg(self, leg: RelayLeg) -> Deferred[None]:
        """Close both sockets; the pair goes back to the allocator once they are closed."""
        ports = [e.transport for e in (leg.rtp, leg.rtcp)]
        stops = [maybeDeferred(p.stopListening) for p in ports if p is not None]
        done: Deferred[Any] = DeferredList(stops, consumeErrors=True)
        done.addCallback(lambda _: self._allocator.release(leg.port))
        return done

    def close(self, session: RelaySession) -> Deferred[None]:
        """
        Close a session's sockets and give its ports back; closing twice does nothing.

        :returns: fires when every port is back in the allocator (for a
            second close too: when the first one has finished).
        """
        if session.closed:
            return session.when_closed()
        session.closed = True
        self._sessions.discard(session)
        for name in LEGS:
            session.unfeed(name)
        closing = [self._close_leg(session.leg(name)) for name in LEGS]
        done: Deferred[Any] = DeferredList(closing, consumeErrors=True)
        return done.addCallback(session.ports_released)

    def close_all(self) -> Deferred[None]:
        """Close every open session (on shutdown)."""
        closing = [self.close(s) for s in list(self._sessions)]
        done: Deferred[Any] = DeferredList(closing, consumeErrors=True)
        return done.addCallback(lambda _: None)
