"""Which trunks a number goes out through, which trunk a request comes from, and what the INVITE carries."""

from __future__ import annotations

import random
from collections import Counter

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import DNSLookupError
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.dialplan import ToTrunks
from pbx.calls.signalling import LegServices, Location, SIPSender
from pbx.config import parse_config
from pbx.errors import StartupError
from pbx.sip.core import SIPCore
from pbx.sip.dialog import LocalAddress
from pbx.sip.dialogs import DialogTable
from pbx.sip.message import Headers, Request
from pbx.sip.transaction import Peer
from pbx.sip.uri import parse_uri
from pbx.testing import FakeUDPReactor
from pbx.trunks.call import multipart, only_codecs
from pbx.trunks.registry import Trunks
from pbx.trunks.routes import fails_over, plan
from pbx.trunks.tls import carrier_tls

CONFIG = """
trunks:
  a: {uri: "sip:192.0.2.50", caller_id: "+15550000001", weight: 3}
  b: {uri: "sip:192.0.2.51", caller_id: "+15550000002", weight: 1}
  c: {uri: "sip:192.0.2.52", caller_id: "+15550000003"}
  reg: {uri: "sip:198.51.100.9:5070", username: acct-9, password: pw, register: true,
        dids: {"+15551230000": {extension: "1001"}}}
rates:
  a: {"1": 0.02, "1555": 0.05}
  b: {"1": 0.03}
"""


def trunks(text: str = CONFIG) -> Trunks:
    """The running trunks of ``text`` (nothing started)."""
    clock = FakeUDPReactor()
    address = LocalAddress("udp", "192.0.2.1", 5060)
    services = LegServices(SIPSender(SIPCore(clock)), Location(lambda n: [], lambda t: address), clock,
                           DialogTable(), "pbx.test")
    return Trunks(parse_config(text).trunks, services, lambda t: address)


def invite(uri: str, to: str) -> Request:
    """An INVITE to ``uri`` with To ``to``."""
    headers = Headers([("To", f"<{to}>"), ("From", "<sip:x@192.0.2.99>;tag=1"), ("Call-ID", "c"),
                       ("CSeq", "1 INVITE"), ("Via", "SIP/2.0/UDP 192.0.2.99;branch=z9hG4bK1")])
    return Request("INVITE", parse_uri(uri), headers)


class PlanTests(SynchronousTestCase):
    """Least-cost order, weighted sharing, caller ID and failover statuses."""

    def test_cheapest_first_unpriced_last(self) -> None:
        """Priced trunks by price (longest prefix per trunk), unpriced ones after them in route order."""
        running = trunks()
        route = ToTrunks(("c", "a", "b"), 1, "+1")
        self.assertEqual([(a.trunk.name, a.price) for a in plan(route, "95552345678", running.trunks, running.rates)],
                         [("b", 0.03), ("a", 0.05), ("c", None)])
        self.assertEqual([a.trunk.name for a in plan(route, "94152345678", running.trunks, running.rates)],
                         ["a", "b", "c"])

    def test_without_rates_route_order(self) -> None:
        """With no prices the route's order holds, and the number sent is strip + prepend."""
        running = trunks()
        [first, second] = plan(ToTrunks(("c", "b"), 2, "+44"), "00207946", running.trunks, running.rates)
        self.assertEqual((first.trunk.name, second.trunk.name, first.sent, first.dialled),
                         ("c", "b", "+44207946", "00207946"))

    def test_caller_id(self) -> None:
        """The extension's E.164 caller_id first, else the route's, else each trunk's own."""
        running = trunks()
        route = ToTrunks(("a", "c"), 0, "")
        self.assertEqual([a.caller_id for a in plan(route, "+15552345678", running.trunks, running.rates)],
                         ["+15550000001", "+15550000003"])
        routed = ToTrunks(("a", "c"), 0, "", caller_id="+15557770000")
        self.assertEqual({a.caller_id for a in plan(routed, "+1555", running.trunks, running.rates)},
                         {"+15557770000"})
        self.assertEqual({a.caller_id for a in plan(routed, "+1555", running.trunks, running.rates,
                                                    extension_caller_id="+15558880000")}, {"+15558880000"})
        self.assertEqual({a.caller_id for a in plan(routed, "+1555", running.trunks, running.rates,
                                                    extension_caller_id="Alice")}, {"+15557770000"})

    def test_weighted_sharing(self) -> None:
        """Equally priced trunks are shared by weight: 3:1 first places over many calls."""
        running = trunks("trunks: {a: {uri: 'sip:h1', weight: 3}, b: {uri: 'sip:h2', weight: 1}}")
        route = ToTrunks(("a", "b"), 0, "", weighted=True)
        rng = random.Random(7)
        firsts = Counter(plan(route, "123", running.trunks, running.rates, rng=rng)[0].trunk.name
                         for _ in range(4000))
        self.assertLess(abs(firsts["a"] / 4000 - 0.75), 0.03, firsts)

    def test_cost(self) -> None:
        """Cost is the price per minute times the talk time."""
        running = trunks()
        [b, *_] = plan(ToTrunks(("a", "b"), 0, ""), "+15552345678", running.trunks, running.rates)
        self.assertEqual((b.cost(90.0), b.cost(0.0)), (0.045, 0.0))

    def test_fails_over(self) -> None:
        """408, 5xx and a challenge the trunk could not answer fail over; the callee's answers do not."""
        self.assertEqual([s for s in (401, 403, 404, 407, 408, 480, 486, 500, 502, 503, 504, 603) if fails_over(s)],
                         [401, 407, 408, 500, 502, 503, 504])


class IdentifyTests(SynchronousTestCase):
    """Which trunk an INVITE comes from."""

    def test_registration_trunk(self) -> None:
        """From the carrier's address; from its host to our account or to a DID; not from another host."""
        running = trunks()
        reg = running.get("reg")
        to_account = invite("sip:acct-9@192.0.2.1", "sip:+15551230000@192.0.2.1")
        self.assertIs(running.identify(to_account, Peer("udp", "198.51.100.9", 5070)), reg)
        self.assertIs(running.identify(to_account, Peer("udp", "198.51.100.9", 40000)), reg)
        to_did = invite("sip:15551230000@192.0.2.1", "sip:15551230000@192.0.2.1")
        self.assertIs(running.identify(to_did, Peer("udp", "198.51.100.9", 40000)), reg)
        self.assertEqual(running.did(reg, to_did)[0], "+15551230000")
        other = invite("sip:1002@192.0.2.1", "sip:1002@192.0.2.1")
        self.assertIsNone(running.identify(other, Peer("udp", "198.51.100.9", 40000)))
        self.assertIsNone(running.identify(to_account, Peer("udp", "203.0.113.5", 5070)))


class InviteBodyTests(SynchronousTestCase):
    """The codecs offered to a trunk, and hook parts beside the SDP."""

    SDP = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
           b"m=audio 4000 RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
           b"a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")

    def test_only_codecs(self) -> None:
        """Only the trunk's codecs and telephone-event stay; none in common leaves the offer as it was."""
        out = only_codecs(self.SDP, ("PCMA",))
        self.assertIn(b"m=audio 4000 RTP/AVP 8 101\r\n", out)
        self.assertNotIn(b"PCMU", out)
        self.assertNotIn(b"G722", out)
        self.assertIn(b"telephone-event", out)
        self.assertEqual(only_codecs(self.SDP, ("OPUS",)), self.SDP)
        self.assertEqual(only_codecs(self.SDP, ()), self.SDP)

    def test_multipart(self) -> None:
        """Parts go beside the SDP in multipart/mixed with a boundary; none leaves the SDP alone."""
        self.assertEqual(multipart(self.SDP, ()), (self.SDP, "application/sdp"))
        body, kind = multipart(self.SDP, (("application/pidf+xml", b"<presence/>"),))
        boundary = kind.split("boundary=")[1]
        parts = body.split(b"--" + boundary.encode())
        self.assertEqual(parts[-1], b"--\r\n")
        self.assertEqual([p.split(b"\r\n")[1] for p in parts[1:-1]],
                         [b"Content-Type: application/sdp", b"Content-Type: application/pidf+xml"])


class CarrierTLSTests(SynchronousTestCase):
    """TLS trunks verify the carrier unless told not to."""

    def test_verified_hops(self) -> None:
        """A TLS trunk gets a verifying creator for its next hop; verify: false and UDP trunks get none."""
        config = parse_config(
            "trunks:\n  s: {uri: 'sips:carrier.example'}\n  n: {uri: 'sip:192.0.2.7;transport=tls', verify: false}\n"
            "  u: {uri: 'sip:192.0.2.8'}\n")
        self.assertEqual(set(carrier_tls(config.trunks)), {("carrier.example", 5061)})

    def test_one_hop_checked_one_way(self) -> None:
        """Two trunks to one next hop over TLS must check it alike: they share one connection."""
        config = parse_config("trunks: {a: {uri: 'sips:carrier.example'}, b: {uri: 'sips:carrier.example', "
                              "verify: false}}")
        error = self.assertRaises(StartupError, carrier_tls, config.trunks)
        self.assertIn("trunks.b: TLS to carrier.example:5061 is checked otherwise by trunks.a", str(error))
        same = parse_config("trunks: {a: {uri: 'sips:carrier.example'}, b: {uri: 'sips:carrier.example'}}")
        self.assertEqual(list(carrier_tls(same.trunks)), [("carrier.example", 5061)])

    def test_bad_ca(self) -> None:
        """A ca: that cannot be read stops startup naming the trunk."""
        config = parse_config("trunks: {s: {uri: 'sips:carrier.example', ca: /nonexistent.pem}}")
        error = self.assertRaises(StartupError, carrier_tls, config.trunks)
        self.assertIn("trunks.s.ca", str(error))


class ResolveTests(SynchronousTestCase):
    """A carrier named by a host name."""

    def test_resolved_then_registered(self) -> None:
        """The name resolves; REGISTER goes to the address, which gets the name's TLS creator; down until then."""
        running = trunks("trunks: {c: {uri: 'sip:sip.carrier.example', username: a, password: p, register: true}}")
        trunk = running.get("c")
        asked: list[str] = []
        answer: Deferred[str] = Deferred()

        def resolve(name: str) -> Deferred[str]:
            asked.append(name)
            return answer

        tls = {("sip.carrier.example", 5060): "creator"}
        sent: list[Peer] = []
        self.patch(trunk.registration, "_send_request", lambda request, peer, on: sent.append(peer))
        trunk.start(resolve, tls)
        self.assertEqual((asked, sent, trunk.up), (["sip.carrier.example"], [], False))
        answer.callback("203.0.113.9")
        self.assertEqual(sent, [Peer("udp", "203.0.113.9", 5060)])
        self.assertEqual(trunk.services.location.peer_for(trunk.binding("+1")), Peer("udp", "203.0.113.9", 5060))
        self.assertEqual(tls[("203.0.113.9", 5060)], "creator")
        self.assertTrue(trunk.up)

    def test_unresolved_retries(self) -> None:
        """A name that does not resolve is tried again after 30 s; stopping cancels that."""
        running = trunks("trunks: {c: {uri: 'sip:nowhere.example'}}")
        trunk = running.get("c")
        tries: list[str] = []

        def resolve(name: str) -> Deferred[str]:
            tries.append(name)
            return fail(DNSLookupError(name))

        clock = trunk.services.clock
        trunk.start(resolve, None)
        clock.advance(29)
        self.assertEqual(len(tries), 1)
        clock.advance(1)
        self.assertEqual(len(tries), 2)
        trunk.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
