"""
The RTP/RTCP endpoint for media pbx terminates itself: voicemail, IVR,
conferences.

An :class:`RTPEndpoint` binds an RTP socket on an even port of the
:class:`~pbx.media.ports.PortAllocator` and RTCP on the next (RFC 3550 §11).
Outgoing media is numbered by an :class:`~pbx.media.rtp.RTPSender`; incoming
media goes into a :class:`~pbx.media.jitter.JitterBuffer` that the
application reads once per ptime (:meth:`RTPEndpoint.read`, or the
``on_frame`` playout timer), except telephone events (RFC 4733), which are
handed over as they arrive.  RTCP reports go out every ~5 s, and the
:class:`~pbx.media.rtcp.QualityReport` of the call is kept up to date.

Where packets go is learnt like the relay does (symmetric RTP, RFC 4961):
to the address the far end's SDP announced until its packets arrive from
another address, then to that one (latching; see
:class:`~pbx.media.relay_endpoint.LatchMode`).  Nothing is logged per packet.
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pbx.media.jitter import Frame, JitterBuffer, Lost
from pbx.media.media_clock import MediaClock, stop_counted
from pbx.media.ports import PortAllocator, bind_pair
from pbx.media.relay_endpoint import ANY_SOURCE, LatchMode
from pbx.media.rtcp import (
    QualityReport,
    RTCPSession,
    build_rtcp,
    parse_rtcp,
    report_interval,
)
from pbx.media.rtp import RTPPacket, RTPSender, looks_like_rtcp, parse_rtp
from pbx.media.srtp import LegCrypto

Address = tuple[str, int]


class _Latch:
    """Where one socket's packets go and which sources it accepts (RFC 4961)."""

    def __init__(self, relatch_after: float | None, latch_before_sdp: bool) -> None:
        self.relatch_after = relatch_after
        self.latch_before_sdp = latch_before_sdp
        self.remote: Address | None = None
        self.expected_ip: str | None = None  # None: not known yet; ANY_SOURCE: any
        self.latched: Address | None = None
        self.last_seen = 0.0

    @property
    def dest(self) -> Address | None:
        return self.latched or self.remote

    def accept(self, addr: Address, now: float) -> bool:
        """Whether a packet from ``addr`` is taken; latches a new source if allowed."""
        if addr != self.latched:
            if self.latched is not None and (
                self.relatch_after is None or now - self.last_seen < self.relatch_after
            ):
                return False  # keep the current source until it falls silent
            expected = self.expected_ip
            if expected is None and not self.latch_before_sdp:
                return False
            if expected not in (None, ANY_SOURCE) and addr[0] != expected:
                return False
            self.latched = addr
        self.last_seen = now
        return True

    def set_remote(self, remote: Address | None, expected_ip: str) -> None:
        if remote != self.remote:
            self.latched = None
        self.remote, self.expected_ip = remote, expected_ip


class _RTCPProtocol(DatagramProtocol):
    """The RTCP socket (port + 1): hands datagrams to its endpoint."""

    noisy = False

    def __init__(self, endpoint: RTPEndpoint) -> None:
        self.endpoint = endpoint

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802
        """An RTCP datagram arrived."""
        self.endpoint.rtcp_received(data, addr)


class RTPEndpoint(DatagramProtocol):
    """
    One terminated RTP stream: send media, receive it into a jitter buffer,
    report on it with RTCP.

    :ivar port: the local RTP port once :meth:`listen` has bound it (RTCP: ``port + 1``).
    :ivar sender: numbers outgoing packets.
    :ivar jitter: the jitter buffer of incoming media.
    :ivar rtcp: RTCP state and statistics.
    :ivar counters: packets dropped and why (``source``, ``malformed``, ``no_dest``,
        ``send_error``, ``srtp``: failed SRTP authentication), RTCP reports ``rtcp_sent``.
    :ivar crypto: the peer's SRTP contexts (:class:`~pbx.media.srtp.LegCrypto`):
        every packet is protected on the way out and unprotected on arrival;
        None for plain RTP.
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        reactor: IReactorUDP,
        allocator: PortAllocator,
        *,
        payload_type: int,
        clock_rate: int = 8000,
        ptime_ms: int = 20,
        interface: str = "0.0.0.0",
        telephone_event_pt: int | None = None,
        on_telephone_event: Callable[[RTPPacket], object] | None = None,
        on_frame: Callable[[Frame | Lost | None], object] | None = None,
        on_packet: Callable[[RTPPacket], object] | None = None,
        media_clock: MediaClock | None = None,
        min_delay_ms: float = 20,
        max_delay_ms: float = 200,
        latch: str = LatchMode.EXPECTED,
        relatch_after: float | None = 2.0,
        rtcp_interval: float = 5.0,
        cname: bytes | None = None,
        clock: IReactorTime | None = None,
        rng: random.Random | None = None,
        max_bind_attempts: int = 8,
    ) -> None:
        """
        :param reactor: binds the sockets; also the clock unless ``clock`` is given.
        :param allocator: the RTP port range.
        :param payload_type: the payload type of the media we send.
        :param clock_rate: its RTP clock rate.
        :param ptime_ms: milliseconds per frame (packets sent, jitter buffer ticks).
        :param interface: the local address to bind.
        :param telephone_event_pt: the negotiated telephone-event payload type, if any.
        :param on_telephone_event: called with each telephone-event packet received.
        :param on_frame: if given, called every ptime with the jitter buffer's output.
        :param on_packet: if given, called with each media packet of the
            payload type we send (``sender.payload_type``) as it arrives (before the jitter buffer: what
            a recording is made of, see :mod:`pbx.media.arrival_order`).
        :param media_clock: ticks ``on_frame`` with every other endpoint of
            the process (:mod:`pbx.media.media_clock`); a timer of its own
            when None.
        :param min_delay_ms: the jitter buffer's smallest target delay.
        :param max_delay_ms: the jitter buffer's largest target delay.
        :param latch: a :class:`~pbx.media.relay_endpoint.LatchMode` value.
        :param relatch_after: seconds of silence after which another source may latch.
        :param rtcp_interval: mean seconds between RTCP reports.
        :param cname: our RTCP CNAME; a random one (RFC 7022) unless given.
        :param clock: the time source; ``reactor`` when None.
        :param rng: randomness for SSRC, sequence, timestamp and the RTCP interval.
        :param max_bind_attempts: port pairs tried before giving up on bind failures.
        """
        if latch not in (LatchMode.ANY, LatchMode.EXPECTED, LatchMode.STRICT):
            raise ValueError(f"unknown latch mode {latch!r}")
        self._reactor = reactor
        self._clock: IReactorTime = (
            clock if clock is not None else IReactorTime(reactor)
        )
        self._now = self._clock.seconds
        self._allocator = allocator
        self._interface = interface
        self._rng = rng if rng is not None else random.SystemRandom()
        self._latch_mode = latch
        self._max_bind_attempts = max_bind_attempts
        self._interval = rtcp_interval
        self.frame_samples = clock_rate * ptime_ms // 1000
        self._ptime = ptime_ms / 1000
        self._te_pt = telephone_event_pt
        self._on_te = on_telephone_event
        self._on_frame = on_frame
        self._on_packet = on_packet
        self.sender = RTPSender(payload_type, rng=self._rng)
        cname = (
            cname if cname is not None else os.urandom(12).hex().encode()
        )  # RFC 7022
        self.rtcp = RTCPSession(self.sender.ssrc, clock_rate, cname)
        self.jitter = JitterBuffer(
            clock_rate, self.frame_samples, min_delay_ms, max_delay_ms, clock=self._now
        )
        early = latch != LatchMode.STRICT  # may a source latch before the SDP is known
        self._rtp_latch = _Latch(relatch_after, early)
        self._rtcp_latch = _Latch(relatch_after, early)
        self._rtcp_mux = False
        self.port: int | None = None
        self._rtp_port: Any = None
        self._rtcp_port: Any = None
        self._rtcp_call: IDelayedCall | None = None
        self._playout: LoopingCall | None = None
        self._media_clock = media_clock
        self._unsubscribe: Callable[[], None] | None = None
        self.closed = False
        self._closing: Deferred[QualityReport] | None = None
        self.counters = dict.fromkeys(
            ("source", "malformed", "no_dest", "send_error", "rtcp_sent", "srtp"), 0
        )
        self.crypto: LegCrypto | None = None

    # Set-up and tear-down

    def listen(self, prefer: int | None = None) -> int:
        """
        Bind RTP and RTCP on a free port pair; start the RTCP (and playout) timers.

        :param prefer: the RTP port to take if it is free and binds; another
            free pair otherwise.
        :returns: the RTP port, for our SDP.
        :raises PortsExhausted: the range has no free pair left.
        :raises CannotListenError: ``max_bind_attempts`` pairs in a row failed to bind.
        """
        if self.port is not None or self.closed:
            raise RuntimeError("RTPEndpoint.listen called twice")
        port, _, _, self._rtp_port, self._rtcp_port = bind_pair(
            self._reactor, self._allocator, self._interface, lambda: (self, _RTCPProtocol(self)),
            self._max_bind_attempts, prefer,
        )
        self.port = port
        self._schedule_rtcp(initial=True)
        if self._on_frame is not None:
            if self._media_clock is not None and self._media_clock.ptime == self._ptime:
                self._unsubscribe = self._media_clock.add(self._playout_tick)
            else:
                self._playout = LoopingCall.withCount(self._playout_tick)
                self._playout.clock = self._clock
                self._playout.start(self._ptime, now=False)
        return port

    def close(self, reason: bytes = b"") -> Deferred[QualityReport]:
        """
        Send an RTCP BYE, stop the timers, close both sockets and give the
        ports back; closing again only waits for the first close.

        :returns: fires with the call's final quality once the ports are released.
        """
        if self._closing is None:
            self._closing = self._close(reason)
        result: Deferred[QualityReport] = Deferred()

        def fire(quality: QualityReport) -> QualityReport:
            result.callback(quality)
            return quality

        self._closing.addCallback(fire)
        return result

    def _close(self, reason: bytes) -> Deferred[QualityReport]:
        self.closed = True
        if self._rtcp_call is not None and self._rtcp_call.active():
            self._rtcp_call.cancel()
        self._rtcp_call = None
        if self._playout is not None:
            stop_counted(self._playout)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        # Nothing is heard any more.  The owner's callbacks and our sockets
        # (whose protocols point back at us) are let go of, so a closed
        # endpoint is freed by reference counting, not by the collector.
        self._on_frame = self._on_packet = self._on_te = None
        if self.port is None:
            return succeed(self.rtcp.quality())
        self._send_rtcp(self.rtcp.bye(self._now(), reason))  # RFC 3550 §6.3.7
        port, ports = self.port, (self._rtp_port, self._rtcp_port)
        stops = [maybeDeferred(p.stopListening) for p in ports if p is not None]
        done: Deferred[Any] = DeferredList(stops, consumeErrors=True)

        def release(_: object) -> QualityReport:
            self._allocator.release(port)
            self._rtp_port = self._rtcp_port = None
            return self.rtcp.quality()

        return done.addCallback(release)

    def set_remote(
        self,
        host: str,
        port: int,
        *,
        rtcp_port: int | None = None,
        source_ip: str | None = None,
        rtcp_mux: bool = False,
    ) -> None:
        """
        What the far end's SDP announced (offer, answer, or re-INVITE).

        :param host: the connection address; ``0.0.0.0`` or port 0: send nothing.
        :param port: the RTP port.
        :param rtcp_port: the RTCP port from ``a=rtcp`` (RFC 3605); ``port + 1`` if None.
        :param source_ip: the IP media may come from (:data:`ANY_SOURCE` for any);
            None derives it from ``host`` and the latch mode, as the relay does.
        :param rtcp_mux: RTCP goes on the RTP port (RFC 5761).
        :raises ValueError: ``host`` is not an IP address or a port is out of range.
        """
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address") from None
        rtcp = port + 1 if rtcp_port is None else rtcp_port
        if not (0 <= port <= 65535 and 0 <= rtcp <= 65535):
            raise ValueError(f"port {port}/{rtcp} out of range")
        if source_ip is None:
            nat = self._latch_mode == LatchMode.EXPECTED and not ip.is_global
            any_ = nat or self._latch_mode == LatchMode.ANY
            source_ip = ANY_SOURCE if any_ else str(ip)
        unset = port == 0 or ip.is_unspecified
        self._rtp_latch.set_remote(None if unset else (str(ip), port), source_ip)
        rtcp_to = None if unset or rtcp == 0 else (str(ip), rtcp)
        self._rtcp_latch.set_remote(rtcp_to, source_ip)
        self._rtcp_mux = rtcp_mux

    @property
    def last_received(self) -> float:
        """Clock time of the last RTP packet accepted (0 before any)."""
        return float(self._rtp_latch.last_seen)

    @property
    def remote(self) -> Address | None:
        """Where RTP goes now: the latched source, else the SDP address."""
        return self._rtp_latch.dest

    # Sending

    def _write(self, packet: RTPPacket) -> bool:
        """Send ``packet`` to the far end; only packets that left count for RTCP."""
        dest = self._rtp_latch.dest
        if dest is None or self._rtp_port is None or self.closed:
            self.counters["no_dest"] += 1
            return False
        try:
            data = packet.to_bytes()
            self._rtp_port.write(data if self.crypto is None else self.crypto.protect(data), dest)
        except OSError:
            self.counters["send_error"] += 1
            return False
        self.rtcp.on_rtp_sent(packet.timestamp, len(packet.payload), self._now())
        return True

    def send(
        self,
        payload: bytes,
        samples: int | None = None,
        *,
        marker: bool = False,
        pt: int | None = None,
    ) -> bool:
        """
        Send one frame of media; the RTP timestamp advances by ``samples``.

        :param samples: RTP clock ticks the payload lasts; one frame if None.
        :returns: whether it went out (False: no destination yet, or a send error).
        """
        samples = self.frame_samples if samples is None else samples
        packet = self.sender.next_packet(payload, samples, marker, pt)
        return self._write(packet)

    def send_event(self, payload: bytes, *, start: bool = False) -> bool:
        """
        Send one telephone-event packet (RFC 4733); see
        :meth:`~pbx.media.rtp.RTPSender.next_event_packet`.

        :raises ValueError: no telephone-event payload type was negotiated.
        """
        if self._te_pt is None:
            raise ValueError("no telephone-event payload type negotiated")
        packet = self.sender.next_event_packet(payload, pt=self._te_pt, start=start)
        return self._write(packet)

    def advance(self, samples: int) -> None:
        """Let media time pass without sending (silence); the next frame starts a talkspurt."""
        self.sender.advance(samples)

    # Receiving

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802
        """An RTP (or multiplexed RTCP) datagram arrived; never raises."""
        now = self._now()
        if not self._rtp_latch.accept(addr, now):
            self.counters["source"] += 1
            return
        if looks_like_rtcp(data):  # RFC 5761 §4
            self._handle_rtcp(data, now)
            return
        if self.crypto is not None:
            data = self.crypto.unprotect(data)  # type: ignore[assignment]
            if data is None:
                self.counters["srtp"] += 1
                return
        try:
            packet = parse_rtp(data)
        except ValueError as e:
            self._malformed("RTP", addr, e)
            return
        self.rtcp.on_rtp_received(packet.ssrc, packet.sequence, packet.timestamp, now)
        if packet.payload_type == self._te_pt:
            self.jitter.skip(packet)
            if self._on_te is not None:
                try:
                    self._on_te(packet)
                except Exception:
                    self.log.failure("telephone-event handler failed")
            return
        self.jitter.put(packet)
        if self._on_packet is not None and packet.payload_type == self.sender.payload_type:
            try:
                self._on_packet(packet)
            except Exception:
                self.log.failure("media packet handler failed")

    def rtcp_received(self, data: bytes, addr: Address) -> None:
        """A datagram arrived on the RTCP socket; never raises."""
        now = self._now()
        if not self._rtcp_latch.accept(addr, now):
            self.counters["source"] += 1
            return
        self._handle_rtcp(data, now)

    def _handle_rtcp(self, data: bytes, now: float) -> None:
        if self.crypto is not None:
            data = self.crypto.unprotect_rtcp(data)  # type: ignore[assignment]
            if data is None:
                self.counters["srtp"] += 1
                return
        try:
            packets = parse_rtcp(data)
        except ValueError as e:
            self._malformed("RTCP", None, e)
            return
        self.rtcp.on_rtcp(packets, now)

    def _malformed(self, kind: str, addr: Address | None, error: ValueError) -> None:
        """Count a bad packet; only the first one of the stream is logged."""
        self.counters["malformed"] += 1
        if self.counters["malformed"] == 1:
            self.log.info(
                "malformed {kind} packet on port {port} from {addr}: {error}",
                kind=kind,
                port=self.port,
                addr=addr,
                error=str(error),
            )

    def read(self) -> Frame | Lost | None:
        """The next frame of incoming media (call once per ptime)."""
        return self.jitter.get()

    def _playout_tick(self, count: int) -> None:
        """The playout timer: one frame per ptime elapsed, even if ticks were late."""
        try:
            for _ in range(count):
                if self._on_frame is None:
                    return  # closed meanwhile (by the handler of the frame before)
                self._on_frame(self.jitter.get())
        except Exception:
            self.log.failure("playout handler failed")

    # RTCP

    def _schedule_rtcp(self, initial: bool = False) -> None:
        delay = report_interval(self._rng, self._interval, initial)
        self._rtcp_call = self._clock.callLater(delay, self._rtcp_tick)

    def _rtcp_tick(self) -> None:
        """Send a report and schedule the next; an error does not stop the reports."""
        try:
            self._send_rtcp(self.rtcp.report(self._now()))
        except Exception:
            self.log.failure("RTCP report failed")
        finally:
            if not self.closed:
                self._schedule_rtcp()

    def _send_rtcp(self, packets: list[Any]) -> None:
        if self._rtcp_mux:
            port, dest = self._rtp_port, self._rtp_latch.dest
        else:
            port, dest = self._rtcp_port, self._rtcp_latch.dest
        if dest is None or port is None:
            return
        try:
            data = build_rtcp(packets)
            port.write(data if self.crypto is None else self.crypto.protect_rtcp(data), dest)
        except OSError:
            self.counters["send_error"] += 1
            return
        self.counters["rtcp_sent"] += 1

    def quality(self) -> QualityReport:
        """The call's media quality so far."""
        return self.rtcp.quality()
