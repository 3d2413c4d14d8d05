"""Tests for the RTP/RTCP endpoint of terminated media."""

from __future__ import annotations

import errno
import random
from typing import Any

from twisted.internet import task
from twisted.internet.error import CannotListenError
from twisted.trial.unittest import SynchronousTestCase

from pbx.media.endpoint import RTPEndpoint
from pbx.media.jitter import Frame, Lost
from pbx.media.ports import PortAllocator, PortsExhausted
from pbx.media.relay_endpoint import LatchMode
from pbx.media.rtcp import (
    Bye,
    QualityReport,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_short,
    parse_rtcp,
    unix_from_ntp,
)
from pbx.media.rtp import RTPPacket, parse_rtp
from pbx.testing import FakeUDPPort, FakeUDPReactor

PHONE = ("81.2.69.160", 4000)  # public: EXPECTED mode only lets this IP latch
PHONE_NAT = ("81.2.69.160", 31000)  # the same phone seen through its NAT
PRIVATE = ("192.168.1.20", 4000)  # an SDP address behind NAT
NAT_SOURCE = ("81.2.69.99", 42000)
INTRUDER = ("81.2.69.200", 6666)


def rtp(seq: int, pt: int = 0, ssrc: int = 0x1234, marker: bool = False) -> bytes:
    """A 20 ms G.711 packet from the phone."""
    return RTPPacket(
        pt, seq, seq * 160, ssrc, bytes([seq & 0xFF]) * 160, marker
    ).to_bytes()


class BusyReactor(FakeUDPReactor):
    """A FakeUDPReactor on which some ports are taken by another program."""

    def __init__(self, busy: set[int]) -> None:
        super().__init__()
        self.busy = busy

    def listenUDP(  # noqa: N802
        self,
        port: int,
        protocol: Any,
        interface: str = "",
        maxPacketSize: int = 8192,  # noqa: N803
    ) -> FakeUDPPort:
        """Refuse busy ports, bind the others."""
        if port in self.busy:
            raise CannotListenError(
                interface, port, OSError(errno.EADDRINUSE, "in use")
            )
        return super().listenUDP(port, protocol, interface, maxPacketSize)


class RefusingPort(FakeUDPPort):
    """A fake port whose every send fails, as with a full send buffer."""

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        """Fail."""
        raise OSError(errno.ENOBUFS, "No buffer space available")


class RefusingReactor(FakeUDPReactor):
    """A FakeUDPReactor whose ports cannot send."""

    def listenUDP(  # noqa: N802
        self,
        port: int,
        protocol: Any,
        interface: str = "",
        maxPacketSize: int = 8192,  # noqa: N803
    ) -> FakeUDPPort:
        """Bind a port that refuses to send."""
        fake = RefusingPort(port, protocol, interface)
        self.udpPorts[port] = fake
        protocol.makeConnection(fake)
        return fake


class EndpointTestCase(SynchronousTestCase):
    """An endpoint for PCMU on a fake reactor, listening."""

    def setUp(self) -> None:
        self.reactor = FakeUDPReactor()
        self.allocator = PortAllocator(20000, 20099, random.Random(3))
        self.events: list[RTPPacket] = []
        self.endpoint = self.make()
        self.port = self.endpoint.listen()

    def make(self, **kw: Any) -> RTPEndpoint:
        """An endpoint with seeded randomness."""
        options: dict[str, Any] = dict(
            payload_type=0,
            interface="127.0.0.1",
            telephone_event_pt=101,
            on_telephone_event=self.events.append,
            rng=random.Random(7),
            cname=b"pbx-test",
        )
        options.update(kw)
        return RTPEndpoint(self.reactor, self.allocator, **options)

    def rtp_port(self) -> FakeUDPPort:
        """Our fake RTP socket."""
        return self.reactor.udpPorts[self.port]

    def rtcp_port(self) -> FakeUDPPort:
        """Our fake RTCP socket."""
        return self.reactor.udpPorts[self.port + 1]

    def sent(self) -> list[tuple[RTPPacket, tuple[str, int]]]:
        """RTP packets written so far, parsed, with their destinations; then forgotten."""
        port = self.rtp_port()
        out, port.written = port.written, []
        return [(parse_rtp(data), addr) for data, addr in out]

    def sent_rtcp(self) -> list[tuple[list[Any], tuple[str, int]]]:
        """RTCP compound packets written so far, parsed; then forgotten."""
        port = self.rtcp_port()
        out, port.written = port.written, []
        return [(parse_rtcp(data), addr) for data, addr in out]


class BindTests(EndpointTestCase):
    """Ports come from the allocator and go back to it."""

    def test_binds_pair(self) -> None:
        """RTP binds an even port and RTCP the next one, on the interface."""
        self.assertEqual(self.port % 2, 0)
        self.assertTrue(self.allocator.is_allocated(self.port))
        self.assertEqual(self.rtp_port().interface, "127.0.0.1")
        self.assertTrue(self.rtcp_port().listening)

    def test_busy_port_skipped(self) -> None:
        """A pair that cannot be bound is set aside and another one is used."""
        self.reactor = BusyReactor({20000, 20002})
        self.allocator = PortAllocator(20000, 20005, random.Random(1))
        port = self.make().listen()
        self.assertEqual(port, 20004)
        self.assertEqual(self.allocator.in_use, 1)

    def test_exhausted(self) -> None:
        """With no pair left, listen raises PortsExhausted."""
        self.allocator = PortAllocator(30000, 30001, random.Random(1))
        self.make().listen()
        self.assertRaises(PortsExhausted, self.make().listen)

    def test_preferred_port(self) -> None:
        """listen(prefer=) takes that pair when it is free; another when it is in use or will not bind."""
        self.allocator = PortAllocator(20000, 20009, random.Random(1))
        self.assertEqual(self.make().listen(prefer=20006), 20006)
        self.assertNotEqual(self.make().listen(prefer=20006), 20006)
        self.reactor = BusyReactor({20002})
        self.allocator = PortAllocator(20000, 20009, random.Random(1))
        port = self.make().listen(prefer=20002)
        self.assertNotEqual(port, 20002)
        self.assertEqual(self.allocator.in_use, 1)
        self.assertFalse(self.allocator.is_allocated(20002))

    def test_listen_twice(self) -> None:
        """An endpoint binds once."""
        self.assertRaises(RuntimeError, self.endpoint.listen)


class SendTests(EndpointTestCase):
    """Outgoing RTP is numbered by the sender and goes where SDP and latching say."""

    def test_no_destination_yet(self) -> None:
        """Before the far end's SDP is known nothing is sent, but the clock runs on."""
        ts = self.endpoint.sender.timestamp
        self.assertFalse(self.endpoint.send(b"\xff" * 160))
        self.assertEqual(self.sent(), [])
        self.assertEqual(self.endpoint.counters["no_dest"], 1)
        self.assertEqual(self.endpoint.sender.timestamp, (ts + 160) & 0xFFFFFFFF)

    def test_sequence_timestamp_marker(self) -> None:
        """Frames go to the SDP address with consecutive numbers, 160-tick steps, one marker."""
        self.endpoint.set_remote(*PHONE)
        for _ in range(3):
            self.assertTrue(self.endpoint.send(b"\xff" * 160))
        sent = self.sent()
        self.assertEqual({addr for _, addr in sent}, {PHONE})
        packets = [p for p, _ in sent]
        first = packets[0]
        self.assertEqual(
            [(p.sequence, p.timestamp, p.marker) for p in packets],
            [
                (
                    (first.sequence + i) & 0xFFFF,
                    (first.timestamp + 160 * i) & 0xFFFFFFFF,
                    i == 0,
                )
                for i in range(3)
            ],
        )
        self.assertEqual(
            {(p.ssrc, p.payload_type) for p in packets},
            {(self.endpoint.sender.ssrc, 0)},
        )

    def test_telephone_event(self) -> None:
        """Event packets carry the negotiated payload type and one timestamp per digit."""
        self.endpoint.set_remote(*PHONE)
        self.endpoint.send(b"\xff" * 160)
        self.endpoint.send_event(b"\x05\x0a\x00\xa0", start=True)
        self.endpoint.send_event(b"\x05\x8a\x01\x40")
        events = [p for p, _ in self.sent()][1:]
        self.assertEqual({p.payload_type for p in events}, {101})
        self.assertEqual(len({p.timestamp for p in events}), 1)

    def test_event_without_payload_type(self) -> None:
        """Sending an event when none was negotiated is an error."""
        endpoint = self.make(telephone_event_pt=None)
        self.assertRaises(ValueError, endpoint.send_event, b"\x00\x00\x00\x00")

    def test_silence_starts_talkspurt(self) -> None:
        """After advance() the next frame is marked and its timestamp skips the silence."""
        self.endpoint.set_remote(*PHONE)
        self.endpoint.send(b"\xff" * 160)
        self.endpoint.advance(800)
        self.endpoint.send(b"\xff" * 160)
        first, second = [p for p, _ in self.sent()]
        self.assertTrue(second.marker)
        self.assertEqual((second.timestamp - first.timestamp) & 0xFFFFFFFF, 960)

    def test_unspecified_address(self) -> None:
        """c=0.0.0.0 (hold) leaves no destination."""
        self.endpoint.set_remote("0.0.0.0", 4000)
        self.assertFalse(self.endpoint.send(b""))
        self.assertIsNone(self.endpoint.remote)

    def test_send_error_counted(self) -> None:
        """A socket error while sending is counted, not raised, and not reported in RTCP."""
        self.reactor = RefusingReactor()
        endpoint = self.make()
        endpoint.listen()
        endpoint.set_remote(*PHONE)
        self.assertFalse(endpoint.send(b"\xff" * 160))
        self.assertEqual(endpoint.counters["send_error"], 1)
        self.assertEqual(endpoint.rtcp.packets_sent, 0)

    def test_rtcp_mux_sending(self) -> None:
        """With RTCP-mux, reports leave the RTP socket towards the RTP address."""
        self.endpoint.set_remote(*PHONE, rtcp_mux=True)
        self.reactor.advance(10)
        self.assertEqual(self.sent_rtcp(), [])
        written = self.rtp_port().written
        self.assertGreater(len(written), 0)
        self.assertEqual({addr for _, addr in written}, {PHONE})
        self.assertIsInstance(parse_rtcp(written[0][0])[0], ReceiverReport)

    def test_explicit_rtcp_port(self) -> None:
        """An a=rtcp port (RFC 3605) replaces port + 1."""
        self.endpoint.set_remote(*PHONE, rtcp_port=7000)
        self.reactor.advance(10)
        self.assertEqual({addr for _, addr in self.sent_rtcp()}, {(PHONE[0], 7000)})

    def test_bad_remote(self) -> None:
        """A host name or an out-of-range port is refused."""
        self.assertRaises(
            ValueError, self.endpoint.set_remote, "phone.example.com", 4000
        )
        self.assertRaises(ValueError, self.endpoint.set_remote, PHONE[0], 70000)


class LatchTests(EndpointTestCase):
    """Symmetric RTP: answer to where the far end's packets come from."""

    def test_latch_to_nat_source(self) -> None:
        """With a private SDP address, the first packet's source becomes the destination."""
        self.endpoint.set_remote(*PRIVATE)
        self.endpoint.send(b"")
        self.rtp_port().protocol.datagramReceived(rtp(1), NAT_SOURCE)
        self.endpoint.send(b"")
        self.assertEqual([addr for _, addr in self.sent()], [PRIVATE, NAT_SOURCE])
        self.assertEqual(self.endpoint.remote, NAT_SOURCE)

    def test_same_ip_other_port(self) -> None:
        """A public SDP IP latches its own NAT port; another IP may not latch."""
        self.endpoint.set_remote(*PHONE)
        self.rtp_port().protocol.datagramReceived(rtp(1), INTRUDER)
        self.assertEqual(self.endpoint.counters["source"], 1)
        self.rtp_port().protocol.datagramReceived(rtp(1), PHONE_NAT)
        self.endpoint.send(b"")
        self.assertEqual([addr for _, addr in self.sent()], [PHONE_NAT])

    def test_latched_source_kept(self) -> None:
        """Once latched, packets from another source are dropped until the source falls silent."""
        self.endpoint.set_remote(*PRIVATE)
        proto = self.rtp_port().protocol
        proto.datagramReceived(rtp(1), NAT_SOURCE)
        proto.datagramReceived(rtp(2), INTRUDER)
        self.assertEqual(self.endpoint.remote, NAT_SOURCE)
        self.reactor.advance(3)
        proto.datagramReceived(rtp(3), INTRUDER)
        self.assertEqual(self.endpoint.remote, INTRUDER)

    def test_strict_waits_for_sdp(self) -> None:
        """In STRICT mode nothing latches before the SDP is known."""
        endpoint = self.make(latch=LatchMode.STRICT)
        port = endpoint.listen()
        self.reactor.udpPorts[port].protocol.datagramReceived(rtp(1), NAT_SOURCE)
        self.assertEqual(endpoint.counters["source"], 1)
        self.assertIsNone(endpoint.remote)

    def test_new_sdp_forgets_latch(self) -> None:
        """A re-INVITE with a new address sends there until packets latch again."""
        self.endpoint.set_remote(*PRIVATE)
        self.rtp_port().protocol.datagramReceived(rtp(1), NAT_SOURCE)
        self.endpoint.set_remote("192.168.1.21", 5000)
        self.assertEqual(self.endpoint.remote, ("192.168.1.21", 5000))

    def test_rtcp_latches_separately(self) -> None:
        """RTCP goes to the SDP port + 1, then to where the far end's RTCP comes from."""
        self.endpoint.set_remote(*PRIVATE)
        self.reactor.advance(10)
        self.assertEqual(
            {addr for _, addr in self.sent_rtcp()}, {(PRIVATE[0], PRIVATE[1] + 1)}
        )
        rr = build_rtcp([ReceiverReport(0x1234)])
        self.rtcp_port().protocol.datagramReceived(rr, (NAT_SOURCE[0], 42001))
        self.reactor.advance(10)
        self.assertEqual(
            {addr for _, addr in self.sent_rtcp()}, {(NAT_SOURCE[0], 42001)}
        )


class ReceiveTests(EndpointTestCase):
    """Incoming RTP goes into the jitter buffer; events and bad packets do not."""

    def setUp(self) -> None:
        super().setUp()
        self.endpoint.set_remote(*PHONE)
        self.proto = self.rtp_port().protocol

    def test_frames_played_in_order(self) -> None:
        """Packets received out of order are read back in order, one per ptime."""
        for seq in (1, 3, 2, 4):
            self.proto.datagramReceived(rtp(seq), PHONE)
        out = [self.endpoint.read() for _ in range(6)]
        self.assertEqual(
            [o.sequence for o in out if isinstance(o, Frame)], [1, 2, 3, 4]
        )
        self.assertEqual(self.endpoint.jitter.stats().reordered, 1)

    def test_playout_timer(self) -> None:
        """With on_frame, the endpoint's timer delivers a frame or marker every 20 ms."""
        got: list[Frame | Lost | None] = []
        endpoint = self.make(on_frame=got.append)
        port = endpoint.listen()
        proto = self.reactor.udpPorts[port].protocol
        for seq in range(1, 6):
            proto.datagramReceived(rtp(seq), PHONE)
            self.reactor.advance(0.02)
        self.assertEqual(len(got), 5)
        self.assertEqual(
            [o.sequence for o in got if isinstance(o, Frame)], [1, 2, 3, 4]
        )

    def test_on_packet(self) -> None:
        """
        on_packet gets each media packet of our payload type as it arrives,
        out of order as it came; events and other payload types do not go
        there, and a failing handler is logged and contained.
        """
        seen: list[int] = []
        endpoint = self.make(on_packet=lambda p: seen.append(p.sequence))
        proto = self.reactor.udpPorts[endpoint.listen()].protocol
        for seq, pt in ((2, 0), (1, 0), (3, 101), (4, 8), (5, 0)):
            proto.datagramReceived(rtp(seq, pt=pt), PHONE)
        self.assertEqual(seen, [2, 1, 5])
        self.assertEqual(endpoint.jitter.stats().received, 4)

        def broken(packet: RTPPacket) -> None:
            raise RuntimeError("boom")

        failing = self.make(on_packet=broken)
        self.reactor.udpPorts[failing.listen()].protocol.datagramReceived(rtp(1), PHONE)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(failing.jitter.stats().received, 1)

    def test_telephone_event_handed_over(self) -> None:
        """A telephone-event packet goes to the callback, not into the jitter buffer."""
        self.proto.datagramReceived(rtp(1, pt=101, marker=True), PHONE)
        self.assertEqual([p.payload_type for p in self.events], [101])
        self.assertEqual(self.endpoint.jitter.stats().received, 0)

    def test_event_handler_error_contained(self) -> None:
        """An exception in the event callback is logged and does not escape."""

        def broken(packet: RTPPacket) -> None:
            raise RuntimeError("boom")

        endpoint = self.make(on_telephone_event=broken)
        port = endpoint.listen()
        self.reactor.udpPorts[port].protocol.datagramReceived(rtp(1, pt=101), PHONE)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_malformed_dropped(self) -> None:
        """Malformed RTP is counted and dropped; nothing raises."""
        self.proto.datagramReceived(b"\x80\x00", PHONE)
        self.proto.datagramReceived(b"\x40" + rtp(1)[1:], PHONE)
        self.rtcp_port().protocol.datagramReceived(b"\x81\xc9\x00\x09", PHONE)
        self.assertEqual(self.endpoint.counters["malformed"], 3)
        self.assertEqual(self.endpoint.jitter.stats().received, 0)

    def test_receive_statistics(self) -> None:
        """Received packets feed the RTCP statistics of the call's quality report."""
        for seq in (1, 2, 3, 5, 6):
            self.proto.datagramReceived(rtp(seq), PHONE)
            self.reactor.advance(0.02)
        quality = self.endpoint.quality()
        self.assertEqual((quality.packets_received, quality.packets_lost), (4, 1))
        self.assertAlmostEqual(quality.loss_percent, 20.0)

    def test_rtcp_mux(self) -> None:
        """RTCP arriving on the RTP port (RFC 5761) is processed as RTCP."""
        self.proto.datagramReceived(rtp(1), PHONE)
        self.proto.datagramReceived(rtp(2), PHONE)
        sr = SenderReport(0x1234, 0x11223344_55667788, 0, 2, 320)
        self.proto.datagramReceived(build_rtcp([sr]), PHONE)
        self.assertEqual(self.endpoint.rtcp.sources[0x1234].lsr, 0x33445566)
        self.assertEqual(self.endpoint.jitter.stats().received, 2)


class RTCPTimerTests(EndpointTestCase):
    """Reports go out every few seconds and carry what was sent and received."""

    def setUp(self) -> None:
        super().setUp()
        self.endpoint.set_remote(*PHONE)

    def test_reports_every_few_seconds(self) -> None:
        """Over 60 s, between 8 and 24 compound reports go out, each RR + SDES CNAME."""
        self.reactor.advance(1)
        for _ in range(60):
            self.reactor.advance(1)
        reports = self.sent_rtcp()
        self.assertTrue(8 <= len(reports) <= 24, len(reports))
        for packets, addr in reports:
            self.assertEqual(addr, (PHONE[0], PHONE[1] + 1))
            self.assertIsInstance(packets[0], ReceiverReport)
            self.assertIsInstance(packets[1], SourceDescription)
            self.assertEqual(packets[1].chunks[0].cname, b"pbx-test")
        self.assertEqual(self.endpoint.counters["rtcp_sent"], len(reports))

    def test_sender_report_after_sending(self) -> None:
        """After sending media the report is an SR with our packet and octet counts."""
        for _ in range(10):
            self.endpoint.send(b"\xff" * 160)
        self.reactor.advance(10)
        sr = self.sent_rtcp()[0][0][0]
        self.assertIsInstance(sr, SenderReport)
        self.assertEqual(
            (sr.ssrc, sr.packet_count, sr.octet_count),
            (self.endpoint.sender.ssrc, 10, 1600),
        )

    def test_round_trip_time(self) -> None:
        """The far end's RR answering our SR gives the round-trip time."""
        self.endpoint.send(b"\xff" * 160)
        self.reactor.advance(3.75)  # the first report is due within 3.75 s
        (sr, *_), _addr = self.sent_rtcp()[0]
        assert isinstance(sr, SenderReport)
        block = ReportBlock(
            self.endpoint.sender.ssrc, 0, 0, 1, 0, ntp_short(sr.ntp_timestamp), 65536
        )
        self.reactor.advance(1.2)  # 1 s held by the phone (DLSR) + 0.2 s on the wire
        rr = build_rtcp([ReceiverReport(0x1234, (block,))])
        self.rtcp_port().protocol.datagramReceived(rr, (PHONE[0], PHONE[1] + 1))
        rtt = self.endpoint.quality().rtt_ms
        assert rtt is not None
        expected = (self.reactor.seconds() - unix_from_ntp(sr.ntp_timestamp) - 1) * 1000
        self.assertAlmostEqual(expected, 200, places=6)
        self.assertAlmostEqual(rtt, expected, places=1)

    def test_report_error_does_not_stop_reports(self) -> None:
        """An exception while building one report is logged and the next one still goes out."""
        original = self.endpoint.rtcp.report
        calls = []

        def flaky(now: float) -> list[Any]:
            calls.append(now)
            if len(calls) == 1:
                raise RuntimeError("boom")
            return original(now)

        self.endpoint.rtcp.report = flaky  # type: ignore[method-assign]
        self.reactor.advance(10)
        self.reactor.advance(10)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertGreater(len(self.sent_rtcp()), 0)


class ClockTests(SynchronousTestCase):
    """A separate clock, when given, drives every timer."""

    def test_injected_clock(self) -> None:
        """RTCP and playout timers run on the given clock, not the reactor's."""
        reactor, clock = FakeUDPReactor(), task.Clock()
        frames: list[Frame | Lost | None] = []
        endpoint = RTPEndpoint(
            reactor,
            PortAllocator(20000, 20001),
            payload_type=0,
            clock=clock,
            on_frame=frames.append,
            rng=random.Random(1),
        )
        endpoint.listen()
        endpoint.set_remote(*PHONE)
        self.assertEqual(reactor.getDelayedCalls(), [])
        clock.advance(10)
        self.assertEqual(len(frames), 500)
        self.assertGreater(endpoint.counters["rtcp_sent"], 0)
        endpoint.close()
        self.assertEqual(clock.getDelayedCalls(), [])


class CloseTests(EndpointTestCase):
    """close() sends BYE, stops every timer and gives the ports back."""

    def test_close(self) -> None:
        """Both sockets stop, the pair is released, no delayed call remains, BYE went out."""
        self.endpoint.set_remote(*PHONE)
        results: list[QualityReport] = []
        self.endpoint.close(b"bye").addCallback(results.append)
        self.assertEqual(len(results), 1)
        self.assertIsInstance(results[0], QualityReport)
        self.assertFalse(self.rtp_port().listening)
        self.assertFalse(self.rtcp_port().listening)
        self.assertEqual(self.allocator.in_use, 0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        ((packets, _),) = self.sent_rtcp()
        self.assertEqual(packets[-1], Bye((self.endpoint.sender.ssrc,), b"bye"))

    def test_close_with_playout_timer(self) -> None:
        """The playout timer is stopped as well."""
        endpoint = self.make(on_frame=lambda frame: None)
        endpoint.listen()
        self.assertEqual(len(self.reactor.getDelayedCalls()), 3)
        self.endpoint.close()
        endpoint.close()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.allocator.in_use, 0)

    def test_close_twice(self) -> None:
        """Closing twice gives both callers the final quality and releases the ports once."""
        results: list[QualityReport] = []
        self.endpoint.close().addCallback(results.append)
        self.endpoint.close().addCallback(results.append)
        self.assertEqual(len(results), 2)
        self.assertEqual(results[0], results[1])
        self.assertEqual(self.allocator.in_use, 0)

    def test_send_after_close(self) -> None:
        """Nothing is sent once closed."""
        self.endpoint.set_remote(*PHONE)
        self.endpoint.close()
        self.assertFalse(self.endpoint.send(b""))

    def test_close_before_listen(self) -> None:
        """An endpoint that never listened closes at once without touching the allocator."""
        results: list[QualityReport] = []
        self.make().close().addCallback(results.append)
        self.assertEqual(len(results), 1)
        self.assertEqual(self.allocator.in_use, 1)
