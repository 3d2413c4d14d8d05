"""Tests for the RTP port allocator and the media relay."""

from __future__ import annotations

import errno
import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import RTPConfig
from pbx.media.ports import PortAllocator, PortsExhausted
from pbx.media.relay import Relay, RelaySession
from pbx.media.relay_endpoint import ANY_SOURCE, LatchMode
from pbx.testing import FakeUDPPort, FakeUDPReactor

PHONE_A = ("81.2.69.160", 4000)  # a public address: EXPECTED mode enforces it
PHONE_B = ("81.2.69.170", 5000)
NAT_A = ("81.2.69.160", 31000)  # phone A's NAT mapping: same IP, other port
INTRUDER = ("81.2.69.99", 6666)
RTP = b"\x80\x00\x00\x01" + b"\x00" * 8 + bytes(range(160))  # 172 bytes, like G.711


class BindFailingReactor(FakeUDPReactor):
    """A FakeUDPReactor whose chosen ports, or chosen calls of listenUDP, fail to bind."""

    def __init__(
        self, busy_ports: set[int] | None = None, failing_calls: set[int] | None = None
    ) -> None:
        super().__init__()
        self.busy_ports = busy_ports or set()
        self.failing_calls = failing_calls or set()
        self.bind_calls = 0

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUDPPort:  # noqa: N802,N803
        """Raise CannotListenError for a busy port or a failing call; else bind."""
        self.bind_calls += 1
        if port in self.busy_ports or self.bind_calls in self.failing_calls:
            raise CannotListenError(
                interface, port, OSError(errno.EADDRINUSE, "Address already in use")
            )
        return super().listenUDP(port, protocol, interface, maxPacketSize)


class PortAllocatorTests(SynchronousTestCase):
    """Even RTP ports with RTCP on +1, each handed out once, at random."""

    def test_even_ports_in_range(self) -> None:
        """Every port handed out is even and its RTCP port lies within the range."""
        alloc = PortAllocator(10001, 10010, random.Random(1))
        ports = {alloc.allocate() for _ in range(alloc.capacity)}
        self.assertEqual(ports, {10002, 10004, 10006, 10008})

    def test_last_pair_needs_room_for_rtcp(self) -> None:
        """An even port_max is not handed out, since its RTCP port would lie outside."""
        alloc = PortAllocator(10000, 10004, random.Random(1))
        self.assertEqual(alloc.capacity, 2)

    def test_range_without_pair(self) -> None:
        """A range that holds no pair is refused."""
        self.assertRaises(ValueError, PortAllocator, 10001, 10002)

    def test_exhaustion(self) -> None:
        """When every pair is in use, allocate raises PortsExhausted."""
        alloc = PortAllocator(10000, 10003, random.Random(1))
        alloc.allocate()
        alloc.allocate()
        self.assertRaises(PortsExhausted, alloc.allocate)
        self.assertEqual(alloc.in_use, 2)

    def test_release_makes_port_available(self) -> None:
        """A released pair can be allocated again and the in-use count drops."""
        alloc = PortAllocator(10000, 10001, random.Random(1))
        port = alloc.allocate()
        alloc.release(port)
        self.assertEqual(alloc.in_use, 0)
        self.assertEqual(alloc.allocate(), port)

    def test_release_twice(self) -> None:
        """Releasing a port that is not allocated is an error."""
        alloc = PortAllocator(10000, 10001, random.Random(1))
        alloc.release(alloc.allocate())
        self.assertRaises(ValueError, alloc.release, 10000)

    def test_no_duplicates(self) -> None:
        """Across allocations and releases no port is handed out twice at once."""
        rng = random.Random(7)
        alloc = PortAllocator(20000, 20199, rng)
        held: set[int] = set()
        for _ in range(2000):
            if held and rng.random() < 0.4:
                port = rng.choice(sorted(held))
                held.remove(port)
                alloc.release(port)
            elif alloc.available:
                port = alloc.allocate()
                self.assertNotIn(port, held)
                held.add(port)
        self.assertEqual(alloc.in_use, len(held))

    def test_randomised_start(self) -> None:
        """Fresh allocators with different random sources start at different ports."""
        firsts = {
            PortAllocator(10000, 19999, random.Random(seed)).allocate()
            for seed in range(20)
        }
        self.assertGreater(len(firsts), 10)

    def test_unusable_set_aside(self) -> None:
        """A pair marked unusable is only handed out again once nothing else is free."""
        alloc = PortAllocator(10000, 10005, random.Random(3))
        bad = alloc.allocate()
        alloc.mark_unusable(bad)
        self.assertEqual(alloc.in_use, 0)
        others = {alloc.allocate(), alloc.allocate()}
        self.assertNotIn(bad, others)
        self.assertEqual(alloc.allocate(), bad)
        self.assertRaises(PortsExhausted, alloc.allocate)

    def test_claim(self) -> None:
        """A free pair (set aside or not) can be claimed by its port; a pair in use or outside the range cannot."""
        alloc = PortAllocator(10000, 10005, random.Random(3))
        taken = alloc.allocate()
        self.assertFalse(alloc.claim(taken))
        self.assertFalse(alloc.claim(10001))
        self.assertFalse(alloc.claim(20000))
        free = next(p for p in (10000, 10002, 10004) if p != taken)
        self.assertTrue(alloc.claim(free))
        self.assertTrue(alloc.is_allocated(free))
        self.assertFalse(alloc.claim(free))
        alloc.mark_unusable(free)
        self.assertTrue(alloc.claim(free))
        self.assertEqual(alloc.in_use, 2)
        alloc.release(free)
        alloc.release(taken)
        self.assertEqual(sorted({alloc.allocate() for _ in range(3)}), [10000, 10002, 10004])

    def test_from_config(self) -> None:
        """The allocator takes its range from the rtp: configuration section."""
        alloc = PortAllocator.from_config(RTPConfig(30000, 30003))
        self.assertEqual(alloc.capacity, 2)


class RelayTestCase(SynchronousTestCase):
    """Common set-up: a relay on a fake reactor over a small port range."""

    latch = LatchMode.EXPECTED

    def setUp(self) -> None:
        self.reactor = FakeUDPReactor()
        self.alloc = PortAllocator(10000, 10099, random.Random(5))
        self.relay = Relay(
            self.reactor, self.alloc, "127.0.0.1", latch=self.latch, relatch_after=2.0
        )
        self.session = self.relay.open_session()

    def port(self, leg: str, rtcp: bool = False) -> FakeUDPPort:
        """The fake socket of ``leg``."""
        return self.reactor.udpPorts[self.session.local_port(leg) + rtcp]

    def send(
        self, leg: str, data: bytes, source: tuple[str, int], rtcp: bool = False
    ) -> None:
        """Deliver a datagram from ``source`` to our socket of ``leg``."""
        self.port(leg, rtcp).protocol.datagramReceived(data, source)

    def written(
        self, leg: str, rtcp: bool = False
    ) -> list[tuple[bytes, tuple[str, int]]]:
        """What our socket of ``leg`` sent, and then forget it."""
        port = self.port(leg, rtcp)
        out, port.written = port.written, []
        return out


class RelayPathTests(RelayTestCase):
    """Packets go unchanged to the other leg's address."""

    def setUp(self) -> None:
        super().setUp()
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)

    def test_sockets_bound(self) -> None:
        """A session binds RTP on an even port and RTCP on the next, for both legs, on the interface."""
        for leg in "ab":
            self.assertEqual(self.session.local_port(leg) % 2, 0)
            self.assertEqual(self.port(leg).interface, "127.0.0.1")
            self.assertTrue(self.port(leg, rtcp=True).listening)
        self.assertEqual(self.alloc.in_use, 2)

    def test_both_directions_byte_exact(self) -> None:
        """RTP from A leaves B's socket towards B unchanged, and the reverse."""
        self.send("a", RTP, PHONE_A)
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])
        reply = RTP[::-1]
        self.send("b", reply, PHONE_B)
        self.assertEqual(self.written("a"), [(reply, PHONE_A)])

    def test_send_to_sdp_before_latching(self) -> None:
        """Before A sends anything, B's packets go to the address A's SDP announced."""
        self.send("b", RTP, PHONE_B)
        self.assertEqual(self.written("a"), [(RTP, PHONE_A)])
        self.assertIsNone(self.session.stats()["a"]["latched"])

    def test_rtcp_on_next_port(self) -> None:
        """RTCP arriving on port+1 leaves the other leg's port+1 towards its SDP port+1."""
        self.send("a", b"rtcp-sr", (PHONE_A[0], PHONE_A[1] + 1), rtcp=True)
        self.assertEqual(
            self.written("b", rtcp=True), [(b"rtcp-sr", (PHONE_B[0], PHONE_B[1] + 1))]
        )
        self.assertEqual(self.written("b"), [])

    def test_explicit_rtcp_port(self) -> None:
        """An a=rtcp port (RFC 3605) replaces port+1."""
        self.session.set_remote("b", PHONE_B[0], PHONE_B[1], rtcp_port=7000)
        self.send("a", b"rtcp-rr", (PHONE_A[0], PHONE_A[1] + 1), rtcp=True)
        self.assertEqual(
            self.written("b", rtcp=True), [(b"rtcp-rr", (PHONE_B[0], 7000))]
        )

    def test_no_destination_yet(self) -> None:
        """A packet towards a leg with no known address is dropped and counted."""
        session = self.relay.open_session()
        session.set_remote("a", *PHONE_A)
        self.reactor.udpPorts[session.local_port("a")].protocol.datagramReceived(
            RTP, PHONE_A
        )
        self.assertEqual(self.reactor.udpPorts[session.local_port("b")].written, [])
        self.assertEqual(session.stats()["a"]["rtp"]["dropped_no_dest"], 1)

    def test_rejected_stream(self) -> None:
        """Port 0 in SDP (a rejected stream) leaves the leg without a destination."""
        self.session.set_remote("b", PHONE_B[0], 0)
        self.send("a", RTP, PHONE_A)
        self.assertEqual(self.written("b"), [])

    def test_unspecified_address(self) -> None:
        """c=0.0.0.0 (RFC 2543 hold) leaves the leg without a destination for RTP and RTCP."""
        self.session.set_remote("b", "0.0.0.0", PHONE_B[1])
        self.send("a", RTP, PHONE_A)
        self.send("a", b"rtcp", (PHONE_A[0], PHONE_A[1] + 1), rtcp=True)
        self.assertEqual(self.written("b") + self.written("b", rtcp=True), [])

    def test_port_out_of_range(self) -> None:
        """An RTP or RTCP port outside 0-65535 is refused."""
        self.assertRaises(ValueError, self.session.set_remote, "a", PHONE_A[0], 70000)
        self.assertRaises(ValueError, self.session.set_remote, "a", *PHONE_A, rtcp_port=-1)

    def test_hostname_refused(self) -> None:
        """set_remote wants an IP address, not a name to resolve."""
        self.assertRaises(
            ValueError, self.session.set_remote, "a", "phone.example.com", 4000
        )
        self.assertRaises(ValueError, self.session.set_remote, "c", *PHONE_A)

    def test_hold_drops_towards_held_leg(self) -> None:
        """While B is on hold, RTP towards B is dropped; RTP towards A and RTCP still flow."""
        self.session.hold("b")
        self.send("a", RTP, PHONE_A)
        self.send("b", RTP, PHONE_B)
        self.send("a", b"rtcp", (PHONE_A[0], PHONE_A[1] + 1), rtcp=True)
        self.assertEqual(self.written("b"), [])
        self.assertEqual(len(self.written("a")), 1)
        self.assertEqual(len(self.written("b", rtcp=True)), 1)
        self.assertTrue(self.session.stats()["b"]["held"])
        self.session.unhold("b")
        self.send("a", RTP, PHONE_A)
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])

    def test_stats(self) -> None:
        """Statistics count packets and bytes each way, drops, and the last packet time."""
        self.reactor.advance(5)
        self.send("a", RTP, PHONE_A)
        self.send("a", RTP, PHONE_A)
        self.reactor.advance(1)
        self.send("b", b"x" * 10, PHONE_B)
        self.send("b", b"y", INTRUDER)
        stats = self.session.stats()
        self.assertEqual(stats["a_to_b"], {"packets": 2, "bytes": 2 * len(RTP)})
        self.assertEqual(stats["b_to_a"], {"packets": 1, "bytes": 10})
        self.assertEqual(stats["dropped"], 1)
        self.assertEqual(stats["a"]["last_packet"], 5.0)
        self.assertEqual(stats["b"]["last_packet"], 6.0)
        self.assertEqual(stats["b"]["rtp"]["dropped_source"], 1)
        self.assertEqual(stats["a"]["local_port"], self.session.local_port("a"))

    def test_inactivity(self) -> None:
        """inactive_for counts from the last accepted packet, or from opening without one."""
        self.reactor.advance(10)
        self.assertEqual(self.session.inactive_for(self.reactor.seconds()), 10.0)
        self.send("a", RTP, PHONE_A)
        self.reactor.advance(3)
        self.send("b", b"x", INTRUDER)  # dropped: does not count as activity
        self.assertEqual(self.session.inactive_for(self.reactor.seconds()), 3.0)
        self.assertEqual(self.session.last_activity, 10.0)
        self.send("b", b"rtcp", PHONE_B, rtcp=True)
        self.assertEqual(self.session.inactive_for(self.reactor.seconds()), 0.0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class LatchingTests(RelayTestCase):
    """Symmetric RTP (RFC 4961): the first acceptable source wins; others are dropped."""

    def test_nat_source_latched(self) -> None:
        """A packet from the SDP IP but another port latches that port; replies go there."""
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, NAT_A)
        self.send("b", RTP, PHONE_B)
        self.assertEqual(self.written("a"), [(RTP, NAT_A)])
        self.assertEqual(self.session.stats()["a"]["latched"], NAT_A)

    def test_first_source_wins_before_sdp(self) -> None:
        """With no SDP yet, the first source latches and a second source is dropped and counted."""
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, NAT_A)
        self.send("a", b"evil", INTRUDER)
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])
        stats = self.session.stats()["a"]["rtp"]
        self.assertEqual(
            (stats["latched"], stats["dropped_source"], stats["packets"]), (NAT_A, 1, 1)
        )

    def test_foreign_ip_not_latched(self) -> None:
        """With a public SDP address, a packet from another IP neither latches nor is relayed."""
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)
        self.send("a", b"evil", INTRUDER)
        self.send("b", RTP, PHONE_B)
        self.assertEqual(self.written("b"), [])
        self.assertEqual(self.written("a"), [(RTP, PHONE_A)])
        self.assertEqual(self.session.stats()["a"]["rtp"]["dropped_source"], 1)

    def test_private_sdp_address_accepts_nat(self) -> None:
        """A private SDP address (a phone behind NAT) lets the first source of any IP latch."""
        self.session.set_remote("a", "192.168.1.10", 4000)
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, NAT_A)
        self.send("b", RTP, PHONE_B)
        self.assertEqual(self.written("a"), [(RTP, NAT_A)])

    def test_source_ip_override(self) -> None:
        """The call layer may name the IP media must come from, e.g. the phone's SIP source."""
        self.session.set_remote("a", "192.168.1.10", 4000, source_ip=NAT_A[0])
        self.session.set_remote("b", *PHONE_B)
        self.send("a", b"evil", INTRUDER)
        self.send("a", RTP, NAT_A)
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])
        self.session.set_remote("a", "192.168.1.10", 4000, source_ip=ANY_SOURCE)
        self.assertEqual(self.session.stats()["a"]["latched"], NAT_A)

    def test_relatch_after_silence(self) -> None:
        """Another source may latch once the latched one has been silent for relatch_after seconds."""
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, NAT_A)
        self.reactor.advance(1.9)
        self.send("a", b"evil", INTRUDER)
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])
        self.reactor.advance(0.1)
        self.send("a", b"moved", INTRUDER)
        self.send("b", RTP, PHONE_B)
        self.assertEqual(self.written("b"), [(b"moved", PHONE_B)])
        self.assertEqual(self.written("a"), [(RTP, INTRUDER)])
        self.assertEqual(self.session.stats()["a"]["rtp"]["latches"], 2)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_foreign_flood_does_not_keep_latch_alive(self) -> None:
        """Dropped packets do not refresh the latched source's activity."""
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, NAT_A)
        for _ in range(3):
            self.reactor.advance(1)
            self.send("a", b"evil", INTRUDER)
        self.assertEqual(self.session.stats()["a"]["latched"], INTRUDER)

    def test_new_sdp_address_unlatches(self) -> None:
        """A re-INVITE with a new address forgets the latched source and sends to the new SDP address."""
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, NAT_A)
        self.session.set_remote("a", "81.2.69.161", 4100)
        self.send("b", RTP, PHONE_B)
        self.assertEqual(self.written("a"), [(RTP, ("81.2.69.161", 4100))])

    def test_same_sdp_keeps_latch(self) -> None:
        """A re-INVITE repeating the same address (e.g. hold) keeps the latched source."""
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, NAT_A)
        self.session.set_remote("a", *PHONE_A)
        self.send("b", RTP, PHONE_B)
        self.assertEqual(self.written("a"), [(RTP, NAT_A)])


class PinTests(RelayTestCase):
    """A leg pinned to pbx's own endpoint takes media from that address only, at once."""

    def test_pinned_source_only(self) -> None:
        """After pin(), the pinned source is latched and relayed at once; another source of the same IP is dropped."""
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", "127.0.0.1", 30000)
        self.send("b", RTP, ("127.0.0.1", 31000))  # the party that sat there, still sending
        self.session.pin("b", "127.0.0.1", 30000)
        self.written("a")
        self.send("b", b"late", ("127.0.0.1", 31000))
        self.send("b", RTP, ("127.0.0.1", 30000))
        self.send("b", b"rtcp", ("127.0.0.1", 30001), rtcp=True)
        self.assertEqual(self.written("a"), [(RTP, PHONE_A)])
        self.assertEqual(len(self.written("a", rtcp=True)), 1)
        self.send("a", RTP, PHONE_A)
        self.assertEqual(self.written("b"), [(RTP, ("127.0.0.1", 30000))])


class StrictLatchingTests(RelayTestCase):
    """In strict mode only the SDP source IP latches, and nothing before the SDP is known."""

    latch = LatchMode.STRICT

    def test_nothing_latches_before_sdp(self) -> None:
        """Before set_remote, packets are dropped rather than latched."""
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, PHONE_A)
        self.assertEqual(self.written("b"), [])
        self.assertIsNone(self.session.stats()["a"]["latched"])

    def test_private_sdp_address_enforced(self) -> None:
        """Even a private SDP address must match the source IP."""
        self.session.set_remote("a", "192.168.1.10", 4000)
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, NAT_A)
        self.send("a", RTP, ("192.168.1.10", 4000))
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])
        self.assertEqual(self.session.stats()["a"]["rtp"]["dropped_source"], 1)


class AnyLatchingTests(RelayTestCase):
    """In ANY mode the first source latches whatever the SDP says."""

    latch = LatchMode.ANY

    def test_public_sdp_not_enforced(self) -> None:
        """A source IP other than the public SDP address latches."""
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)
        self.send("a", RTP, INTRUDER)
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])

    def test_unknown_mode(self) -> None:
        """An unknown latch mode is refused."""
        self.assertRaises(
            ValueError, Relay, self.reactor, self.alloc, latch="sometimes"
        )


class RelayLifecycleTests(SynchronousTestCase):
    """Sessions open on free ports, retry busy ones, and give every port back."""

    def make(
        self, reactor: FakeUDPReactor, low: int = 10000, high: int = 10099
    ) -> tuple[Relay, PortAllocator]:
        """A relay over ``reactor`` and a fresh allocator."""
        alloc = PortAllocator(low, high, random.Random(11))
        return Relay(reactor, alloc, "127.0.0.1", max_bind_attempts=4), alloc

    def assert_all_closed(self, reactor: FakeUDPReactor, alloc: PortAllocator) -> None:
        """No port is allocated and no fake socket is still listening."""
        self.assertEqual(alloc.in_use, 0)
        self.assertEqual([p.port for p in reactor.udpPorts.values() if p.listening], [])

    def test_close_releases_ports(self) -> None:
        """Closing a session stops its four sockets and frees its two pairs."""
        reactor = FakeUDPReactor()
        relay, alloc = self.make(reactor)
        session = relay.open_session()
        self.assertEqual(
            (relay.sessions, alloc.in_use, len(reactor.udpPorts)), (1, 2, 4)
        )
        self.successResultOf(relay.close(session))
        self.assertEqual(relay.sessions, 0)
        self.assertTrue(session.closed)
        self.assert_all_closed(reactor, alloc)
        self.successResultOf(relay.close(session))  # twice is harmless
        self.assertEqual(alloc.in_use, 0)

    def test_second_close_waits_for_first(self) -> None:
        """Closing again while the sockets are still closing fires only once every port is back."""
        reactor = FakeUDPReactor()
        relay, alloc = self.make(reactor)
        session = relay.open_session()
        gates: list[Deferred[None]] = []
        close_leg = relay._close_leg

        def slow_close(leg: Any) -> Deferred[None]:
            gate: Deferred[None] = Deferred()
            gates.append(gate)
            return gate.addCallback(lambda _: close_leg(leg))

        relay._close_leg = slow_close  # type: ignore[method-assign]
        first, second = relay.close(session), relay.close(session)
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.assertEqual(alloc.in_use, 2)
        for gate in gates:
            gate.callback(None)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(alloc.in_use, 0)
        self.successResultOf(relay.close(session))

    def test_closed_session_sends_nothing(self) -> None:
        """After close, a late datagram delivered to a socket is not relayed."""
        reactor = FakeUDPReactor()
        relay, _ = self.make(reactor)
        session = relay.open_session()
        session.set_remote("a", *PHONE_A)
        session.set_remote("b", *PHONE_B)
        relay.close(session)
        reactor.udpPorts[session.local_port("a")].protocol.datagramReceived(
            RTP, PHONE_A
        )
        self.assertEqual(reactor.udpPorts[session.local_port("b")].written, [])

    def test_third_socket_busy_retried(self) -> None:
        """When the 3rd socket (leg b RTP) fails to bind, another pair is used and the failed one is not held."""
        reactor = BindFailingReactor(failing_calls={3})
        relay, alloc = self.make(reactor)
        session = relay.open_session()
        self.assertEqual(reactor.bind_calls, 5)
        self.assertEqual(alloc.in_use, 2)
        self.assertTrue(self.all_listening(reactor, session))
        self.successResultOf(relay.close(session))
        self.assert_all_closed(reactor, alloc)

    def all_listening(self, reactor: FakeUDPReactor, session: RelaySession) -> bool:
        """Whether all four sockets of ``session`` listen."""
        return all(
            reactor.udpPorts[session.local_port(leg) + i].listening
            for leg in "ab"
            for i in (0, 1)
        )

    def test_busy_rtcp_half_of_pair(self) -> None:
        """A pair whose RTCP port is busy is given up whole: its bound RTP socket is closed."""
        reactor = BindFailingReactor(failing_calls={4})
        relay, alloc = self.make(reactor)
        session = relay.open_session()
        self.assertEqual(alloc.in_use, 2)
        self.assertEqual(len([p for p in reactor.udpPorts.values() if p.listening]), 4)
        self.assertTrue(self.all_listening(reactor, session))

    def test_open_fails_halfway(self) -> None:
        """When every bind from the 3rd socket on fails, open_session raises and leaks no port."""
        reactor = BindFailingReactor(failing_calls=set(range(3, 100)))
        relay, alloc = self.make(reactor)
        self.assertRaises(CannotListenError, relay.open_session)
        self.assertEqual(relay.sessions, 0)
        self.assert_all_closed(reactor, alloc)
        self.assertEqual(alloc.available, alloc.capacity)

    def test_exhaustion_halfway(self) -> None:
        """When only one pair is left, open_session raises PortsExhausted and frees that pair."""
        reactor = FakeUDPReactor()
        relay, alloc = self.make(reactor, 10000, 10005)
        relay.open_session()
        self.assertRaises(PortsExhausted, relay.open_session)
        self.assertEqual((relay.sessions, alloc.in_use), (1, 2))

    def test_busy_ports_skipped(self) -> None:
        """Ports another program holds are skipped; sessions use the free ones."""
        reactor = BindFailingReactor(busy_ports={10000, 10003})
        relay, alloc = self.make(reactor, 10000, 10007)
        session = relay.open_session()
        self.assertEqual(
            {session.local_port("a"), session.local_port("b")}, {10004, 10006}
        )

    def test_close_all(self) -> None:
        """close_all closes every session and frees every port."""
        reactor = FakeUDPReactor()
        relay, alloc = self.make(reactor)
        sessions = [relay.open_session() for _ in range(5)]
        self.assertEqual(alloc.in_use, 10)
        self.successResultOf(relay.close_all())
        self.assertEqual(relay.sessions, 0)
        self.assertTrue(all(s.closed for s in sessions))
        self.assert_all_closed(reactor, alloc)


class RelayTapTests(RelayTestCase):
    """A tap hands each packet a leg sends to a listener, after relaying it."""

    def setUp(self) -> None:
        super().setUp()
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)
        self.seen: list[bytes] = []

    def test_untapped_runs_the_class_method(self) -> None:
        """An untapped endpoint has no per-instance receive function: the hot path is the plain method."""
        endpoint = self.port("a").protocol
        self.assertNotIn("datagramReceived", vars(endpoint))
        self.session.tap("a", self.seen.append)
        self.assertIn("datagramReceived", vars(endpoint))
        self.session.untap("a")
        self.assertNotIn("datagramReceived", vars(endpoint))

    def test_listener_sees_relayed_packets(self) -> None:
        """A tapped leg's packets reach the listener unchanged and the other phone as before."""
        self.session.tap("a", self.seen.append)
        self.send("a", RTP, PHONE_A)
        self.assertEqual(self.seen, [RTP])
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])

    def test_only_the_tapped_leg(self) -> None:
        """Tapping leg a does not show leg b's packets."""
        self.session.tap("a", self.seen.append)
        self.send("b", RTP, PHONE_B)
        self.assertEqual(self.seen, [])
        self.assertEqual(self.written("a"), [(RTP, PHONE_A)])

    def test_rejected_source_not_seen(self) -> None:
        """A packet from a source that may not latch is neither relayed nor tapped."""
        self.send("a", RTP, PHONE_A)
        self.session.tap("a", self.seen.append)
        self.send("a", b"injected", ("203.0.113.9", 4000))
        self.assertEqual(self.seen, [])

    def test_seen_before_transform(self) -> None:
        """The listener gets the packet as the phone sent it, before a transcoding transform."""
        self.session.set_transform("a", lambda data: data.upper())
        self.session.tap("a", self.seen.append)
        self.send("a", b"rtp-bytes", PHONE_A)
        self.assertEqual(self.seen, [b"rtp-bytes"])
        self.assertEqual(self.written("b"), [(b"RTP-BYTES", PHONE_B)])

    def test_untap_stops(self) -> None:
        """After untap the listener sees nothing more."""
        self.session.tap("a", self.seen.append)
        self.session.untap("a")
        self.send("a", RTP, PHONE_A)
        self.assertEqual(self.seen, [])
        self.assertEqual(self.written("b"), [(RTP, PHONE_B)])

    def test_failing_listener_removed(self) -> None:
        """A listener that raises is logged and removed; relaying goes on."""

        def broken(data: bytes) -> None:
            raise RuntimeError("boom")

        self.session.tap("a", broken)
        self.send("a", RTP, PHONE_A)
        self.send("a", RTP, PHONE_A)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.written("b"), [(RTP, PHONE_B), (RTP, PHONE_B)])
        self.assertNotIn("datagramReceived", vars(self.port("a").protocol))

    def test_bad_leg(self) -> None:
        """Only legs a and b can be tapped."""
        self.assertRaises(ValueError, self.session.tap, "c", self.seen.append)


class RelayListenTests(RelayTestCase):
    """Listeners beside the tap: a supervisor on a call that is being recorded."""

    def setUp(self) -> None:
        super().setUp()
        self.session.set_remote("a", *PHONE_A)
        self.session.set_remote("b", *PHONE_B)
        self.recorded: list[bytes] = []
        self.supervised: list[bytes] = []

    def test_tap_and_listener_both_see_packets(self) -> None:
        """With a tap and a listener on a leg each sees every packet; removing one leaves the other."""
        self.session.tap("a", self.recorded.append)
        remove = self.session.listen("a", self.supervised.append)
        self.send("a", RTP, PHONE_A)
        self.assertEqual((self.recorded, self.supervised), ([RTP], [RTP]))
        remove()
        remove()
        self.send("a", RTP, PHONE_A)
        self.assertEqual((self.recorded, self.supervised), ([RTP, RTP], [RTP]))
        self.assertEqual(self.written("b"), [(RTP, PHONE_B), (RTP, PHONE_B)])

    def test_tap_set_while_listening(self) -> None:
        """A tap set or removed while a listener is on keeps the listener; the last one gone restores the plain method."""
        remove = self.session.listen("a", self.supervised.append)
        self.session.tap("a", self.recorded.append)
        self.session.untap("a")
        self.send("a", RTP, PHONE_A)
        self.assertEqual((self.recorded, self.supervised), ([], [RTP]))
        remove()
        self.assertNotIn("datagramReceived", vars(self.port("a").protocol))

    def test_failing_listener_removed_alone(self) -> None:
        """A listener that raises is logged and removed; the tap and the relay go on."""

        def broken(data: bytes) -> None:
            raise RuntimeError("boom")

        self.session.tap("a", self.recorded.append)
        self.session.listen("a", broken)
        self.send("a", RTP, PHONE_A)
        self.send("a", RTP, PHONE_A)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.recorded, [RTP, RTP])
        self.assertEqual(self.written("b"), [(RTP, PHONE_B), (RTP, PHONE_B)])

    def test_only_listener_called_directly(self) -> None:
        """A leg's only listener is the endpoint's tap itself (one call per packet); one that raises is forgotten."""

        def broken(data: bytes) -> None:
            raise RuntimeError("boom")

        self.session.listen("a", broken)
        self.assertIs(self.port("a").protocol.tap, broken)
        self.send("a", RTP, PHONE_A)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.session.listen("a", self.supervised.append)
        self.send("a", RTP, PHONE_A)
        self.assertEqual(self.supervised, [RTP])
        self.assertEqual(self.flushLoggedErrors(RuntimeError), [])

    def test_bad_leg(self) -> None:
        """Only legs a and b can be listened to."""
        self.assertRaises(ValueError, self.session.listen, "c", self.supervised.append)
