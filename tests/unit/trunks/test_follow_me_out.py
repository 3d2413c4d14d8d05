"""
Follow-me to an outside number, in memory: 1002's follow-me names
``95552345678``, which the dialplan sends out through the ``carrier``
trunk (a scripted far end at 192.0.2.50 that challenges with digest).
"""

from __future__ import annotations

import attrs

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.confirm import Screen
from pbx.calls.dialplan import parse_dialplan
from pbx.calls.follow_me import FollowMe
from pbx.calls.outbound import OutboundCall
from pbx.permissions.guard import Guard
from pbx.permissions.options import parse_permissions
from pbx.records import Binding
from pbx.sip.auth import DigestAuthenticator, Verdict, compute_ha1, parse_credentials
from pbx.sip.message import Request, Response
from pbx.trunks.config import parse_trunks
from pbx.trunks.joins import ask_guard
from pbx.trunks.registry import Trunks

from support.app_calls import AppCallTestCase
from support.phones import CALLEE_SDP, CALLER_SDP, Leg, Phone

DIALLED = "95552345678"
SENT = "+15552345678"


class FollowMeOutTestCase(AppCallTestCase):
    """1001 calls 1002, whose follow-me calls an outside number after 5 s."""

    confirm = False

    def setUp(self) -> None:
        """pbx with media, a carrier trunk, a ``9`` route and 1002's follow-me."""
        super().setUp()
        trunks = parse_trunks({
            "carrier": {"uri": "sip:192.0.2.50", "username": "acct-1", "password": "pw-1",
                        "caller_id": "+15551230000", "allow_from": ["192.0.2.50/32"]},
        }, None)
        self.config = attrs.evolve(
            self.controller.config, trunks=trunks,
            dialplan=parse_dialplan([{"match": "_9NXXNXXXXXX", "trunk": ["carrier"], "strip": 1,
                                      "prepend": "+1"}]),
            follow_me={"1002": FollowMe("1002", (DIALLED,), after=5, mode="also", timeout=20,
                                        confirm=self.confirm)},
        )
        self.controller.config = self.config
        self.controller.trunks = Trunks(self.config.trunks, self.controller.services, self.controller.local_address)
        self.carrier = Phone(self, "1003", "192.0.2.50")
        self.phones[self.carrier.address] = self.carrier
        self.digest = DigestAuthenticator(realm="carrier.example", clock=self.clock, secret=b"c" * 32,
                                          algorithms=("MD5",))

    def ringing(self) -> tuple[Request, Leg, Request]:
        """1001 calls 1002; 1002's phone rings; returns the caller's INVITE and leg and 1002's INVITE."""
        caller_invite, leg = self.caller.invite("1002", body=CALLER_SDP)
        self.caller.expect(100)
        invite = self.callee.expect_one("INVITE")
        self.callee.respond(invite, 180)
        self.caller.expect(180)
        return caller_invite, leg, invite

    def carrier_invite(self) -> Request:
        """After ``after``, the carrier gets the INVITE; its 407 is answered with the trunk's credentials."""
        self.advance(5)
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

    def carrier_answers(self, invite: Request) -> Leg:
        """The carrier rings and answers; pbx ACKs; returns the carrier's leg."""
        self.carrier.respond(invite, 180)
        self.carrier.respond(invite, 200, body=CALLEE_SDP)
        self.carrier.expect("ACK")
        return self.carrier.answer_leg(invite)

    def callee_cancelled(self, invite: Request) -> None:
        """1002's ringing phone is cancelled."""
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(invite, 487)
        self.callee.expect("ACK")

    def caller_connected(self, caller_invite: Request, leg: Leg) -> None:
        """The caller is answered (200) and ACKs."""
        ok = self.caller.expect_one(200)
        assert isinstance(ok, Response)
        self.caller.confirm(caller_invite, leg, ok)

    def hang_up_all(self, leg: Leg) -> None:
        """The caller hangs up: pbx BYEs the carrier."""
        self.bye(leg)
        bye = self.carrier.expect_one("BYE")
        self.carrier.respond(bye, 200)
        self.deliver()


class OutsideTests(FollowMeOutTestCase):
    """Without confirm: the carrier's answer takes the call."""

    def test_rings_out_and_connects(self) -> None:
        """The outside number rings through the trunk with its caller ID; the carrier's answer connects the caller."""
        caller_invite, leg, invite = self.ringing()
        self.quiet(self.carrier)
        out = self.carrier_invite()
        self.assertEqual(str(out.uri), f"sip:{SENT}@192.0.2.50")
        self.assertEqual(out.headers.get("To"), f"<sip:{SENT}@192.0.2.50>")
        self.assertEqual(out.from_.uri.user, "+15551230000")
        trunk = self.controller.trunks.get("carrier")
        assert trunk is not None
        self.assertEqual(trunk.in_use, 1)
        self.carrier_answers(out)
        self.callee_cancelled(invite)
        self.caller_connected(caller_invite, leg)
        self.hang_up_all(leg)
        self.assertEqual(trunk.in_use, 0)

    def test_refused_by_permissions(self) -> None:
        """The guard, asked for 1002 (whose follow-me it is), refuses: nothing goes out, 1002 keeps ringing."""
        guard = Guard(parse_permissions({"default": "internal"}), self.clock, self.store)
        self.controller.trunks.hooks.outbound.append(ask_guard(guard))
        caller_invite, leg, invite = self.ringing()
        self.advance(5)
        self.quiet(self.carrier)
        self.callee.respond(invite, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        ok = self.caller.expect_one(200)
        self.caller.confirm(caller_invite, leg, ok)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.callee.expect_one("BYE")
        self.callee.respond(bye, 200)


class ConfirmTests(FollowMeOutTestCase):
    """With confirm: the carrier's answer hears "press 1" and only a 1 connects the caller."""

    confirm = True

    def press_info(self, leg: Leg, digit: str) -> None:
        """The carrier sends a key as SIP INFO (application/dtmf-relay)."""
        request = self.carrier.request_to("INFO", leg.target, leg,
                                          extra=[("Content-Type", "application/dtmf-relay")])
        request.body = f"Signal={digit}\r\nDuration=160\r\n".encode()
        self.carrier.send(request)
        self.carrier.expect(200)

    def test_press_1_connects(self) -> None:
        """Answered, the carrier leg is not connected until it presses 1; then the caller is."""
        caller_invite, leg, invite = self.ringing()
        out = self.carrier_invite()
        carrier_leg = self.carrier_answers(out)
        self.media(1.0)
        self.quiet(self.caller)
        self.press_info(carrier_leg, "1")
        self.media(0.5)
        self.callee_cancelled(invite)
        self.caller_connected(caller_invite, leg)
        self.hang_up_all(leg)

    def test_other_key_hangs_up_the_leg(self) -> None:
        """A voicemail (any key but 1) is hung up; the caller stays ringing on 1002 and gives up."""
        caller_invite, leg, invite = self.ringing()
        out = self.carrier_invite()
        carrier_leg = self.carrier_answers(out)
        self.media(0.5)
        self.press_info(carrier_leg, "5")
        self.media(0.5)
        bye = self.carrier.expect_one("BYE")
        self.carrier.respond(bye, 200)
        self.quiet(self.caller)
        self.abandon(caller_invite, (self.callee, invite))


class ScreenOutsideTests(SynchronousTestCase):
    """:class:`Screen` places outside legs through ``place_outside``."""

    def test_not_placed(self) -> None:
        """A number no trunk takes (refused, none up) places no leg and takes nothing."""
        asked: list[str] = []

        def place(number: str) -> Deferred[OutboundCall | None]:
            asked.append(number)
            d: Deferred[OutboundCall | None] = Deferred()
            d.callback(None)
            return d

        taken: list[OutboundCall] = []

        def take(leg: OutboundCall) -> bool:
            taken.append(leg)
            return True

        def place_phone(number: str, phones: list[Binding]) -> OutboundCall:
            raise AssertionError("no extension is rung")

        screen = Screen(place_phone, take, lambda: True, place_outside=place)
        screen.start_outside(["95550000000"])
        self.assertEqual((asked, screen.legs, taken), (["95550000000"], [], []))
