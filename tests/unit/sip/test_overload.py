"""Tests for :mod:`pbx.sip.overload` (RFC 3261 §21.5.4, §8.2.6, §18.2; RFC 7339)."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import SIPOverloadConfig
from pbx.sip.core import SIPCore
from pbx.sip.message import Response, parse_message
from pbx.sip.overload import (
    SAMPLE_INTERVAL,
    SMOOTHING,
    OverloadGuard,
    new_work,
    refusal,
)
from pbx.sip.transaction import Peer
from pbx.sip.transport import SIPStreamFactory
from pbx.testing import FakeUDPPort

SOURCE = Peer("udp", "203.0.113.9", 40000)


def request(
    method: str = "REGISTER",
    *,
    via: str = "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-o1;rport",
    to_tag: str | None = None,
    extra: str = "",
) -> bytes:
    """The wire form of a request."""
    to = "<sip:1001@pbx.test>" + ("" if to_tag is None else f";tag={to_tag}")
    return (
        f"{method} sip:pbx.test SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1001@pbx.test>;tag=f1\r\n"
        f"To: {to}\r\n"
        "Call-ID: overload-1@10.0.0.5\r\n"
        f"CSeq: 7 {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()


CREDENTIALS = 'Authorization: Digest username="1001", realm="pbx.test", nonce="n", uri="sip:pbx.test", response="r"\r\n'
PROXY_CREDENTIALS = CREDENTIALS.replace("Authorization", "Proxy-Authorization")


class NewWorkTests(SynchronousTestCase):
    """Which requests start new work, read from the raw bytes."""

    def test_register_without_credentials(self) -> None:
        """A REGISTER without credentials is new work, at any level."""
        self.assertTrue(new_work(request("REGISTER"), severe=False))
        self.assertTrue(new_work(request("REGISTER"), severe=True))

    def test_credentials_only_when_severe(self) -> None:
        """A request with credentials finishes a challenge round: new work only when severe."""
        self.assertFalse(new_work(request("REGISTER", extra=CREDENTIALS), severe=False))
        self.assertFalse(new_work(request("INVITE", extra=PROXY_CREDENTIALS), severe=False))
        self.assertTrue(new_work(request("REGISTER", extra=CREDENTIALS), severe=True))
        self.assertTrue(new_work(request("INVITE", extra=PROXY_CREDENTIALS), severe=True))

    def test_initial_invite(self) -> None:
        """An INVITE without a To tag is new work."""
        self.assertTrue(new_work(request("INVITE"), severe=False))

    def test_reinvite_in_dialog(self) -> None:
        """An INVITE with a To tag (compact form too) belongs to a dialog: never new work."""
        self.assertFalse(new_work(request("INVITE", to_tag="t9"), severe=True))
        compact = request("INVITE", to_tag="t9").replace(b"\r\nTo: ", b"\r\nt: ")
        self.assertFalse(new_work(compact, severe=True))

    def test_other_methods_and_responses(self) -> None:
        """ACK, BYE, CANCEL, OPTIONS and responses are never new work."""
        for method in ("ACK", "BYE", "CANCEL", "OPTIONS", "SUBSCRIBE"):
            self.assertFalse(new_work(request(method), severe=True), method)
        self.assertFalse(new_work(b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n", severe=True))

    def test_credentials_in_body_do_not_count(self) -> None:
        """Only the header section is searched for credentials."""
        data = request("REGISTER").replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 60\r\n\r\n") + (
            b"\n" + CREDENTIALS.encode()
        )
        self.assertTrue(new_work(data, severe=False))


class RefusalTests(SynchronousTestCase):
    """The stateless 503 written from the request's own header lines."""

    def parsed(self, data: bytes, peer: Peer = SOURCE) -> tuple[Response, Peer]:
        answer = refusal(data, peer, 7)
        assert answer is not None
        response = parse_message(answer[0], stream=False)
        assert isinstance(response, Response)
        return response, answer[1]

    def test_response_fields(self) -> None:
        """503 with Retry-After, the request's From, Call-ID and CSeq, and a To tag added (§8.2.6.2)."""
        response, _ = self.parsed(request("INVITE"))
        self.assertEqual((response.status, response.reason), (503, "Service Unavailable"))
        self.assertEqual(response.headers.get("Retry-After"), "7")
        self.assertEqual(response.call_id, "overload-1@10.0.0.5")
        self.assertEqual((response.cseq.number, response.cseq.method), (7, "INVITE"))
        self.assertEqual(response.from_.tag, "f1")
        self.assertTrue(response.to.tag)
        self.assertEqual(response.headers.get("Content-Length"), "0")

    def test_rport(self) -> None:
        """With rport the top Via records the source and the answer goes to the source port (RFC 3581 §4)."""
        response, to = self.parsed(request())
        via = response.top_via
        self.assertEqual((via.params.get("received"), via.params.get("rport")), ("203.0.113.9", "40000"))
        self.assertEqual(via.branch, "z9hG4bK-o1")
        self.assertEqual(to, SOURCE)

    def test_no_rport(self) -> None:
        """Without rport the answer goes to the source address at the Via's port (§18.2.2)."""
        response, to = self.parsed(request(via="SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-o2"))
        self.assertEqual(response.top_via.params.get("received"), "203.0.113.9")
        self.assertEqual(to, Peer("udp", "203.0.113.9", 5062))
        _, default = self.parsed(request(via="SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK-o3"))
        self.assertEqual(default, Peer("udp", "203.0.113.9", 5060))

    def test_stream(self) -> None:
        """Over a stream the answer goes back on the request's connection."""
        peer = Peer("tcp", "203.0.113.9", 40001)
        _, to = self.parsed(request(via="SIP/2.0/TCP 10.0.0.5:5062;branch=z9hG4bK-o4"), peer)
        self.assertEqual(to, peer)

    def test_every_via_kept_in_order(self) -> None:
        """Every Via is copied, in order, only the top one stamped."""
        data = request(via="SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-a, SIP/2.0/UDP 10.0.0.6;branch=z9hG4bK-b")
        data = data.replace(b"Max-Forwards", b"v: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bK-c\r\nMax-Forwards")
        response, _ = self.parsed(data)
        vias = ", ".join(response.headers.get_all("Via"))
        self.assertEqual([p.split(";")[1] for p in vias.split(", ")],
                         ["branch=z9hG4bK-a", "branch=z9hG4bK-b", "branch=z9hG4bK-c"])
        self.assertIn("received=203.0.113.9", vias.split(", ")[0])
        self.assertNotIn("received", vias.split(", ", 1)[1])

    def test_compact_forms(self) -> None:
        """Compact header names (§7.3.3) are read and written in full."""
        data = (
            b"REGISTER sip:pbx.test SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK-c;rport\r\n"
            b"f: <sip:1001@pbx.test>;tag=f2\r\nt: <sip:1001@pbx.test>\r\ni: compact@10.0.0.5\r\n"
            b"CSeq: 2 REGISTER\r\nl: 0\r\n\r\n"
        )
        response, _ = self.parsed(data)
        self.assertEqual((response.status, response.call_id, response.from_.tag), (503, "compact@10.0.0.5", "f2"))

    def test_missing_header(self) -> None:
        """A request without a Call-ID cannot be answered: None (it is dropped)."""
        data = request().replace(b"Call-ID: overload-1@10.0.0.5\r\n", b"")
        self.assertIsNone(refusal(data, SOURCE, 5))


def late(clock: Clock, seconds: float, samples: int = 4) -> None:
    """The reactor comes back to the sampling timer ``seconds`` after it was due, ``samples`` times running."""
    for _ in range(samples):
        clock.advance(SAMPLE_INTERVAL + seconds)


class OverloadGuardTests(SynchronousTestCase):
    """The guard samples the reactor's lag on the clock and refuses new work while it is late."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.guard = OverloadGuard(self.clock, SIPOverloadConfig(lag_ms=100, severe_lag_ms=500))
        self.guard.start()

    def tearDown(self) -> None:
        self.guard.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_on_time(self) -> None:
        """A reactor that keeps time refuses nothing."""
        for _ in range(10):
            self.clock.advance(SAMPLE_INTERVAL)
        self.assertEqual((self.guard.lag, self.guard.level), (0.0, 0.0))
        self.assertFalse(self.guard.refuses(request("REGISTER")))
        self.assertFalse(self.guard.refuses(request("INVITE")))

    def test_one_late_sample_tolerated(self) -> None:
        """One late turn (a garbage collection) is smoothed away: nothing is refused."""
        late(self.clock, 0.15, samples=1)
        self.assertAlmostEqual(self.guard.lag, 0.15)
        self.assertLess(self.guard.level, 0.1)
        self.assertFalse(self.guard.refuses(request("REGISTER")))

    def test_late_refuses_new_rounds(self) -> None:
        """Late for a while, twice lag_ms: new REGISTERs and INVITEs without credentials are refused; the rest pass."""
        late(self.clock, 0.3)
        self.assertTrue(0.2 < self.guard.level < 0.3)
        self.assertEqual(self.guard.share, 1.0)
        self.assertTrue(self.guard.refuses(request("REGISTER")))
        self.assertTrue(self.guard.refuses(request("INVITE")))
        self.assertFalse(self.guard.refuses(request("REGISTER", extra=CREDENTIALS)))
        self.assertFalse(self.guard.refuses(request("INVITE", extra=PROXY_CREDENTIALS)))
        self.assertFalse(self.guard.refuses(request("INVITE", to_tag="t1")))
        for method in ("ACK", "BYE", "CANCEL"):
            self.assertFalse(self.guard.refuses(request(method)), method)
        self.assertEqual(self.guard.stats, {"refused": 2, "episodes": 1, "late": 0})

    def test_share_follows_the_lag(self) -> None:
        """The refused share grows while the lag stays over lag_ms, and falls back to none once on time."""
        late(self.clock, 0.25, samples=1)
        first = self.guard.share
        late(self.clock, 0.25, samples=1)
        self.assertTrue(0 < first < self.guard.share)
        for _ in range(round(2 * SMOOTHING / SAMPLE_INTERVAL)):
            self.clock.advance(SAMPLE_INTERVAL)
        self.assertEqual(self.guard.share, 0.0)

    def test_severe_refuses_credentials_too(self) -> None:
        """Past severe_lag_ms, new requests with credentials are refused as well."""
        late(self.clock, 0.8)
        self.assertGreater(self.guard.level, 0.5)
        self.assertTrue(self.guard.refuses(request("REGISTER", extra=CREDENTIALS)))
        self.assertTrue(self.guard.refuses(request("INVITE", extra=PROXY_CREDENTIALS)))
        self.assertFalse(self.guard.refuses(request("BYE")))

    def test_recovers_within_a_second(self) -> None:
        """Once the reactor keeps time again, new work is taken within twice SMOOTHING seconds."""
        late(self.clock, 0.3)
        self.assertTrue(self.guard.refuses(request("REGISTER")))
        for _ in range(round(2 * SMOOTHING / SAMPLE_INTERVAL)):
            self.clock.advance(SAMPLE_INTERVAL)
        self.assertLess(self.guard.level, 0.1)
        self.assertFalse(self.guard.refuses(request("REGISTER")))
        self.assertEqual(self.guard.stats, {"refused": 1, "episodes": 1, "late": 0})

    def test_overdue_turn_counts_when_severe(self) -> None:
        """A reactor turn already past severe_lag_ms, before the sampling timer can run, refuses at once."""
        self.clock.rightNow += SAMPLE_INTERVAL + 0.4
        self.assertFalse(self.guard.refuses(request("REGISTER")))
        self.clock.rightNow += 0.2
        self.assertTrue(self.guard.refuses(request("REGISTER")))
        self.assertTrue(self.guard.refuses(request("REGISTER", extra=CREDENTIALS)))


class WaitSignalTests(SynchronousTestCase):
    """The wait of each UDP request in the receive queue, as the kernel stamped it, is the first signal."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.guard = OverloadGuard(self.clock, SIPOverloadConfig(queue_ms=200))
        self.guard.start()
        self.logged: list[str] = []
        observer = lambda event: self.logged.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def test_no_timer(self) -> None:
        """With the lag off (the default), no sampling timer runs."""
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_in_time_admitted(self) -> None:
        """A new request read within queue_ms, or whose wait is unknown, is taken."""
        self.assertFalse(self.guard.refuses(request("REGISTER"), 0.2))
        self.assertFalse(self.guard.refuses(request("INVITE"), 0.0))
        self.assertFalse(self.guard.refuses(request("REGISTER"), None))
        self.assertEqual(self.guard.stats, {"refused": 0, "episodes": 0, "late": 0})

    def test_long_wait_refused_at_once(self) -> None:
        """A new REGISTER or INVITE without credentials that waited over twice queue_ms is refused; the rest pass."""
        self.assertTrue(self.guard.refuses(request("REGISTER"), 0.41))
        self.assertTrue(self.guard.refuses(request("INVITE"), 3.0))
        self.assertFalse(self.guard.refuses(request("REGISTER", extra=CREDENTIALS), 3.0))
        self.assertFalse(self.guard.refuses(request("INVITE", extra=PROXY_CREDENTIALS), 3.0))
        self.assertFalse(self.guard.refuses(request("INVITE", to_tag="t1"), 3.0))
        for method in ("ACK", "BYE", "CANCEL", "OPTIONS"):
            self.assertFalse(self.guard.refuses(request(method), 3.0), method)
        self.assertEqual(self.guard.stats, {"refused": 2, "episodes": 1, "late": 2})
        self.assertEqual(self.guard.waited, 3.0)

    def test_burst_waited_out(self) -> None:
        """Waits over queue_ms (up to twice it) for less than queue_ms, as after a pause of the reactor, refuse nothing."""
        for _ in range(19):
            self.assertFalse(self.guard.refuses(request("REGISTER"), 0.35))
            self.clock.advance(0.01)
        self.assertFalse(self.guard.refuses(request("BYE"), 0.05))  # read in time: the queue is down
        self.clock.advance(0.01)
        self.assertFalse(self.guard.refuses(request("REGISTER"), 0.3))
        self.assertEqual(self.guard.stats["refused"], 0)

    def test_standing_queue_refused(self) -> None:
        """Every request read for queue_ms waited over it (a queue that stands): new work is refused."""
        for _ in range(20):
            self.assertFalse(self.guard.refuses(request("BYE"), 0.25))
            self.clock.advance(0.01)
        self.assertTrue(self.guard.refuses(request("REGISTER"), 0.25))
        self.assertFalse(self.guard.refuses(request("REGISTER"), 0.15))
        self.assertFalse(self.guard.refuses(request("REGISTER"), 0.25))  # it has to stand again
        self.assertEqual(self.guard.stats, {"refused": 1, "episodes": 1, "late": 1})

    def test_off(self) -> None:
        """queue_ms 0: a request is never refused on its wait."""
        guard = OverloadGuard(self.clock, SIPOverloadConfig(queue_ms=0))
        self.assertFalse(guard.refuses(request("REGISTER"), 30.0))


class DisabledGuardTests(SynchronousTestCase):
    """``lag_ms: 0`` and ``queue_ms: 0`` turn shedding off."""

    def test_never_refuses(self) -> None:
        """With both signals off no timer runs and nothing is refused, however late the reactor is or long a request waited."""
        clock = Clock()
        guard = OverloadGuard(clock, SIPOverloadConfig(lag_ms=0, queue_ms=0))
        guard.start()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10)
        self.assertFalse(guard.refuses(request("REGISTER"), 10.0))
        guard.stop()


class CoreSheddingTests(SynchronousTestCase):
    """The core answers refused requests with a stateless 503 before parsing; the rest flows on."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.core = SIPCore(self.clock)
        self.port = FakeUDPPort(5060, None)
        self.core.transports.udp = self.port
        self.core.overload = OverloadGuard(self.clock, SIPOverloadConfig(lag_ms=100))
        self.core.overload.start()
        self.handled: list[str] = []
        self.core.handlers["REGISTER"] = lambda t: self.handled.append(t.request.method)

    def tearDown(self) -> None:
        assert self.core.overload is not None
        self.core.overload.stop()
        self.clock.advance(64)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_late_refused_over_udp(self) -> None:
        """A new REGISTER over UDP that waited too long gets 503 with Retry-After, once, and makes no transaction."""
        self.core.receive(request("REGISTER"), SOURCE, False, 0.5)
        self.assertEqual(self.handled, [])
        self.assertEqual(self.core.transactions.counts, (0, 0))
        [(data, to)] = self.port.written
        response = parse_message(data, stream=False)
        assert isinstance(response, Response)
        self.assertEqual((response.status, response.headers.get("Retry-After")), (503, "5"))
        self.assertEqual(to, ("203.0.113.9", 40000))  # rport: back to the source port
        self.clock.advance(64)
        self.assertEqual(len(self.port.written), 1)  # stateless: never sent again
        assert self.core.overload is not None
        self.assertEqual(self.core.overload.stats["refused"], 1)

    def test_lag_refuses_over_udp(self) -> None:
        """Under lag a new REGISTER over UDP is refused with 503 too."""
        late(self.clock, 0.3)
        self.core.receive(request("REGISTER"), SOURCE, False)
        self.assertEqual(self.handled, [])
        [(data, _)] = self.port.written
        self.assertTrue(data.startswith(b"SIP/2.0 503 "))

    def test_refused_statelessly_on_a_stream(self) -> None:
        """Under lag a new REGISTER on a TCP connection gets 503 with Retry-After and makes no transaction."""
        late(self.clock, 0.3)
        address = IPv4Address("TCP", "203.0.113.9", 40001)
        protocol = SIPStreamFactory(self.core.transports, "tcp").buildProtocol(address)
        assert protocol is not None
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(request("REGISTER", via="SIP/2.0/TCP 10.0.0.5:5062;branch=z9hG4bK-o2"))
        protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(self.handled, [])
        self.assertEqual(self.core.transactions.counts, (0, 0))
        response = parse_message(transport.value(), stream=False)
        assert isinstance(response, Response)
        self.assertEqual((response.status, response.headers.get("Retry-After")), (503, "5"))

    def test_in_dialog_flows(self) -> None:
        """However long it waited, a BYE still reaches the transaction layer (and gets its 481 here)."""
        late(self.clock, 0.3)
        self.core.receive(request("BYE", to_tag="t1"), SOURCE, False, 5.0)
        [(data, _)] = self.port.written
        response = parse_message(data, stream=False)
        assert isinstance(response, Response)
        self.assertEqual(response.status, 481)

    def test_admitted_when_on_time(self) -> None:
        """On time and read at once, a REGISTER reaches its handler."""
        self.clock.advance(SAMPLE_INTERVAL)
        self.core.receive(request("REGISTER"), SOURCE, False, 0.01)
        self.assertEqual(self.handled, ["REGISTER"])
