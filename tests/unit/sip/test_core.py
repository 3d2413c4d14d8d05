"""Tests for :mod:`pbx.sip.core` (RFC 3261 §8.2, §18.2, RFC 3581)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pbx.security.defence import SourceDefence
from pbx.security.ratelimit import Limit
from pbx.sip import core as core_module
from pbx.sip import transaction as transaction_module
from pbx.sip.core import SUPPORTED, SIPCore, response_peer, stamp_via
from pbx.sip.message import Request, Response, make_response, parse_message
from pbx.sip.transaction import STATELESS_MEMORY, Peer, ServerTransaction
from pbx.sip.transport import SIPDatagramProtocol, SIPStreamFactory
from pbx.testing import FakeUDPPort, FakeUDPReactor

from support.paths import CONFORMANCE

SOURCE = ("203.0.113.9", 40000)
SOURCE_PEER = Peer("udp", *SOURCE)


def request(
    method: str = "OPTIONS",
    *,
    uri: str = "sip:pbx.test",
    via: str = "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-c1;rport",
    call_id: str = "core-1@10.0.0.5",
    cseq: int = 1,
    from_tag: str = "f1",
    to_tag: str | None = None,
    max_forwards: str = "70",
    extra: str = "",
    version: str = "SIP/2.0",
) -> bytes:
    """The wire form of a request."""
    to = "<sip:1001@pbx.test>" + ("" if to_tag is None else f";tag={to_tag}")
    return (
        f"{method} {uri} {version}\r\n"
        f"Via: {via}\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: <sip:1002@pbx.test>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()


class _CoreTestCase(SynchronousTestCase):
    """A SIPCore on a fake clock with a fake UDP port."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.core = SIPCore(self.clock)
        self.port = FakeUDPPort(5060, None)
        self.core.transports.udp = self.port

    def tearDown(self) -> None:
        # Every transaction and the loop-detection memory end within 64*T1.
        self.clock.advance(64)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.core.transactions.counts, (0, 0))

    def receive_raw(
        self, data: bytes, source: tuple[str, int] = SOURCE
    ) -> list[tuple[bytes, tuple[str, int]]]:
        """Feed one datagram to the core; return what it wrote, unparsed."""
        before = len(self.port.written)
        self.core.receive(data, Peer("udp", *source), False)
        return self.port.written[before:]

    def receive(
        self, data: bytes, source: tuple[str, int] = SOURCE
    ) -> list[tuple[Response, tuple[str, int]]]:
        """Feed one datagram to the core; return the responses it wrote."""
        out = []
        for raw, addr in self.receive_raw(data, source):
            message = parse_message(raw)
            assert isinstance(message, Response)
            out.append((message, addr))
        return out

    def one(self, data: bytes, source: tuple[str, int] = SOURCE) -> Response:
        """Feed one datagram and return the single response it got."""
        sent = self.receive(data, source)
        self.assertEqual(len(sent), 1, sent)
        self.assertEqual(sent[0][1][0], source[0])  # never the Via host
        return sent[0][0]

    def last(self, data: bytes, source: tuple[str, int] = SOURCE) -> Response:
        """Feed one datagram and return the last response it got."""
        sent = self.receive(data, source)
        self.assertTrue(sent)
        return sent[-1][0]


class OptionsTests(_CoreTestCase):
    """OPTIONS answered by the core (§11.2)."""

    def test_options(self) -> None:
        """OPTIONS gets 200 with Allow, Accept, Supported, a To tag and our Server."""
        response = self.one(request())
        self.assertEqual((response.status, response.reason), (200, "OK"))
        self.assertEqual(response.headers.get_all("Allow"), ["ACK", "OPTIONS"])
        self.assertEqual(response.headers.get("Accept"), "application/sdp")
        self.assertEqual(response.headers.get_all("Supported"), list(SUPPORTED))
        self.assertEqual(response.headers.get("Server"), "pbx")
        self.assertTrue(response.to.tag)
        self.assertEqual(response.from_.tag, "f1")
        self.assertEqual(response.call_id, "core-1@10.0.0.5")
        self.assertEqual(str(response.cseq), "1 OPTIONS")

    def test_allow_lists_handlers(self) -> None:
        """Allow names every method with a handler."""
        self.core.handlers["REGISTER"] = lambda txn: None
        self.core.handlers["MESSAGE"] = lambda txn: None
        self.assertEqual(self.core.allow, "ACK, MESSAGE, OPTIONS, REGISTER")
        response = self.one(request())
        self.assertEqual(
            response.headers.get_all("Allow"), ["ACK", "MESSAGE", "OPTIONS", "REGISTER"]
        )

    def test_user_agent(self) -> None:
        """Responses carry the configured Server value."""
        self.core.user_agent = "pbx/1.0"
        self.assertEqual(self.one(request()).headers.get("Server"), "pbx/1.0")

    def test_retransmission_same_response(self) -> None:
        """A retransmitted OPTIONS gets the same response again; the handler runs once."""
        calls: list[ServerTransaction] = []

        def handler(txn: ServerTransaction) -> None:
            calls.append(txn)
            txn.respond(self.core.options_response(txn.request))

        self.core.handlers["OPTIONS"] = handler
        self.receive(request())
        self.clock.advance(1)
        self.receive(request())
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(self.port.written), 2)
        self.assertEqual(self.port.written[0], self.port.written[1])

    def test_handler_error(self) -> None:
        """A handler that raises produces a 500, is logged, and the core keeps working."""

        def handler(txn: ServerTransaction) -> None:
            raise ZeroDivisionError("handler bug")

        self.core.handlers["MESSAGE"] = handler
        response = self.one(request("MESSAGE"))
        self.assertEqual(response.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.one(request(call_id="core-2@10.0.0.5")).status, 200)

    def test_stray_response_dropped(self) -> None:
        """A response matching no client transaction is dropped silently."""
        response = make_response(parse_message(request()), 200, to_tag="x")  # type: ignore[arg-type]
        self.assertEqual(self.receive(response.to_bytes()), [])
        self.assertEqual(self.core.stats, {"received": 1, "bad": 0, "dropped": 0, "limited": 0})

    def test_via_fake_udp_reactor(self) -> None:
        """A datagram through a listening SIPDatagramProtocol is answered out of that port."""
        reactor = FakeUDPReactor()
        core = SIPCore(reactor)
        port = reactor.listenUDP(5060, SIPDatagramProtocol(core.receive))
        core.transports.udp = port
        port.protocol.datagramReceived(request(), SOURCE)
        self.assertEqual(len(port.written), 1)
        data, addr = port.written[0]
        self.assertEqual(addr, SOURCE)
        self.assertTrue(data.startswith(b"SIP/2.0 200 OK\r\n"))
        reactor.advance(64)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_over_tcp(self) -> None:
        """A request over a stream is answered on the same connection, never over UDP."""
        address = IPv4Address("TCP", "203.0.113.9", 50123)
        protocol = SIPStreamFactory(self.core.transports, "tcp").buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        data = request(via="SIP/2.0/TCP 10.0.0.5:5062;branch=z9hG4bK-t;rport")
        for i in range(0, len(data), 7):
            protocol.dataReceived(data[i : i + 7])
        response = parse_message(transport.value(), stream=True)
        assert isinstance(response, Response)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.top_via.received, "203.0.113.9")
        self.assertEqual(response.top_via.rport, 50123)
        self.assertEqual(self.port.written, [])
        protocol.connectionLost(None)
        self.assertEqual(self.core.transports.connections, 0)


class ResponseRoutingTests(_CoreTestCase):
    """Where responses go: RFC 3261 §18.2.2 with RFC 3581."""

    def test_rport(self) -> None:
        """With rport the Via gets received= and rport=, and the response goes to the source port."""
        sent = self.receive(request())
        self.assertEqual(len(sent), 1)
        response, addr = sent[0]
        self.assertEqual(addr, SOURCE)
        via = response.top_via
        self.assertEqual((via.host, via.port), ("10.0.0.5", 5062))
        self.assertEqual(via.received, "203.0.113.9")
        self.assertEqual(via.rport, 40000)
        self.assertEqual(via.branch, "z9hG4bK-c1")

    def test_no_rport_uses_via_port(self) -> None:
        """Without rport the response goes to the Via port at the source IP."""
        sent = self.receive(request(via="SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-c1"))
        response, addr = sent[0]
        self.assertEqual(addr, ("203.0.113.9", 5070))
        self.assertEqual(response.top_via.received, "203.0.113.9")
        self.assertNotIn("rport", response.top_via.params)

    def test_no_rport_no_port(self) -> None:
        """Without rport or a Via port the response goes to port 5060 at the source IP."""
        sent = self.receive(
            request(via="SIP/2.0/UDP phone.example.net;branch=z9hG4bK-c1")
        )
        self.assertEqual(sent[0][1], ("203.0.113.9", 5060))

    def test_via_host_never_used(self) -> None:
        """The Via host is never a destination, whatever it names."""
        for n, host in enumerate(("198.51.100.99", "255.255.255.255", "127.0.0.1")):
            sent = self.receive(
                request(
                    via=f"SIP/2.0/UDP {host}:5080;branch=z9hG4bK-h{n}", call_id=f"h{n}"
                )
            )
            self.assertEqual([a for _, a in sent], [("203.0.113.9", 5080)])

    def test_same_host_no_received(self) -> None:
        """A Via whose host is the source address gets no received parameter (§18.2.1)."""
        sent = self.receive(
            request(via="SIP/2.0/UDP 203.0.113.9:5062;branch=z9hG4bK-c1")
        )
        response, addr = sent[0]
        self.assertIsNone(response.top_via.received)
        self.assertEqual(addr, ("203.0.113.9", 5062))

    def test_rport_always_adds_received(self) -> None:
        """With rport, received is added even when the host matches (RFC 3581 §4)."""
        sent = self.receive(
            request(via="SIP/2.0/UDP 203.0.113.9:5062;branch=z9hG4bK-c1;rport")
        )
        self.assertEqual(sent[0][0].top_via.received, "203.0.113.9")
        self.assertEqual(sent[0][0].top_via.rport, 40000)

    def test_lower_vias_untouched(self) -> None:
        """Only the top Via is stamped; the others come back unchanged and in order."""
        via = "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-c1;rport, SIP/2.0/UDP 10.0.0.6;branch=z9hG4bK-x"
        response = self.one(request(via=via))
        vias = response.vias
        self.assertEqual(len(vias), 2)
        self.assertEqual(vias[0].received, "203.0.113.9")
        self.assertEqual(str(vias[1]), "SIP/2.0/UDP 10.0.0.6;branch=z9hG4bK-x")

    def test_ipv6_source(self) -> None:
        """A bracketed IPv6 Via host equal to the source gets no received parameter."""
        message = parse_message(
            request(via="SIP/2.0/UDP [2001:db8::5]:5062;branch=z9hG4bK-6")
        )
        assert isinstance(message, Request)
        peer = Peer("udp", "2001:db8::5", 5062)
        stamp_via(message, peer)
        self.assertIsNone(message.top_via.received)
        self.assertEqual(response_peer(message, peer), peer)

    def test_stream_peer(self) -> None:
        """Over a stream the response goes back to the connection's peer."""
        message = parse_message(
            request(via="SIP/2.0/TCP 10.0.0.5:5062;branch=z9hG4bK-t")
        )
        assert isinstance(message, Request)
        peer = Peer("tcp", "203.0.113.9", 50123)
        self.assertEqual(response_peer(message, peer), peer)


class MalformedTests(_CoreTestCase):
    """Malformed input: 400 or 505 when a response can be addressed, else dropped."""

    def test_400_names_fault(self) -> None:
        """A malformed request with the headers needed to answer it gets 400 naming the fault."""
        response = self.one(request(max_forwards="abc"))
        self.assertEqual(response.status, 400)
        self.assertEqual(response.reason, "Malformed Max-Forwards header")
        self.assertEqual(response.top_via.received, "203.0.113.9")
        self.assertEqual(self.core.stats, {"received": 1, "bad": 1, "dropped": 0, "limited": 0})

    def test_400_duplicate_header(self) -> None:
        """Two Call-ID headers get 400 Multiple Call-ID headers, sent to the source."""
        sent = self.receive(request(extra="Call-ID: other@10.0.0.5\r\n"))
        self.assertEqual(
            [(r.status, r.reason, a) for r, a in sent],
            [(400, "Multiple Call-ID headers", SOURCE)],
        )

    def test_400_content_length(self) -> None:
        """A Content-Length larger than the datagram gets 400."""
        response = self.one(
            request().replace(b"Content-Length: 0", b"Content-Length: 50")
        )
        self.assertEqual(
            (response.status, response.reason),
            (400, "Content-Length larger than message"),
        )

    def test_400_reason_printable(self) -> None:
        """The reason phrase never carries control characters from the request."""
        response = self.one(request(uri="sip:pbx.test?x=\x01"))
        self.assertEqual(response.status, 400)
        self.assertTrue(response.reason.isprintable())

    def test_garbage_dropped(self) -> None:
        """Bytes that are not SIP get no reply and are counted as bad and dropped."""
        for data in (b"\x00\xff\xfegarbage", b"NOT SIP AT ALL\r\n\r\n", b"hello"):
            self.assertEqual(self.receive(data), [])
        self.assertEqual(self.core.stats, {"received": 3, "bad": 3, "dropped": 3, "limited": 0})
        self.assertEqual(self.port.written, [])

    def test_bad_via_dropped(self) -> None:
        """A request whose Via cannot be read gets no reply: there is nowhere to send it."""
        self.assertEqual(self.receive(request(via="SIP/2.0/UDP ;;,;")), [])
        self.assertEqual(self.core.stats["dropped"], 1)

    def test_missing_from_400(self) -> None:
        """A request missing From still gets 400 when its Via is readable."""
        data = request().replace(b"From: <sip:1002@pbx.test>;tag=f1\r\n", b"")
        sent = self.receive_raw(data)
        self.assertEqual(len(sent), 1)
        self.assertTrue(sent[0][0].startswith(b"SIP/2.0 400 Missing From header\r\n"))
        self.assertEqual(sent[0][1], SOURCE)

    def test_505(self) -> None:
        """A request in SIP/3.0 gets 505 Version Not Supported."""
        response = self.one(request(version="SIP/3.0"))
        self.assertEqual(
            (response.status, response.reason), (505, "Version Not Supported")
        )
        self.assertEqual(self.core.stats["bad"], 1)

    def test_bad_response_dropped(self) -> None:
        """A malformed response is never answered."""
        self.assertEqual(
            self.receive(
                b"SIP/2.0 999 Nope\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"
            ),
            [],
        )
        self.assertEqual(self.core.stats["dropped"], 1)

    def test_core_still_works(self) -> None:
        """After bad input the core answers a good request normally."""
        self.receive(b"\xff" * 100)
        self.receive(request(max_forwards="x"))
        self.assertEqual(self.one(request(call_id="after@10.0.0.5")).status, 200)


class CheckTests(_CoreTestCase):
    """The request checks of RFC 3261 §8.2.1-§8.2.2."""

    def test_416(self) -> None:
        """An unknown Request-URI scheme gets 416."""
        response = self.one(request(uri="nobodyKnowsThisScheme:totallyopaquecontent"))
        self.assertEqual(response.status, 416)

    def test_tel_accepted(self) -> None:
        """A tel Request-URI is a scheme we handle."""
        self.assertEqual(self.one(request(uri="tel:+15551234567")).status, 200)

    def test_420(self) -> None:
        """A Require we do not support gets 420 with Unsupported naming it."""
        response = self.one(request(extra="Require: foo\r\n"))
        self.assertEqual(response.status, 420)
        self.assertEqual(response.headers.get_all("Unsupported"), ["foo"])

    def test_420_lists_only_unsupported(self) -> None:
        """Unsupported names the required option tags we lack, not those we support."""
        self.patch(core_module, "SUPPORTED", ("path",))
        response = self.one(request(extra="Require: foo, path\r\nRequire: bar\r\n"))
        self.assertEqual(response.status, 420)
        self.assertEqual(response.headers.get_all("Unsupported"), ["foo", "bar"])

    def test_require_supported(self) -> None:
        """A Require naming only extensions we support is accepted, and OPTIONS lists them."""
        self.patch(core_module, "SUPPORTED", ("path",))
        response = self.one(request(extra="Require: path\r\n"))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get_all("Supported"), ["path"])

    def test_require_ignored_on_cancel(self) -> None:
        """Require is not checked on CANCEL (§8.2.2.3)."""
        response = self.one(request("CANCEL", extra="Require: foo\r\n"))
        self.assertEqual(response.status, 481)

    def test_483(self) -> None:
        """Max-Forwards 0 on a request we would have to forward gets 483."""
        self.assertEqual(self.one(request("INVITE", max_forwards="0")).status, 483)
        self.assertEqual(
            self.one(request("MESSAGE", max_forwards="0", call_id="m")).status, 483
        )

    def test_options_max_forwards_zero(self) -> None:
        """OPTIONS with Max-Forwards 0 is answered by us, not refused."""
        self.assertEqual(self.one(request(max_forwards="0")).status, 200)

    def test_482(self) -> None:
        """The same request (From tag, Call-ID, CSeq) by another branch, without To tag, gets 482."""
        calls: list[ServerTransaction] = []
        self.core.handlers["MESSAGE"] = lambda txn: (
            calls.append(txn),
            txn.respond(make_response(txn.request, 200, to_tag="t")),
        )
        self.assertEqual(self.one(request("MESSAGE")).status, 200)
        response = self.one(
            request(
                "MESSAGE", via="SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-other;rport"
            )
        )
        self.assertEqual((response.status, response.reason), (482, "Loop Detected"))
        self.assertEqual(len(calls), 1)

    def test_482_memory_expires(self) -> None:
        """After 32 s the same request by another branch is new again."""
        self.one(request())
        self.clock.advance(32)
        response = self.one(
            request(via="SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-later;rport")
        )
        self.assertEqual(response.status, 200)

    def test_no_482_with_to_tag(self) -> None:
        """A request with a To tag is not checked for merging."""
        self.assertEqual(self.one(request("BYE", to_tag="t")).status, 481)
        response = self.one(
            request(
                "BYE",
                to_tag="t",
                via="SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-2;rport",
            )
        )
        self.assertEqual(response.status, 481)

    def test_501(self) -> None:
        """An unknown method gets 501 with Allow and a To tag."""
        self.core.handlers["REGISTER"] = lambda txn: None
        response = self.one(request("FROBNICATE"))
        self.assertEqual(response.status, 501)
        self.assertEqual(
            response.headers.get_all("Allow"), ["ACK", "OPTIONS", "REGISTER"]
        )
        self.assertTrue(response.to.tag)

    def test_481_bye(self) -> None:
        """A BYE matching no dialog gets 481, keeping the request's To tag."""
        response = self.one(request("BYE", to_tag="dlg-1"))
        self.assertEqual(response.status, 481)
        self.assertEqual(response.to.tag, "dlg-1")

    def test_cancel_no_invite(self) -> None:
        """A CANCEL matching no INVITE transaction gets 481 (§9.2)."""
        response = self.one(request("CANCEL"))
        self.assertEqual(response.status, 481)

    def test_cancel_matching_invite(self) -> None:
        """A CANCEL matching an INVITE transaction gets 200 with the INVITE response's To tag (§9.2)."""
        final = self.last(request("INVITE"))
        self.assertEqual(final.status, 501)
        response = self.one(request("CANCEL"))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.to.tag, final.to.tag)
        self.assertEqual(str(response.cseq), "1 CANCEL")

    def test_rejections_carry_to_tag(self) -> None:
        """Every final response to a request without a To tag adds one (§8.2.6.2)."""
        cases = {
            416: request(uri="nobodyKnowsThisScheme:x", call_id="t416"),
            420: request(extra="Require: foo\r\n", call_id="t420"),
            483: request("MESSAGE", max_forwards="0", call_id="t483"),
            400: request(max_forwards="abc", call_id="t400"),
            505: request(version="SIP/3.0", call_id="t505"),
            501: request("FROBNICATE", call_id="t501"),
            200: request(call_id="t200"),
        }
        for status, data in cases.items():
            response = self.one(data)
            self.assertEqual(response.status, status)
            self.assertTrue(response.to.tag, status)
        self.one(request("MESSAGE", call_id="t482", max_forwards="1"))
        looped = self.one(
            request(
                "MESSAGE",
                call_id="t482",
                max_forwards="1",
                via="SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK-2",
            )
        )
        self.assertEqual(looped.status, 482)
        self.assertTrue(looped.to.tag)

    def test_rejection_keeps_to_tag(self) -> None:
        """A rejected in-dialog request keeps the To tag it came with."""
        response = self.one(request("INFO", to_tag="dlg-9", extra="Require: foo\r\n"))
        self.assertEqual((response.status, response.to.tag), (420, "dlg-9"))

    def test_invite_without_handler(self) -> None:
        """An INVITE with no handler gets 501 at once (no 100 before it), retransmitted until ACKed."""
        sent = self.receive(request("INVITE"))
        self.assertEqual([r.status for r, _ in sent], [501])
        self.clock.advance(0.5)
        self.assertEqual(len(self.port.written), 2)
        ack = request("ACK", to_tag=sent[0][0].to.tag)
        self.assertEqual(self.receive(ack), [])
        self.clock.advance(10)
        self.assertEqual(len(self.port.written), 2)

    def test_ack_never_answered(self) -> None:
        """An ACK gets no response, even when malformed or failing a check."""
        for n, data in enumerate(
            (
                request("ACK", to_tag="x"),
                request("ACK", to_tag="x", max_forwards="0", call_id="a1"),
                request("ACK", to_tag="x", extra="Require: foo\r\n", call_id="a2"),
                request("ACK", uri="mailto:x@pbx.test", call_id="a3"),
                request("ACK", max_forwards="bad", call_id="a4"),
                request("ACK", version="SIP/3.0", call_id="a5"),
            )
        ):
            self.assertEqual(self.receive(data), [], n)
        self.assertEqual(self.port.written, [])
        self.assertEqual(self.core.transactions.counts, (0, 0))


def _verdicts() -> dict[str, str]:
    path = CONFORMANCE / "rfc4475" / "verdicts.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return {row[0]: row[1].strip() for row in rows}


#: Torture messages whose Via names a port: without rport, §18.2.2 answers
#: there (at the source IP).  Every other one has no port: 5060.
VIA_PORTS = {"quotbal.dat": 5050}
TORTURE_SOURCE = ("198.51.100.7", 5060)


class TortureTests(SynchronousTestCase):
    """Every RFC 4475 torture message, fed to the core as one UDP datagram."""

    def check(self, name: str) -> None:
        """Feed one file; it never raises and every response goes to the source address."""
        path = CONFORMANCE / "rfc4475" / name
        clock = Clock()
        core = SIPCore(clock)
        port = FakeUDPPort(5060, None)
        core.transports.udp = port
        core.receive(path.read_bytes(), Peer("udp", *TORTURE_SOURCE), False)
        clock.advance(64)  # let any retransmission happen, then every timer end
        expected = (TORTURE_SOURCE[0], VIA_PORTS.get(name, TORTURE_SOURCE[1]))
        for _, addr in port.written:
            self.assertEqual(addr, expected)
        # Read the status line only: a 400 may copy the very header that
        # was malformed, so the whole response need not parse.
        statuses = []
        for data, _ in port.written:
            version, code, _reason = data.split(b"\r\n", 1)[0].split(b" ", 2)
            self.assertEqual(version, b"SIP/2.0")
            statuses.append(int(code))
        verdict = _verdicts().get(name)
        if verdict in ("drop", "response"):
            self.assertEqual(statuses, [])
        elif verdict == "accept":
            self.assertNotIn(400, statuses)
        elif verdict == "reject":
            self.assertTrue(all(s >= 400 for s in statuses), statuses)
        if name == "dblreq.dat":
            self.assertEqual(len(statuses), 1)  # the trailing octets are noise
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(core.transactions.counts, (0, 0))
        self.assertEqual(core.stats["received"], 1)


def _torture_test(name: str) -> Any:
    def test(self: TortureTests) -> None:
        self.check(name)

    test.__doc__ = f"RFC 4475 {name} never raises and is answered only to its source."
    return test


def _torture_files() -> list[str]:
    directory = CONFORMANCE / "rfc4475"
    return sorted(p.name for p in directory.glob("*.dat"))


for _name in _torture_files():
    setattr(TortureTests, "test_" + _name.replace(".", "_"), _torture_test(_name))


class TortureCorpusTests(SynchronousTestCase):
    """The corpus the torture tests are made from is all there."""

    def test_every_message_has_a_test(self) -> None:
        """All 50 RFC 4475 messages are found, and each has a verdict or is test.dat."""
        names = _torture_files()
        self.assertEqual(len(names), 50, str(CONFORMANCE / "rfc4475"))
        self.assertEqual(set(names) - set(_verdicts()), {"test.dat"})


class AliasTests(_CoreTestCase):
    """RFC 5923 §5: a Via with alias on a connection offers it for requests to the Via's sent-by."""

    def connect(self, host: str = "192.0.2.7", port: int = 40001) -> tuple[Peer, StringTransport]:
        """A TCP connection from a phone, as a listener accepts it."""
        address = IPv4Address("TCP", host, port)
        protocol = SIPStreamFactory(self.core.transports, "tcp").buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, None)
        assert protocol.peer is not None
        return protocol.peer, transport

    def test_alias_offered(self) -> None:
        """A request whose Via has alias makes its sent-by address reach the connection."""
        peer, transport = self.connect()
        via = "SIP/2.0/TCP 192.0.2.7:5070;branch=z9hG4bK-a1;rport;alias"
        self.core.receive(request(via=via), peer, True)
        self.assertTrue(self.core.transports.connected(Peer("tcp", "192.0.2.7", 5070)))

    def test_no_alias(self) -> None:
        """Without alias, the sent-by address is not taken for the connection."""
        peer, transport = self.connect()
        via = "SIP/2.0/TCP 192.0.2.7:5070;branch=z9hG4bK-a2;rport"
        self.core.receive(request(via=via), peer, True)
        self.assertFalse(self.core.transports.connected(Peer("tcp", "192.0.2.7", 5070)))

    def test_alias_for_another_host_ignored(self) -> None:
        """An alias naming another host than the connection's is not believed (no mutual TLS, §6)."""
        peer, transport = self.connect()
        via = "SIP/2.0/TCP 192.0.2.99:5070;branch=z9hG4bK-a3;rport;alias"
        self.core.receive(request(via=via), peer, True)
        self.assertFalse(self.core.transports.connected(Peer("tcp", "192.0.2.99", 5070)))


class StatelessChallengeTests(_CoreTestCase):
    """RFC 3261 §8.2.7: challenges to unauthenticated requests keep no state."""

    def setUp(self) -> None:
        super().setUp()

        def challenge(transaction: ServerTransaction) -> None:
            transaction.respond_statelessly(make_response(transaction.request, 407, to_tag="t"))

        self.core.handlers["INVITE"] = challenge
        self.core.handlers["REGISTER"] = challenge

    def test_one_407_per_invite(self) -> None:
        """Each copy of an unauthenticated INVITE gets one 407 (the same bytes), no 100, and nothing is resent."""
        sent = [self.receive_raw(request("INVITE")) for _ in range(3)]
        self.assertEqual(sent[0], sent[1])
        self.assertEqual(sent[0], sent[2])
        self.assertEqual(parse_message(sent[0][0][0]).status, 407)  # type: ignore[union-attr]
        self.clock.advance(40)
        self.assertEqual(len(self.port.written), 3)
        self.assertEqual(self.core.transactions.counts, (0, 0))

    def test_ack_of_407_not_answered(self) -> None:
        """RFC 3261 §8.2.7: the ACK of a stateless 407 is ignored, not answered from the kept bytes."""
        self.receive_raw(request("INVITE"))
        self.assertEqual(self.receive_raw(request("ACK")), [])

    def test_register_not_kept(self) -> None:
        """A challenged REGISTER leaves no transaction behind, only its answer's bytes, for T4 (not Timer J)."""
        self.assertEqual([r.status for r, _ in self.receive(request("REGISTER"))], [407])
        self.assertEqual(self.core.transactions.counts, (1, 0))
        self.clock.advance(STATELESS_MEMORY)
        self.assertEqual(self.core.transactions.counts, (0, 0))

    def test_register_retransmission_same_bytes(self) -> None:
        """RFC 3261 §8.2.7: a retransmitted REGISTER gets the very same answer (To tag included), not a new one."""
        calls: list[ServerTransaction] = []
        challenge = self.core.handlers["REGISTER"]

        def counted(transaction: ServerTransaction) -> None:
            calls.append(transaction)
            challenge(transaction)

        self.core.handlers["REGISTER"] = counted
        first = self.receive_raw(request("REGISTER"))
        self.clock.advance(STATELESS_MEMORY - 0.5)
        again = self.receive_raw(request("REGISTER"))
        self.assertEqual((len(calls), again), (1, first))
        self.clock.advance(0.5)
        self.receive_raw(request("REGISTER"))
        self.assertEqual(len(calls), 2)

    def test_kept_answers_bounded(self) -> None:
        """Past MAX_KEPT entries a stateless answer is no longer kept: a retransmission is answered anew."""
        calls: list[ServerTransaction] = []
        challenge = self.core.handlers["REGISTER"]

        def counted(transaction: ServerTransaction) -> None:
            calls.append(transaction)
            challenge(transaction)

        self.core.handlers["REGISTER"] = counted
        self.patch(transaction_module, "MAX_KEPT", 0)
        first = self.receive_raw(request("REGISTER"))
        again = self.receive_raw(request("REGISTER"))
        self.assertEqual(len(calls), 2)
        self.assertTrue(first and again)

    def test_register_over_tcp_not_kept(self) -> None:
        """Over a stream nothing is retransmitted, so nothing of the answer is kept."""
        via = "SIP/2.0/TCP 192.0.2.5:5099;branch=z9hG4bK-t1"
        self.core.receive(request("REGISTER", via=via), Peer("tcp", "192.0.2.5", 5099), True)
        self.assertEqual(self.core.transactions.counts, (0, 0))

    def test_authenticated_invite_gets_100(self) -> None:
        """An INVITE with credentials still gets its 100 at once (the TU will take a while)."""
        pending: list[ServerTransaction] = []
        self.core.handlers["INVITE"] = pending.append
        credentials = 'Proxy-Authorization: Digest username="1002", realm="pbx.test"\r\n'
        self.assertEqual([r.status for r, _ in self.receive(request("INVITE", extra=credentials))], [100])
        pending[0].respond_statelessly(make_response(pending[0].request, 407, to_tag="t"))
        self.clock.advance(STATELESS_MEMORY)
        self.assertEqual(self.core.transactions.counts, (0, 0))


class SourceDefenceTests(_CoreTestCase):
    """The core screens messages with the source defence and reports offences."""

    def setUp(self) -> None:
        super().setUp()
        self.defence = SourceDefence(self.clock, {"OPTIONS": Limit(1, 2)})
        self.core.defence = self.defence

    def test_limited_before_parsing(self) -> None:
        """Requests over the source's rate are dropped unanswered, even garbage after the method."""
        sent = [self.receive_raw(request("OPTIONS", call_id=f"c{n}", via=f"SIP/2.0/UDP h;branch=z9hG4bK-{n}"))
                for n in range(3)]
        self.assertEqual([len(s) for s in sent], [1, 1, 0])
        self.assertEqual(self.receive_raw(b"OPTIONS \x00\xff garbage"), [])
        self.assertEqual(self.core.stats["limited"], 2)

    def test_scanner_banned(self) -> None:
        """A request with a scanner's User-Agent is dropped and bans its source."""
        self.assertEqual(self.receive_raw(request("INVITE", extra="User-Agent: friendly-scanner\r\n")), [])
        self.assertTrue(self.defence.banned(SOURCE[0]))
        self.assertEqual(self.receive_raw(request("OPTIONS")), [])

    def test_malformed_scored(self) -> None:
        """Malformed messages add to the source's score; fifty ban it and are then not answered."""
        answered = [self.receive_raw(request("INFO", max_forwards="bad", call_id=f"m{n}")) for n in range(50)]
        self.assertEqual([len(a) for a in answered], [1] * 49 + [0])
        self.assertTrue(self.defence.banned(SOURCE[0]))
