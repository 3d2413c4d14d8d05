"""
Tests for the legs' state machines on their own: :class:`InboundLeg` (pbx
as UAS of the caller's INVITE) and :class:`Fork` (pbx as UAC to one phone),
with a recording SIP sender and a task.Clock.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.forks import Fork
from pbx.calls.inbound import InboundLeg
from pbx.calls.signalling import LegServices, Location
from pbx.records import Binding
from pbx.sip import timers
from pbx.sip.dialog import LocalAddress
from pbx.sip.dialogs import DialogTable
from pbx.sip.message import Request, Response, parse_message
from pbx.sip.transaction import Peer

INVITE = (
    b"INVITE sip:1002@pbx.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.11:5060;branch=z9hG4bK-leg-1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1001@pbx.test>;tag=caller\r\n"
    b"To: <sip:1002@pbx.test>\r\n"
    b"Call-ID: legs-1@192.0.2.11\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:1001@192.0.2.11:5060>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
PHONE = Peer("udp", "192.0.2.11", 5060)
US = LocalAddress("udp", "127.0.0.1", 5060)


@define
class RecordingSender:
    """A SIP sender that keeps what it is asked to send."""

    sent: list[Request | Response] = field(factory=list)
    requests: list[Request] = field(factory=list)

    def send(self, message: Request | Response, peer: Peer) -> None:
        """Keep a message sent outside transactions."""
        self.sent.append(message)

    def request(self, request: Request, peer: Peer, on_response: Any) -> Any:
        """Keep a request sent in a new client transaction."""
        self.requests.append(request)
        return None

    def in_dialog(self, dialog: Any, method: str, on_response: Any = None) -> None:
        """Keep an in-dialog request."""
        self.requests.append(dialog.request(method))


@define
class FakeInvite:
    """An INVITE server transaction that keeps its responses."""

    request: Request
    peer: Peer = PHONE
    responses: list[Response] = field(factory=list)

    def respond(self, response: Response) -> None:
        """Keep the response."""
        self.responses.append(response)


class InboundLegTests(SynchronousTestCase):
    """The caller's leg."""

    def setUp(self) -> None:
        """A leg for one INVITE, with a clock, a recording sender and a dialog table."""
        self.clock = Clock()
        self.sender = RecordingSender()
        self.dialogs: DialogTable[Any] = DialogTable()
        services = LegServices(self.sender, Location(lambda aor: [], lambda t: US),  # type: ignore[arg-type]
                               self.clock, self.dialogs, "pbx.test")
        request = parse_message(INVITE)
        assert isinstance(request, Request)
        self.invite = FakeInvite(request)
        self.events: list[str] = []
        self.leg = InboundLeg(services, self.invite, US, self,  # type: ignore[arg-type]
                              on_acked=lambda ack: self.events.append("acked"),
                              on_no_ack=lambda: self.events.append("no ack"),
                              on_ended=lambda: self.events.append("ended"))

    def ack(self) -> Request:
        """The caller's ACK of our 2xx."""
        ack = parse_message(INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK"))
        assert isinstance(ack, Request)
        return ack

    def test_answer_and_ack(self) -> None:
        """Ringing, then 200 with our tag and Contact; the dialog is in the table; the ACK confirms it."""
        self.leg.provisional(180)
        self.leg.answer(b"v=0\r\n")
        self.assertEqual([r.status for r in self.invite.responses], [180, 200])
        self.assertEqual({r.to.tag for r in self.invite.responses}, {self.leg.tag})
        self.assertEqual(self.leg.state, "answered")
        self.assertEqual(len(self.dialogs), 1)
        self.leg.acked(self.ack())
        self.assertEqual((self.leg.state, self.events), ("confirmed", ["acked"]))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_2xx_resent_until_ack(self) -> None:
        """Over UDP the 200 is resent at T1, 2*T1, 4*T1... (RFC 3261 §13.3.1.4) until the ACK."""
        self.leg.answer(b"")
        self.clock.advance(timers.T1)
        self.clock.advance(2 * timers.T1)
        self.assertEqual([m.status for m in self.sender.sent], [200, 200])  # type: ignore[union-attr]
        self.leg.acked(self.ack())
        self.clock.advance(60)
        self.assertEqual(len(self.sender.sent), 2)

    def test_no_ack(self) -> None:
        """No ACK within Timer H: the leg sends BYE, reports it and ends."""
        self.leg.answer(b"")
        self.clock.advance(timers.TIMER_H)
        self.assertEqual([r.method for r in self.sender.requests], ["BYE"])
        self.assertEqual((self.leg.state, self.events), ("ended", ["no ack", "ended"]))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_hang_up_waits_for_ack(self) -> None:
        """A hang-up before the ACK sends BYE only once the ACK came (RFC 3261 §15)."""
        self.leg.answer(b"")
        self.leg.hang_up()
        self.assertEqual((self.leg.state, self.sender.requests), ("closing", []))
        self.leg.acked(self.ack())
        self.assertEqual([r.method for r in self.sender.requests], ["BYE"])
        self.assertEqual((self.leg.state, self.events), ("ended", ["ended"]))

    def test_bye_now(self) -> None:
        """A relayed hang-up goes at once, ACK or not."""
        self.leg.answer(b"")
        self.leg.bye_now()
        self.assertEqual([r.method for r in self.sender.requests], ["BYE"])
        self.assertEqual(self.leg.state, "ended")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refuse_then_nothing(self) -> None:
        """A refused INVITE gets its final response; later inputs change nothing."""
        self.leg.refuse(486)
        self.leg.answer(b"")
        self.leg.acked(self.ack())
        self.leg.hang_up()
        self.assertEqual([r.status for r in self.invite.responses], [486])
        self.assertEqual((self.leg.state, self.sender.requests, self.events), ("ended", [], ["ended"]))


class ForkTests(SynchronousTestCase):
    """One INVITE to one phone: the CANCEL rules of RFC 3261 §9.1."""

    def fork(self) -> tuple[Fork, RecordingSender]:
        """A fork whose INVITE went to a phone."""
        sender = RecordingSender()
        request = parse_message(INVITE)
        assert isinstance(request, Request)
        binding = Binding("1002", "<sip:1002@192.0.2.12>", 0.0, "udp", "192.0.2.12:5060")
        return Fork(binding, request, PHONE, US, 0.0, sender), sender

    def test_cancel_waits_for_provisional(self) -> None:
        """Cancelled before any provisional response, the CANCEL goes at the first one, once."""
        fork, sender = self.fork()
        fork.cancel()
        self.assertEqual((fork.state, fork.status, sender.requests), ("cancel-pending", 487, []))
        fork.provisional()
        fork.provisional()
        fork.cancel()
        self.assertEqual([r.method for r in sender.requests], ["CANCEL"])
        self.assertEqual(fork.state, "cancelling")

    def test_cancel_after_provisional(self) -> None:
        """Cancelled after a provisional response, the CANCEL goes at once, with the INVITE's branch."""
        fork, sender = self.fork()
        fork.provisional()
        fork.cancel()
        [cancel] = sender.requests
        self.assertEqual((cancel.method, cancel.top_via.branch), ("CANCEL", "z9hG4bK-leg-1"))

    def test_no_cancel_after_final(self) -> None:
        """A fork with a final response is not cancelled."""
        fork, sender = self.fork()
        fork.provisional()
        fork.final()
        fork.cancel()
        self.assertEqual((fork.state, sender.requests), ("completed", []))
