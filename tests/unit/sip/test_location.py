"""Tests for :mod:`pbx.sip.location`: where a registered phone is reached (RFC 3261 §10, RFC 5626)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.records import Binding
from pbx.sip.location import has_ob, peer_for
from pbx.sip.transaction import Peer


def binding(transport: str, contact: str, source: str = "192.0.2.7:40001") -> Binding:
    """A binding of 1001 registered over ``transport`` from ``source``."""
    return Binding("1001", contact, 1e12, transport, source)


def never(peer: Peer) -> bool:
    """No connection is open."""
    return False


class PeerForTests(SynchronousTestCase):
    """peer_for: the REGISTER's source, the flow, or the Contact's address."""

    def test_udp_source(self) -> None:
        """Over UDP the REGISTER's source is used, not the Contact (NAT)."""
        peer = peer_for(binding("udp", "sip:1001@10.0.0.5:5060"), never)
        self.assertEqual(peer, Peer("udp", "192.0.2.7", 40001))
        self.assertFalse(peer.flow)

    def test_stream_flow(self) -> None:
        """Over TCP or TLS with the connection open, the connection: a flow."""
        for transport in ("tcp", "tls"):
            peer = peer_for(binding(transport, f"sip:1001@10.0.0.5;transport={transport}"), lambda p: True)
            self.assertEqual(peer, Peer(transport, "192.0.2.7", 40001))
            self.assertTrue(peer.flow)

    def test_connection_gone(self) -> None:
        """With the connection gone, the Contact's address (its port, or the transport's default)."""
        self.assertEqual(
            peer_for(binding("tcp", "sip:1001@10.0.0.5:5070;transport=tcp"), never),
            Peer("tcp", "10.0.0.5", 5070),
        )
        peer = peer_for(binding("tls", "sip:1001@10.0.0.5;transport=tls"), never)
        self.assertEqual(peer, Peer("tls", "10.0.0.5", 5061))
        self.assertFalse(peer.flow)

    def test_outbound_flow_gone(self) -> None:
        """A phone that registered with ob keeps its flow even when it is gone (RFC 5626 §5.3): that send fails."""
        contact = "sip:1001@10.0.0.5:5070;transport=tcp;ob"
        self.assertTrue(has_ob(binding("tcp", contact)))
        peer = peer_for(binding("tcp", contact), never)
        self.assertEqual(peer, Peer("tcp", "192.0.2.7", 40001))
        self.assertTrue(peer.flow)

    def test_unknown_source(self) -> None:
        """Without a usable source, the Contact's address."""
        self.assertEqual(
            peer_for(binding("udp", "sip:1001@10.0.0.5", source="")), Peer("udp", "10.0.0.5", 5060)
        )

    def test_unreadable_contact(self) -> None:
        """A Contact that does not parse is not an outbound one."""
        self.assertFalse(has_ob(binding("tcp", "sip:")))

    def test_outbound_from_the_registrar(self) -> None:
        """What the registrar says of a binding decides, when given (reg-id and +sip.instance leave no ob)."""
        plain = binding("tcp", "sip:1001@10.0.0.5:5070;transport=tcp")
        self.assertTrue(peer_for(plain, never, lambda b: True).flow)
        self.assertFalse(peer_for(plain, never, lambda b: False).flow)
