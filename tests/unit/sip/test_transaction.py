"""Tests for :mod:`pbx.sip.transaction` (RFC 3261 §17, RFC 6026)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.sip import timers
from pbx.sip.ids import MAGIC_COOKIE, new_branch
from pbx.sip.message import Request, Response, make_response, parse_message
from pbx.sip.transaction import (
    ClientTransaction,
    Peer,
    ServerTransaction,
    TransactionLayer,
    client_key,
    server_key,
)

UDP = Peer("udp", "198.51.100.1", 5060)
TCP = Peer("tcp", "198.51.100.1", 40312)

REQUEST = (
    "{method} sip:1001@pbx.test SIP/2.0\r\n"
    "Via: SIP/2.0/{transport} {sent_by}{branch}\r\n"
    "Max-Forwards: 70\r\n"
    "{route}"
    "From: <sip:caller@example.net>{from_tag}\r\n"
    "To: <sip:1001@pbx.test>{to_tag}\r\n"
    "Call-ID: {call_id}\r\n"
    "CSeq: {cseq} {method}\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


def request(
    method: str = "OPTIONS",
    *,
    branch: str | None = "z9hG4bK-t1",
    cseq: int = 1,
    call_id: str = "call-1@198.51.100.1",
    from_tag: str | None = "ft1",
    to_tag: str | None = None,
    sent_by: str = "198.51.100.1:5060",
    transport: str = "UDP",
    route: str = "",
) -> Request:
    """Parse a request from literal bytes, as if it came off the wire."""
    data = REQUEST.format(
        method=method,
        transport=transport,
        sent_by=sent_by,
        branch="" if branch is None else f";branch={branch}",
        route=f"Route: {route}\r\n" if route else "",
        from_tag="" if from_tag is None else f";tag={from_tag}",
        to_tag="" if to_tag is None else f";tag={to_tag}",
        call_id=call_id,
        cseq=cseq,
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def response(req: Request, status: int, to_tag: str | None = "uas-1") -> Response:
    """A response to ``req`` as it would come back over the network."""
    message = parse_message(make_response(req, status, to_tag=to_tag).to_bytes())
    assert isinstance(message, Response)
    return message


class RecordingUser:
    """A transaction user that records what the layer hands up."""

    def __init__(self) -> None:
        self.transactions: list[ServerTransaction] = []
        self.acks: list[tuple[Request, Peer]] = []

    def request_received(self, transaction: ServerTransaction) -> None:
        """Remember a new server transaction."""
        self.transactions.append(transaction)

    def ack_received(self, request: Request, peer: Peer) -> None:
        """Remember an ACK that matched no transaction."""
        self.acks.append((request, peer))


class _LayerTestCase(SynchronousTestCase):
    """A transaction layer on a fake clock, recording what it sends."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[tuple[float, Request | Response, Peer]] = []
        self.user = RecordingUser()
        self.layer = TransactionLayer(self.clock, self.send, self.user, send_bytes=self.send_bytes)
        self.responses: list[Response] = []

    def send(self, message: Request | Response, peer: Peer) -> None:
        """The layer's sender: record time, message and destination."""
        self.sent.append((self.clock.seconds(), message, peer))

    def tick(self, seconds: float, step: float = 0.25) -> None:
        """Advance the clock in small steps, so each timer fires at its own time."""
        while seconds >= step:
            self.clock.advance(step)
            seconds -= step
        self.clock.advance(seconds)

    def send_bytes(self, data: bytes, peer: Peer) -> None:
        """Record a resent serialised message (parsed back for the assertions)."""
        self.sent.append((self.clock.seconds(), parse_message(data), peer))

    def statuses(self) -> list[int]:
        """Status codes of the responses sent, in order."""
        return [m.status for _, m, _ in self.sent if isinstance(m, Response)]

    def times(self) -> list[float]:
        """When each message was sent."""
        return [t for t, _, _ in self.sent]

    def assert_finished(self) -> None:
        """No transaction and no timer is left."""
        self.assertEqual(self.layer.counts, (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def server(self, req: Request, peer: Peer = UDP) -> ServerTransaction:
        """Feed a new request to the layer and return its transaction."""
        before = len(self.user.transactions)
        self.layer.request_received(req, peer)
        self.assertEqual(len(self.user.transactions), before + 1)
        return self.user.transactions[-1]

    def client(self, req: Request, peer: Peer = UDP) -> ClientTransaction:
        """Start a client transaction whose responses go to ``self.responses``."""
        return self.layer.start_client(req, peer, self.responses.append)


class KeyTests(SynchronousTestCase):
    """How messages are matched to transactions."""

    def test_new_branch(self) -> None:
        """A fresh branch carries the RFC 3261 magic cookie and differs each time."""
        first, second = new_branch(), new_branch()
        self.assertTrue(first.startswith(MAGIC_COOKIE))
        self.assertNotEqual(first, second)

    def test_server_key_rfc3261(self) -> None:
        """With the magic cookie the key is branch, sent-by and method (§17.2.3)."""
        self.assertEqual(
            server_key(request(sent_by="Host.Example.COM:5060")),
            ("z9hG4bK-t1", "host.example.com:5060", "OPTIONS"),
        )

    def test_ack_keyed_as_invite(self) -> None:
        """An ACK has the key of the INVITE it acknowledges."""
        self.assertEqual(server_key(request("ACK")), server_key(request("INVITE")))

    def test_server_key_rfc2543(self) -> None:
        """Without the magic cookie the key falls back to the RFC 2543 fields."""
        key = server_key(request(branch="1234", cseq=7))
        self.assertEqual(key[0], "2543")
        self.assertIn("call-1@198.51.100.1", key)
        self.assertIn(7, key)
        self.assertNotEqual(key, server_key(request(branch="1234", cseq=8)))

    def test_client_key(self) -> None:
        """A client transaction is keyed by branch and CSeq method (§17.1.3)."""
        self.assertEqual(client_key(request("INVITE")), ("z9hG4bK-t1", "INVITE"))

    def test_peer(self) -> None:
        """Only UDP is unreliable, and an IPv6 peer prints with brackets."""
        self.assertFalse(UDP.reliable)
        self.assertTrue(TCP.reliable)
        self.assertTrue(Peer("tls", "::1", 5061).reliable)
        self.assertEqual(
            str(Peer("udp", "2001:db8::1", 5060)), "udp:[2001:db8::1]:5060"
        )
        self.assertEqual(str(UDP), "udp:198.51.100.1:5060")


class ServerNonInviteTests(_LayerTestCase):
    """The non-INVITE server transaction (RFC 3261 §17.2.2)."""

    def test_trying(self) -> None:
        """A new request starts in Trying, reaches the TU and sends nothing."""
        txn = self.server(request())
        self.assertEqual(txn.state, "trying")
        self.assertEqual(txn.peer, UDP)
        self.assertEqual(self.sent, [])
        self.assertEqual(self.layer.counts, (1, 0))

    def test_retransmission_in_trying_absorbed(self) -> None:
        """A retransmission in Trying gets no reply and does not reach the TU again."""
        self.server(request())
        self.layer.request_received(request(), UDP)
        self.assertEqual(len(self.user.transactions), 1)
        self.assertEqual(self.sent, [])

    def test_provisional_then_retransmission(self) -> None:
        """A provisional moves to Proceeding; a retransmission resends it."""
        txn = self.server(request())
        txn.respond(make_response(txn.request, 183))
        self.assertEqual(txn.state, "proceeding")
        self.layer.request_received(request(), UDP)
        self.assertEqual(self.statuses(), [183, 183])
        self.assertIs(self.sent[0][1], self.sent[1][1])
        self.assertEqual(self.sent[1][2], UDP)
        self.assertEqual(len(self.user.transactions), 1)

    def test_final_udp_timer_j(self) -> None:
        """A final response moves to Completed; Timer J ends it 32 s later over UDP."""
        txn = self.server(request())
        txn.respond(make_response(txn.request, 200, to_tag="x"))
        self.assertEqual(txn.state, "completed")
        self.clock.advance(timers.TIMER_J - 0.1)
        self.assertEqual(self.layer.counts, (1, 0))
        self.clock.advance(0.1)
        self.assertEqual(timers.TIMER_J, 32)
        self.assertEqual(self.layer.counts, (0, 0))
        self.assert_finished()

    def test_final_tcp_timer_j_zero(self) -> None:
        """Over a reliable transport Timer J is zero."""
        txn = self.server(request(transport="TCP"), TCP)
        txn.respond(make_response(txn.request, 404, to_tag="x"))
        self.assertEqual(txn.state, "terminated")
        self.assertEqual(self.layer.counts, (0, 0))
        self.assert_finished()

    def test_retransmission_in_completed_resends_final(self) -> None:
        """A retransmitted request in Completed gets the final response again."""
        txn = self.server(request())
        txn.respond(make_response(txn.request, 180))
        txn.respond(make_response(txn.request, 486, to_tag="x"))
        self.clock.advance(10)
        self.layer.request_received(request(), UDP)
        self.assertEqual(self.statuses(), [180, 486, 486])
        self.assertEqual(self.times(), [0, 0, 10])
        self.assertEqual(self.sent[2][1].to_bytes(), self.sent[1][1].to_bytes())
        self.assertEqual(len(self.user.transactions), 1)
        self.clock.advance(timers.TIMER_J)
        self.assert_finished()

    def test_respond_after_final_ignored(self) -> None:
        """Once Completed, further responses from the TU are not sent."""
        txn = self.server(request())
        txn.respond(make_response(txn.request, 200, to_tag="x"))
        txn.respond(make_response(txn.request, 500))
        txn.respond(make_response(txn.request, 180))
        self.assertEqual(self.statuses(), [200])
        self.assertEqual(txn.last_response.status if txn.last_response else 0, 200)
        self.clock.advance(timers.TIMER_J)
        self.assert_finished()

    def test_request_after_termination_is_new(self) -> None:
        """After Timer J the same request starts a new transaction."""
        txn = self.server(request())
        txn.respond(make_response(txn.request, 200, to_tag="x"))
        self.clock.advance(timers.TIMER_J)
        again = self.server(request())
        self.assertIsNot(again, txn)
        self.assertEqual(again.state, "trying")
        again.respond(make_response(again.request, 200, to_tag="x"))
        self.clock.advance(timers.TIMER_J)
        self.assert_finished()

    def test_same_branch_other_sent_by(self) -> None:
        """The same branch from another sent-by is another transaction (§17.2.3)."""
        self.server(request(sent_by="198.51.100.1:5060"))
        self.server(request(sent_by="198.51.100.2:5060"))
        self.assertEqual(self.layer.counts, (2, 0))


class ServerInviteTests(_LayerTestCase):
    """The INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1)."""

    def test_trying_sent_at_once(self) -> None:
        """A new INVITE is answered 100 Trying at once and starts in Proceeding."""
        txn = self.server(request("INVITE"))
        self.assertEqual(txn.state, "proceeding")
        self.assertTrue(txn.invite)
        self.assertEqual(self.statuses(), [100])
        self.assertEqual(self.times(), [0])
        self.assertEqual(self.sent[0][2], UDP)
        self.assertIsNone(self.sent[0][1].to.tag)

    def test_retransmission_in_proceeding(self) -> None:
        """A retransmitted INVITE in Proceeding resends the last provisional."""
        txn = self.server(request("INVITE"))
        self.layer.request_received(request("INVITE"), UDP)
        txn.respond(make_response(txn.request, 180, to_tag="x"))
        self.layer.request_received(request("INVITE"), UDP)
        self.assertEqual(self.statuses(), [100, 100, 180, 180])
        self.assertEqual(len(self.user.transactions), 1)

    def test_2xx_accepted_timer_l(self) -> None:
        """A 2xx moves to Accepted, which Timer L ends after 32 s (RFC 6026 §7.1)."""
        txn = self.server(request("INVITE"))
        txn.respond(make_response(txn.request, 200, to_tag="x"))
        self.assertEqual(txn.state, "accepted")
        self.clock.advance(timers.TIMER_L - 0.1)
        self.assertEqual(txn.state, "accepted")
        self.clock.advance(0.1)
        self.assertEqual(timers.TIMER_L, 32)
        self.assertEqual(txn.state, "terminated")
        self.assertEqual(self.statuses(), [100, 200])
        self.assert_finished()

    def test_accepted_absorbs_invite(self) -> None:
        """A retransmitted INVITE in Accepted is absorbed: no response, no new TU call."""
        txn = self.server(request("INVITE"))
        txn.respond(make_response(txn.request, 200, to_tag="x"))
        self.layer.request_received(request("INVITE"), UDP)
        self.assertEqual(self.statuses(), [100, 200])
        self.assertEqual(len(self.user.transactions), 1)
        self.clock.advance(timers.TIMER_L)
        self.assert_finished()

    def test_accepted_passes_2xx_retransmission(self) -> None:
        """A 2xx retransmitted by the TU in Accepted goes straight out (RFC 6026 §7.1)."""
        txn = self.server(request("INVITE"))
        ok = make_response(txn.request, 200, to_tag="x")
        txn.respond(ok)
        self.clock.advance(timers.T1)
        txn.respond(ok)
        self.assertEqual(self.statuses(), [100, 200, 200])
        self.assertEqual(txn.state, "accepted")
        txn.respond(make_response(txn.request, 486, to_tag="x"))
        self.assertEqual(self.statuses(), [100, 200, 200])
        self.clock.advance(timers.TIMER_L)
        self.assert_finished()

    def test_ack_in_accepted_goes_to_tu(self) -> None:
        """An ACK matching the transaction in Accepted is passed to the TU."""
        txn = self.server(request("INVITE"))
        txn.respond(make_response(txn.request, 200, to_tag="x"))
        self.layer.request_received(request("ACK", to_tag="x"), UDP)
        self.assertEqual(len(self.user.acks), 1)
        self.assertEqual(self.user.acks[0][0].method, "ACK")
        self.assertEqual(self.user.acks[0][1], UDP)
        self.assertEqual(txn.state, "accepted")
        self.clock.advance(timers.TIMER_L)
        self.assert_finished()

    def test_ack_with_new_branch_goes_to_tu(self) -> None:
        """The ACK of a 2xx in its own transaction (new branch) reaches the TU."""
        txn = self.server(request("INVITE"))
        txn.respond(make_response(txn.request, 200, to_tag="x"))
        self.layer.request_received(
            request("ACK", branch="z9hG4bK-ack2", to_tag="x"), UDP
        )
        self.assertEqual(
            [a.top_via.branch for a, _ in self.user.acks], ["z9hG4bK-ack2"]
        )
        self.assertEqual(self.layer.counts, (1, 0))
        self.clock.advance(timers.TIMER_L)
        self.assert_finished()

    def test_failure_timer_g_doubles_to_t2(self) -> None:
        """A 3xx-6xx is retransmitted by Timer G from T1, doubling, capped at T2, until Timer H."""
        txn = self.server(request("INVITE"))
        acked: list[bool] = []
        txn.on_ack_timeout = lambda: acked.append(True)
        txn.respond(make_response(txn.request, 486, to_tag="x"))
        self.assertEqual(txn.state, "completed")
        self.tick(timers.TIMER_H - 0.01)
        # Intervals 0.5, 1, 2, 4, 4, 4...: sent at 0.5, 1.5, 3.5, 7.5, 11.5...
        self.assertEqual(
            self.times(),
            [0, 0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5],
        )
        self.assertEqual(self.statuses(), [100] + [486] * 11)
        self.assertEqual(acked, [])
        self.clock.advance(0.01)
        self.assertEqual(timers.TIMER_H, 32)
        self.assertEqual(acked, [True])
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()

    def test_failure_over_tcp_no_timer_g(self) -> None:
        """Over a reliable transport the final response is not retransmitted; Timer H still runs."""
        txn = self.server(request("INVITE", transport="TCP"), TCP)
        acked: list[bool] = []
        txn.on_ack_timeout = lambda: acked.append(True)
        txn.respond(make_response(txn.request, 603, to_tag="x"))
        self.clock.advance(timers.TIMER_H - 0.01)
        self.assertEqual(self.statuses(), [100, 603])
        self.assertEqual(acked, [])
        self.clock.advance(0.01)
        self.assertEqual(acked, [True])
        self.assert_finished()

    def test_timer_h_without_callback(self) -> None:
        """Timer H ends the transaction even when no one asked to hear of it."""
        txn = self.server(request("INVITE"))
        txn.respond(make_response(txn.request, 302, to_tag="x"))
        self.clock.advance(timers.TIMER_H)
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()

    def test_retransmission_in_completed(self) -> None:
        """A retransmitted INVITE in Completed gets the final response again."""
        txn = self.server(request("INVITE"))
        txn.respond(make_response(txn.request, 404, to_tag="x"))
        self.clock.advance(0.2)
        self.layer.request_received(request("INVITE"), UDP)
        self.assertEqual(self.statuses(), [100, 404, 404])
        self.assertEqual(self.times(), [0, 0, 0.2])
        self.assertEqual(len(self.user.transactions), 1)
        self.clock.advance(timers.TIMER_H)
        self.assert_finished()

    def test_ack_confirms_then_timer_i(self) -> None:
        """The ACK of a failure stops G and H, moves to Confirmed, and Timer I ends it."""
        txn = self.server(request("INVITE"))
        acked: list[bool] = []
        txn.on_ack_timeout = lambda: acked.append(True)
        txn.respond(make_response(txn.request, 486, to_tag="x"))
        self.clock.advance(0.6)  # one Timer G retransmission
        self.layer.request_received(request("ACK", to_tag="x"), UDP)
        self.assertEqual(txn.state, "confirmed")
        self.assertEqual(self.user.acks, [])
        # ACK and INVITE retransmissions are absorbed in Confirmed.
        self.layer.request_received(request("ACK", to_tag="x"), UDP)
        self.layer.request_received(request("INVITE"), UDP)
        self.clock.advance(timers.TIMER_I - 0.01)
        self.assertEqual(self.statuses(), [100, 486, 486])
        self.assertEqual(txn.state, "confirmed")
        self.clock.advance(0.01)
        self.assertEqual(timers.TIMER_I, 5)
        self.assertEqual(txn.state, "terminated")
        self.assertEqual(acked, [])
        self.assertEqual(self.user.acks, [])
        self.assert_finished()

    def test_ack_over_tcp_timer_i_zero(self) -> None:
        """Over a reliable transport Timer I is zero."""
        txn = self.server(request("INVITE", transport="TCP"), TCP)
        txn.respond(make_response(txn.request, 480, to_tag="x"))
        self.layer.request_received(request("ACK", transport="TCP", to_tag="x"), TCP)
        self.assertEqual(txn.state, "confirmed")
        self.clock.advance(0)
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()

    def test_stray_ack(self) -> None:
        """An ACK matching no transaction goes to the TU and creates none."""
        self.layer.request_received(request("ACK", to_tag="x"), UDP)
        self.assertEqual(len(self.user.acks), 1)
        self.assertEqual(self.user.transactions, [])
        self.assert_finished()


class ClientNonInviteTests(_LayerTestCase):
    """The non-INVITE client transaction (RFC 3261 §17.1.2)."""

    def test_transport_error(self) -> None:
        """A request that cannot be sent ends its transaction with a 503 on the next turn of the clock (§8.1.3.1)."""
        for method in ("BYE", "INVITE"):
            self.layer.send = lambda message, peer: False
            txn = self.client(request(method, transport="TCP"), TCP)
            self.assertEqual(self.responses, [])
            self.clock.advance(0)
            self.assertEqual([(r.status, r.cseq.method) for r in self.responses], [(503, method)])
            self.assertEqual(txn.state, "terminated")
            self.responses.clear()
        self.assert_finished()

    def test_unreachable(self) -> None:
        """When no connection to the peer could be opened, its client transactions end with 503; others go on."""
        first = self.client(request("BYE", transport="TCP"), TCP)
        other = self.client(request("BYE", branch="z9hG4bK-t2", transport="TCP"), Peer("tcp", "198.51.100.2", 5060))
        self.layer.unreachable(Peer("tcp", TCP.host, TCP.port))
        self.clock.advance(0)
        self.assertEqual([r.status for r in self.responses], [503])
        self.assertEqual((first.state, other.state), ("terminated", "trying"))
        self.clock.advance(timers.TIMER_F)
        self.assertEqual([r.status for r in self.responses], [503, 408])
        self.assert_finished()

    def test_timer_e_and_f(self) -> None:
        """Timer E retransmits after 0.5, 1, 2, 4, 4... s; Timer F gives a 408 at 32 s."""
        txn = self.client(request())
        self.assertEqual(txn.state, "trying")
        self.assertEqual(self.layer.counts, (0, 1))
        self.tick(timers.TIMER_F - 0.01)
        self.assertEqual(
            self.times(),
            [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5],
        )
        self.assertTrue(all(m is txn.request for _, m, _ in self.sent))
        self.assertEqual(self.responses, [])
        self.clock.advance(0.01)
        self.assertEqual(timers.TIMER_F, 32)
        self.assertEqual([r.status for r in self.responses], [408])
        self.assertEqual(self.responses[0].call_id, txn.request.call_id)
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()

    def test_tcp_no_retransmission(self) -> None:
        """Over a reliable transport the request is sent once; Timer F still runs."""
        self.client(request(transport="TCP"), TCP)
        self.clock.advance(timers.TIMER_F)
        self.assertEqual(self.times(), [0])
        self.assertEqual([r.status for r in self.responses], [408])
        self.assert_finished()

    def test_proceeding_retransmits_every_t2(self) -> None:
        """After a provisional the request is retransmitted every T2 until Timer F."""
        txn = self.client(request())
        self.tick(0.25)
        txn_response = response(txn.request, 100, to_tag=None)
        self.layer.response_received(txn_response, UDP)
        self.assertEqual(txn.state, "proceeding")
        self.assertEqual(self.responses, [txn_response])
        self.tick(timers.TIMER_F - 0.25 - 0.01)
        # Timer E already set for 0.5 fires, then every T2.
        self.assertEqual(self.times(), [0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5])
        self.clock.advance(0.01)
        self.assertEqual([r.status for r in self.responses], [100, 408])
        self.assert_finished()

    def test_final_then_timer_k(self) -> None:
        """A final response goes to the TU once; retransmissions are absorbed; Timer K ends it."""
        txn = self.client(request())
        self.tick(0.75)
        ok = response(txn.request, 200)
        self.layer.response_received(ok, UDP)
        self.assertEqual(txn.state, "completed")
        self.layer.response_received(response(txn.request, 200), UDP)
        self.assertEqual(self.responses, [ok])
        self.clock.advance(timers.TIMER_K - 0.01)
        self.assertEqual(self.times(), [0, 0.5])
        self.assertEqual(txn.state, "completed")
        self.clock.advance(0.01)
        self.assertEqual(timers.TIMER_K, 5)
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()

    def test_final_in_proceeding(self) -> None:
        """A final response in Proceeding completes the transaction too."""
        txn = self.client(request())
        self.layer.response_received(response(txn.request, 180), UDP)
        self.layer.response_received(response(txn.request, 404), UDP)
        self.assertEqual([r.status for r in self.responses], [180, 404])
        self.assertEqual(txn.state, "completed")
        self.clock.advance(timers.TIMER_K)
        self.assert_finished()

    def test_tcp_timer_k_zero(self) -> None:
        """Over a reliable transport Timer K is zero."""
        txn = self.client(request(transport="TCP"), TCP)
        self.layer.response_received(response(txn.request, 200), TCP)
        self.clock.advance(0)
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()


class ClientInviteTests(_LayerTestCase):
    """The INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2)."""

    def test_timer_a_and_b(self) -> None:
        """Timer A doubles from T1 without a cap; Timer B gives a 408 at 32 s."""
        txn = self.client(request("INVITE"))
        self.assertEqual(txn.state, "calling")
        self.tick(timers.TIMER_B - 0.01)
        self.assertEqual(self.times(), [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
        self.assertEqual(self.responses, [])
        self.clock.advance(0.01)
        self.assertEqual(timers.TIMER_B, 32)
        self.assertEqual([r.status for r in self.responses], [408])
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()

    def test_tcp_no_timer_a(self) -> None:
        """Over a reliable transport the INVITE is sent once; Timer B still runs."""
        self.client(request("INVITE", transport="TCP"), TCP)
        self.clock.advance(timers.TIMER_B)
        self.assertEqual(self.times(), [0])
        self.assertEqual([r.status for r in self.responses], [408])
        self.assert_finished()

    def test_provisional_stops_a_and_b(self) -> None:
        """A 1xx moves to Proceeding and stops both Timer A and Timer B."""
        txn = self.client(request("INVITE"))
        self.tick(0.75)
        self.layer.response_received(response(txn.request, 180), UDP)
        self.assertEqual(txn.state, "proceeding")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertEqual(self.times(), [0, 0.5])
        self.assertEqual([r.status for r in self.responses], [180])
        self.assertEqual(self.layer.counts, (0, 1))

    def test_failure_sends_ack(self) -> None:
        """A 3xx-6xx is acknowledged per §17.1.1.3: same branch, URI, Route, the response's To tag."""
        req = request("INVITE", cseq=5, route="<sip:proxy.example.net;lr>")
        txn = self.client(req)
        busy = response(req, 486, to_tag="callee-7")
        self.layer.response_received(busy, UDP)
        self.assertEqual(txn.state, "completed")
        self.assertEqual(self.responses, [busy])
        ack = self.sent[-1][1]
        self.assertIsInstance(ack, Request)
        assert isinstance(ack, Request)
        self.assertEqual(self.sent[-1][2], UDP)
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(str(ack.uri), str(req.uri))
        self.assertEqual(len(ack.vias), 1)
        self.assertEqual(ack.top_via, req.top_via)
        self.assertEqual(ack.top_via.branch, "z9hG4bK-t1")
        self.assertEqual(ack.to.tag, "callee-7")
        self.assertEqual(ack.from_.tag, "ft1")
        self.assertEqual(ack.call_id, req.call_id)
        self.assertEqual((ack.cseq.number, ack.cseq.method), (5, "ACK"))
        self.assertEqual(ack.headers.get_all("Route"), ["<sip:proxy.example.net;lr>"])
        # The ACK parses back as a well-formed request.
        self.assertIsInstance(parse_message(ack.to_bytes()), Request)
        self.clock.advance(timers.TIMER_D)
        self.assert_finished()

    def test_retransmitted_failure_resends_ack(self) -> None:
        """A retransmitted final response resends the ACK and is not passed up again."""
        txn = self.client(request("INVITE"))
        self.layer.response_received(response(txn.request, 603), UDP)
        self.clock.advance(1)
        self.layer.response_received(response(txn.request, 603), UDP)
        acks = [
            (t, m)
            for t, m, _ in self.sent
            if isinstance(m, Request) and m.method == "ACK"
        ]
        self.assertEqual([t for t, _ in acks], [0, 1])
        self.assertIs(acks[0][1], acks[1][1])
        self.assertEqual([r.status for r in self.responses], [603])
        self.clock.advance(timers.TIMER_D)
        self.assert_finished()

    def test_timer_d(self) -> None:
        """Timer D keeps the Completed state 32 s over UDP, with no INVITE retransmission."""
        txn = self.client(request("INVITE"))
        self.layer.response_received(response(txn.request, 500), UDP)
        self.clock.advance(timers.TIMER_D - 0.01)
        self.assertEqual(txn.state, "completed")
        self.assertEqual([m.method for _, m, _ in self.sent], ["INVITE", "ACK"])  # type: ignore[union-attr]
        self.clock.advance(0.01)
        self.assertEqual(timers.TIMER_D, 32)
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()

    def test_timer_d_tcp_zero(self) -> None:
        """Over a reliable transport Timer D is zero."""
        txn = self.client(request("INVITE", transport="TCP"), TCP)
        self.layer.response_received(response(txn.request, 404), TCP)
        self.clock.advance(0)
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()

    def test_failure_after_provisional(self) -> None:
        """A failure in Proceeding is acknowledged too."""
        txn = self.client(request("INVITE"))
        self.layer.response_received(response(txn.request, 183), UDP)
        self.layer.response_received(response(txn.request, 487), UDP)
        self.assertEqual([r.status for r in self.responses], [183, 487])
        self.assertEqual(self.sent[-1][1].method, "ACK")  # type: ignore[union-attr]
        self.clock.advance(timers.TIMER_D)
        self.assert_finished()

    def test_2xx_accepted_timer_m(self) -> None:
        """A 2xx moves to Accepted; 2xx retransmissions go up, no ACK is sent; Timer M ends it."""
        txn = self.client(request("INVITE"))
        self.layer.response_received(response(txn.request, 200), UDP)
        self.assertEqual(txn.state, "accepted")
        self.clock.advance(timers.TIMER_M - 0.01)
        self.layer.response_received(response(txn.request, 200), UDP)
        self.assertEqual([r.status for r in self.responses], [200, 200])
        self.assertEqual([m.method for _, m, _ in self.sent], ["INVITE"])  # type: ignore[union-attr]
        self.clock.advance(0.01)
        self.assertEqual(timers.TIMER_M, 32)
        self.assertEqual(txn.state, "terminated")
        self.assert_finished()
        # After Timer M, a late 2xx matches nothing and is dropped.
        self.layer.response_received(response(txn.request, 200), UDP)
        self.assertEqual(len(self.responses), 2)

    def test_accepted_ignores_failure(self) -> None:
        """In Accepted a non-2xx response is not passed up."""
        txn = self.client(request("INVITE"))
        self.layer.response_received(response(txn.request, 200), UDP)
        self.layer.response_received(response(txn.request, 500), UDP)
        self.assertEqual([r.status for r in self.responses], [200])
        self.clock.advance(timers.TIMER_M)
        self.assert_finished()

    def test_cancel_timers(self) -> None:
        """cancel_timers stops every timer of a client transaction."""
        txn = self.client(request("INVITE"))
        txn.cancel_timers()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(64)
        self.assertEqual(self.times(), [0])


class MatchingTests(_LayerTestCase):
    """Matching of requests and responses across transactions."""

    def test_stray_response_dropped(self) -> None:
        """A response matching no client transaction is dropped."""
        txn = self.client(request("INVITE"))
        other = response(request("INVITE", branch="z9hG4bK-other"), 200)
        self.layer.response_received(other, UDP)
        self.assertEqual(self.responses, [])
        self.assertEqual(txn.state, "calling")
        txn.cancel_timers()

    def test_response_needs_same_method(self) -> None:
        """A response with the right branch but another CSeq method is not the INVITE's."""
        txn = self.client(request("INVITE"))
        self.layer.response_received(response(request("CANCEL"), 200), UDP)
        self.assertEqual(self.responses, [])
        self.assertEqual(txn.state, "calling")
        txn.cancel_timers()

    def test_invite_and_cancel_client_transactions(self) -> None:
        """An INVITE and its CANCEL share a branch but are separate client transactions."""
        invite = self.client(request("INVITE"))
        cancel = self.client(request("CANCEL"))
        self.assertEqual(self.layer.counts, (0, 2))
        self.layer.response_received(response(request("CANCEL"), 200), UDP)
        self.assertEqual(cancel.state, "completed")
        self.assertEqual(invite.state, "calling")
        self.layer.response_received(response(request("INVITE"), 487), UDP)
        self.assertEqual(invite.state, "completed")
        self.clock.advance(timers.TIMER_D)
        self.assert_finished()

    def test_rfc2543_retransmission(self) -> None:
        """Without the magic cookie a retransmission still matches (RFC 2543 fallback)."""
        txn = self.server(request("INVITE", branch=None, from_tag=None))
        self.layer.request_received(request("INVITE", branch=None, from_tag=None), UDP)
        self.assertEqual(len(self.user.transactions), 1)
        self.assertEqual(self.statuses(), [100, 100])
        txn.respond(make_response(txn.request, 486, to_tag="x"))
        self.layer.request_received(
            request("ACK", branch=None, from_tag=None, to_tag="x"), UDP
        )
        self.assertEqual(txn.state, "confirmed")
        self.assertEqual(self.user.acks, [])
        self.clock.advance(timers.TIMER_I)
        self.assert_finished()

    def test_rfc2543_branch_without_cookie(self) -> None:
        """A branch without the cookie is matched on the RFC 2543 fields, not the branch."""
        self.server(request(branch="1", cseq=1))
        self.server(request(branch="1", cseq=2))
        self.server(request(branch="1", cseq=2, call_id="call-2@198.51.100.1"))
        self.assertEqual(self.layer.counts, (3, 0))
        self.layer.request_received(request(branch="1", cseq=2), UDP)
        self.assertEqual(len(self.user.transactions), 3)

    def test_cancel_finds_invite(self) -> None:
        """A CANCEL finds its INVITE by branch; it is a transaction of its own."""
        invite = self.server(request("INVITE"))
        cancel = request("CANCEL")
        self.assertIs(self.layer.find_invite(cancel), invite)
        cancel_txn = self.server(cancel)
        self.assertIsNot(cancel_txn, invite)
        self.assertEqual(self.layer.counts, (2, 0))
        self.assertIsNone(
            self.layer.find_invite(request("CANCEL", branch="z9hG4bK-nope"))
        )

    def test_cancel_finds_rfc2543_invite(self) -> None:
        """A CANCEL without the cookie finds its INVITE by the RFC 2543 fields."""
        invite = self.server(request("INVITE", branch=None, cseq=3))
        self.assertIs(
            self.layer.find_invite(request("CANCEL", branch=None, cseq=3)), invite
        )
        self.assertIsNone(
            self.layer.find_invite(request("CANCEL", branch=None, cseq=4))
        )

    def test_cancel_after_invite_ends(self) -> None:
        """Once the INVITE transaction is over, its CANCEL finds nothing."""
        invite = self.server(request("INVITE"))
        invite.respond(make_response(invite.request, 200, to_tag="x"))
        self.clock.advance(timers.TIMER_L)
        self.assertIsNone(self.layer.find_invite(request("CANCEL")))
        self.assert_finished()

    def test_counts_back_to_zero(self) -> None:
        """Server and client transactions of every kind all end, leaving nothing."""
        options = self.server(request())
        invite = self.server(request("INVITE", branch="z9hG4bK-i"))
        failed = self.server(request("INVITE", branch="z9hG4bK-f"))
        self.client(request("INVITE", branch="z9hG4bK-c1"))
        ok_client = self.client(request("OPTIONS", branch="z9hG4bK-c2"))
        self.assertEqual(self.layer.counts, (3, 2))
        options.respond(make_response(options.request, 200, to_tag="x"))
        invite.respond(make_response(invite.request, 200, to_tag="x"))
        failed.respond(make_response(failed.request, 500, to_tag="x"))
        self.layer.response_received(response(ok_client.request, 200), UDP)
        self.clock.advance(64)
        self.assert_finished()


class CancelledInviteTests(SynchronousTestCase):
    """RFC 3261 §9.1: a cancelled INVITE that never gets a final response ends after 64*T1."""

    def test_cancel_sent_ends_transaction(self) -> None:
        """After cancel_sent() in Proceeding, the transaction ends with a 408 after 32 s."""
        from pbx.sip.message import parse_message
        from pbx.sip.transaction import Peer, TransactionLayer

        clock = Clock()
        sent: list[object] = []
        got: list[int] = []

        class TU:
            def request_received(self, transaction: object) -> None:
                pass

            def ack_received(self, request: object, peer: object) -> None:
                pass

        layer = TransactionLayer(clock, lambda m, p: sent.append(m), TU())
        invite = parse_message(
            b"INVITE sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKc1\r\n"
            b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: c1\r\n"
            b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        txn = layer.start_client(invite, Peer("tcp", "127.0.0.1", 5070), lambda r: got.append(r.status))
        ringing = parse_message(
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKc1\r\n"
            b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: c1\r\n"
            b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        layer.response_received(ringing, Peer("tcp", "127.0.0.1", 5070))
        self.assertEqual(clock.getDelayedCalls(), [])
        txn.cancel_sent()
        clock.advance(32)
        self.assertEqual(got, [180, 408])
        self.assertEqual(layer.counts, (0, 0))
        self.assertEqual(clock.getDelayedCalls(), [])
