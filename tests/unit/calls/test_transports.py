"""
Tests for calls with phones on TCP and TLS, in memory: every request pbx
sends a phone goes on the connection that phone opened (RFC 3261 §18.1.1,
RFC 5626 flows), its Contact names the phone's transport, and a flow that is
gone fails the call at once instead of dialling the phone's ephemeral port.
"""

from __future__ import annotations

from pbx.sip.message import Request, Response
from pbx.sip.transaction import Peer
from pbx.sip.transport import SIPStreamFactory

from support.phones import (
    CALLEE_SDP,
    CALLER_SDP,
    CallTestCase,
    Phone,
    describe,
    hold_sdp,
)


class Dialled:
    """Stands in for the stream connector: records each connection pbx tries to open."""

    def __init__(self) -> None:
        self.peers: list[Peer] = []

    def __call__(self, peer: Peer, factory: SIPStreamFactory) -> None:
        """Record one attempt (it never connects)."""
        self.peers.append(peer)


class StreamCallTestCase(CallTestCase):
    """A caller on TCP and a callee on TLS instead of the UDP phones."""

    def setUp(self) -> None:
        """Register 1001 over TCP at .21 and 1002 over TLS at .22; record connection attempts."""
        super().setUp()
        self.dialled = Dialled()
        self.core.transports.connect = self.dialled
        self.caller = self.phone("1001", "192.0.2.21", "tcp")
        self.callee = self.phone("1002", "192.0.2.22", "tls")
        self.forget_udp_phones()

    def forget_udp_phones(self) -> None:
        """Drop the UDP phones' bindings so only the stream phones ring."""
        for phone in list(self.phones.values()):
            if phone.transport == "udp":
                bindings = self.registrar.bindings.get(phone.user, {})
                for key in [k for k in bindings if f"@{phone.host}:" in k]:
                    del bindings[key]
                del self.phones[phone.address]

    def tearDown(self) -> None:
        """Close the phones' connections (their idle timers go too), then the usual checks."""
        for phone in self.phones.values():
            if phone.connection is not None:
                phone.disconnect()
        super().tearDown()

    def on_connection(self, phone: Phone, message: Request | Response) -> None:
        """
        ``message`` came to ``phone`` on its own connection: nothing was
        dialled, and the harness refuses UDP to a stream phone.
        """
        self.assertIsNotNone(phone.connection, describe(message))
        self.assertEqual(self.dialled.peers, [], describe(message))


class StreamCallTests(StreamCallTestCase):
    """Calls between a TCP and a TLS phone use the phones' connections for everything."""

    def test_contacts_name_the_transport(self) -> None:
        """The callee's INVITE has a sip Contact with transport=tls; the caller's 200 one with transport=tcp."""
        invite, leg, [forked] = self.ring()
        self.assertEqual(str(forked.contacts[0].uri), "sip:1001@127.0.0.1:5060;transport=tls")
        self.answer(self.callee, forked)
        ringing, ok = self.caller.expect(180, 200)
        self.assertEqual(str(ok.contacts[0].uri), "sip:pbx@127.0.0.1:5060;transport=tcp")
        self.caller.confirm(invite, leg, ok)
        self.hang_up(leg)
        self.assertEqual(self.dialled.peers, [])

    def test_caller_hangs_up(self) -> None:
        """INVITE, ACK and BYE reach the TLS callee on its connection; the caller's 200s on its own."""
        invite, leg, callee_leg = self.establish()
        self.hang_up(leg)
        self.on_connection(self.callee, invite)
        self.assertEqual(self.records()["a"].hangup_side, "a")

    def test_callee_hangs_up(self) -> None:
        """The callee's BYE is passed to the caller on the caller's connection: pbx as UAS uses the INVITE's flow."""
        invite, leg, callee_leg = self.establish()
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        bye = self.caller.expect_one("BYE")
        self.on_connection(self.caller, bye)
        self.caller.respond(bye, 200)
        self.assertEqual(self.records()["b"].hangup_side, "b")

    def test_reinvites_both_ways(self) -> None:
        """A re-INVITE from either side reaches the other on its connection, and so does pbx's ACK of its 2xx."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendonly"))
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "recvonly"))
        self.callee.expect("ACK")
        self.caller.expect(200)
        self.caller.ack_reinvite(leg)
        self.on_connection(self.callee, reinvite)

        self.callee.in_dialog(callee_leg, "INVITE", body=hold_sdp(CALLEE_SDP, "sendonly", 3))
        self.callee.expect(100)
        reinvite = self.caller.expect_one("INVITE")
        self.assertEqual(str(reinvite.contacts[0].uri), "sip:pbx@127.0.0.1:5060;transport=tcp")
        self.caller.respond(reinvite, 200, body=hold_sdp(CALLER_SDP, "recvonly", 3))
        self.caller.expect("ACK")
        self.callee.expect(200)
        self.callee.ack_reinvite(callee_leg)
        self.on_connection(self.caller, reinvite)
        self.hang_up(leg)


class FlowGoneTests(StreamCallTestCase):
    """A callee whose connection closed: no call to its ephemeral port."""

    def test_outbound_flow_gone_fails_at_once(self) -> None:
        """A callee registered with ob whose flow is gone is unavailable at once (no 32 s wait), and nothing is dialled."""
        phone = self.phone("1003", "192.0.2.23", "tcp", contact_params=";ob")
        phone.disconnect()
        invite, leg = self.caller.invite("1003")
        self.caller.expect(100)
        self.clock.advance(0)
        self.deliver()
        final = self.caller.expect_one(480)
        self.caller.ack_failure(invite, final)
        self.assertEqual(self.dialled.peers, [])
        record = self.records()["a"]
        self.assertEqual(record.end, record.start)

    def test_plain_binding_gone_dials_contact(self) -> None:
        """A callee without ob whose connection is gone is dialled at its Contact's address, not its old port; refused, the call fails at once."""
        phone = self.phone("1003", "192.0.2.23", "tcp")
        phone.disconnect()
        invite, leg = self.caller.invite("1003")
        self.caller.expect(100)
        self.assertEqual(self.dialled.peers, [Peer("tcp", "192.0.2.23", 5060)])
        # Nothing listens there either: the call fails at once.
        self.core.transports.connect_failed(Peer("tcp", "192.0.2.23", 5060))
        self.clock.advance(0)
        final = self.caller.expect_one(480)
        self.caller.ack_failure(invite, final)
