"""
Blind transfer to outside numbers, in memory: the REFER's target
``95552345678`` is sent by the dialplan out through the ``carrier`` trunk
(a scripted far end at 192.0.2.50 that challenges with digest).
"""

from __future__ import annotations

import attrs

from pbx.calls.call import Call
from pbx.calls.dialplan import parse_dialplan
from pbx.permissions.guard import Guard
from pbx.permissions.options import parse_permissions
from pbx.sip.auth import DigestAuthenticator, Verdict, compute_ha1, parse_credentials
from pbx.sip.message import Request, Response
from pbx.trunks.config import parse_trunks
from pbx.trunks.joins import ask_guard
from pbx.trunks.registry import Trunks

from support.phones import (
    CALLEE_SDP,
    CALLER_SDP,
    PBX,
    REALM,
    CallTestCase,
    Leg,
    Phone,
    describe,
)

DIALLED = "95552345678"
SENT = "+15552345678"
DID = "+15551230000"


def sipfrag(notify: Request) -> str:
    """The status line a NOTIFY's message/sipfrag body carries."""
    return notify.body.decode().strip()


class TransferOutTestCase(CallTestCase):
    """1001 and 1002 on pbx; a carrier trunk with a ``9`` route and DID +15551230000 to 1002."""

    def setUp(self) -> None:
        """pbx with the carrier trunk and its route."""
        super().setUp()
        trunks = parse_trunks({
            "carrier": {"uri": "sip:192.0.2.50", "username": "acct-1", "password": "pw-1",
                        "caller_id": DID, "allow_from": ["192.0.2.50/32"],
                        "dids": {DID: {"extension": "1002"}}},
        }, None)
        self.config = attrs.evolve(
            self.config, trunks=trunks,
            dialplan=parse_dialplan([{"match": "_9NXXNXXXXXX", "trunk": ["carrier"], "strip": 1,
                                      "prepend": "+1"}]),
        )
        self.controller.config = self.config
        self.controller.trunks = Trunks(self.config.trunks, self.controller.services, self.controller.local_address)
        self.carrier = Phone(self, "1003", "192.0.2.50")
        self.phones[self.carrier.address] = self.carrier
        self.digest = DigestAuthenticator(realm="carrier.example", clock=self.clock, secret=b"c" * 32,
                                          algorithms=("MD5",))

    @property
    def trunk_in_use(self) -> int:
        """Calls the carrier trunk counts now."""
        trunk = self.controller.trunks.get("carrier")
        assert trunk is not None
        return trunk.in_use

    def call(self) -> Call:
        """The one call in progress."""
        [call] = self.controller.calls.values()
        assert isinstance(call, Call)
        return call

    def refer(self, phone: Phone, leg: Leg, number: str) -> None:
        """``phone`` REFERs to ``number``; 202 and NOTIFY 100, which it answers."""
        phone.in_dialog(leg, "REFER", extra=[("Refer-To", f"<sip:{number}@{REALM}>")])
        accepted, notify = phone.expect(202, "NOTIFY")
        self.assertEqual(sipfrag(notify), "SIP/2.0 100 Trying")
        phone.respond(notify, 200)

    def carrier_invite(self, first: Request | None = None) -> Request:
        """The carrier gets the INVITE (``first``, if already taken); its 407 is answered with credentials."""
        if first is None:
            first = self.carrier.expect_one("INVITE")
        self.carrier.respond(first, 407, extra=[("Proxy-Authenticate", v) for v in self.digest.challenge()])
        ack, again = self.carrier.expect("ACK", "INVITE")
        credentials = parse_credentials(again.headers.get("Proxy-Authorization") or "")
        verdict = self.digest.verify(
            credentials, "INVITE",
            lambda user, algorithm: compute_ha1(user, "carrier.example", "pw-1", algorithm)
            if user == "acct-1" else None,
            uri=str(again.uri),
        )
        self.assertEqual(verdict, Verdict.OK)
        return again

    def key(self, phone: Phone, leg: Leg, keys: str, other: Phone) -> None:
        """``phone`` sends each key as INFO; pbx relays it to ``other``, whose 200 goes back."""
        for key in keys:
            phone.in_dialog(leg, "INFO", body=f"Signal={key}\r\nDuration=160\r\n".encode(),
                            extra=[("Content-Type", "application/dtmf-relay")])
            other.respond(other.expect_one("INFO"), 200)
            phone.expect(200)

    def from_carrier(self) -> tuple[Leg, Leg]:
        """The carrier calls the DID; 1002 answers; returns the carrier's and 1002's legs."""
        uri = f"sip:{DID}@{PBX[0]}"
        leg = Leg("in-1@192.0.2.50", '"Caller" <sip:+13125550100@192.0.2.50>;tag=ctag', f"<{uri}>", uri, 0)
        invite = self.carrier.request_to("INVITE", uri, leg, body=CALLER_SDP)
        self.carrier.send(invite)
        self.carrier.expect(100)
        forked = self.callee.expect_one("INVITE")
        callee_leg = self.answer(self.callee, forked)
        ringing, ok = self.carrier.expect(180, 200)
        assert isinstance(ok, Response)
        self.carrier.confirm(invite, leg, ok)
        return leg, callee_leg


class BlindOutTests(TransferOutTestCase):
    """REFER and keys to a number a trunk route sends out."""

    def test_refer_to_outside_number(self) -> None:
        """1002 transfers 1001 to 9+number: the carrier rings with the route's caller ID, answers, takes 1002's seat."""
        invite, leg, callee_leg = self.establish()
        self.refer(self.callee, callee_leg, DIALLED)
        out = self.carrier_invite()
        self.assertEqual(str(out.uri), f"sip:{SENT}@192.0.2.50")
        self.assertEqual(out.headers.get("To"), f"<sip:{SENT}@192.0.2.50>")
        self.assertEqual(out.from_.uri.user, DID)
        self.assertEqual(out.headers.get("Referred-By"), f"<sip:1002@{REALM}>")
        self.assertEqual(self.trunk_in_use, 1)
        self.carrier.respond(out, 180)
        notify = self.callee.expect_one("NOTIFY")
        self.assertEqual(sipfrag(notify), "SIP/2.0 200 OK")
        self.callee.respond(notify, 200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        self.carrier.respond(out, 200, body=CALLEE_SDP)
        self.carrier.expect("ACK")
        self.assertEqual(self.call().callee, SENT)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.carrier.respond(self.carrier.expect_one("BYE"), 200)
        self.assertEqual(self.trunk_in_use, 0)

    def test_transferor_not_permitted(self) -> None:
        """The guard refuses the transferor's class: the final NOTIFY says 403, nothing goes out, the call stays."""
        guard = Guard(parse_permissions({"default": "internal"}), self.clock, self.store)
        self.controller.trunks.hooks.outbound.append(ask_guard(guard))
        invite, leg, callee_leg = self.establish()
        self.callee.in_dialog(callee_leg, "REFER", extra=[("Refer-To", f"<sip:{DIALLED}@{REALM}>")])
        accepted, trying, notify = self.callee.expect(202, "NOTIFY", "NOTIFY")
        self.callee.respond(trying, 200)
        self.assertEqual(sipfrag(notify).split(" ", 2)[1], "403")
        self.callee.respond(notify, 200)
        self.quiet(self.carrier, self.caller)
        self.assertEqual((self.call().state, self.call().callee, self.trunk_in_use), ("confirmed", "1002", 0))
        self.hang_up(leg)

    def test_carrier_unanswered_releases_trunk(self) -> None:
        """The carrier refuses (486) before ringing: the final NOTIFY says 486 and the trunk is free again."""
        invite, leg, callee_leg = self.establish()
        self.refer(self.callee, callee_leg, DIALLED)
        out = self.carrier_invite()
        self.carrier.respond(out, 486)
        self.carrier.expect("ACK")
        notify = self.callee.expect_one("NOTIFY")
        self.assertEqual(sipfrag(notify).split(" ", 2)[1], "486")
        self.callee.respond(notify, 200)
        self.assertEqual((self.call().callee, self.trunk_in_use), ("1002", 0))
        self.hang_up(leg)


    def test_call_ends_while_the_carrier_rings(self) -> None:
        """The transferee hangs up while the carrier rings: the carrier is cancelled and the trunk is free."""
        invite, leg, callee_leg = self.establish()
        self.refer(self.callee, callee_leg, DIALLED)
        out = self.carrier_invite()
        self.carrier.respond(out, 180)
        notify = self.callee.expect_one("NOTIFY")
        self.callee.respond(notify, 200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        self.assertEqual(self.trunk_in_use, 1)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        cancel = self.carrier.expect_one("CANCEL")
        self.carrier.respond(cancel, 200)
        self.carrier.respond(out, 487)
        self.carrier.expect("ACK")
        self.assertEqual(self.trunk_in_use, 0)


class TollFraudTests(TransferOutTestCase):
    """A party that came in over the trunk keys ``##`` + an outside number."""

    def test_outside_party_may_not_key_outside(self) -> None:
        """By default nothing goes out; the call stays as it is."""
        leg, callee_leg = self.from_carrier()
        self.assertEqual(self.trunk_in_use, 1)
        self.key(self.carrier, leg, f"##{DIALLED}#", self.callee)
        self.quiet(self.carrier, self.callee)
        self.assertEqual((self.call().state, self.call().callee, self.trunk_in_use), ("confirmed", "1002", 1))
        self.carrier.in_dialog(leg, "BYE")
        self.carrier.expect(200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        self.assertEqual(self.trunk_in_use, 0)

    def test_allowed_by_config(self) -> None:
        """With ``transfer.outside_keyed: true`` the keyed number goes out through the trunk."""
        self.controller.transfers.outside_keyed = True
        leg, callee_leg = self.from_carrier()
        self.key(self.carrier, leg, f"##{DIALLED}", self.callee)
        self.carrier.in_dialog(leg, "INFO", body=b"Signal=#\r\nDuration=160\r\n",
                               extra=[("Content-Type", "application/dtmf-relay")])
        self.callee.respond(self.callee.expect_one("INFO"), 200)
        first, ok = self.carrier.expect("INVITE", 200)
        out = self.carrier_invite(first)
        self.assertEqual(str(out.uri), f"sip:{SENT}@192.0.2.50")
        self.assertEqual(self.trunk_in_use, 2)
        self.carrier.respond(out, 480)
        self.carrier.expect("ACK")
        self.assertEqual([describe(m) for m in self.carrier.received()], [])
        self.assertEqual(self.trunk_in_use, 1)
        self.carrier.in_dialog(leg, "BYE")
        self.carrier.expect(200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
