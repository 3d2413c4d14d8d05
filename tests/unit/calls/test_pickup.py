"""
Tests for :mod:`pbx.calls.pickup`: directed and group pickup of a ringing
call by scripted phones through the real controller, in memory.

1001 calls 1002, whose phone rings; 1003 picks the call up.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.call import Call
from pbx.calls.events import CallEvent
from pbx.calls.pickup_options import parse_pickup_groups
from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.sip.message import Request, Response

from support.phones import CALLER_SDP, CallTestCase, Leg, audio

PICKER_SDP = (
    b"v=0\r\n"
    b"o=carol 300 1 IN IP4 192.0.2.13\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.13\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 9 8 101\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)


class PickupTests(CallTestCase):
    """A phone picks up a call ringing another."""

    def setUp(self) -> None:
        """Register 1003; sales = 1002 and 1003; collect answered events."""
        super().setUp()
        self.picker = self.phone("1003", "192.0.2.13")
        self.controller.pickups.groups = {"sales": ("1002", "1003")}
        self.answered: list[CallEvent] = []
        self.controller.events.subscribe(self.answered.append, kinds=("answered",))

    def ringing(self) -> tuple[Request, Leg, Request]:
        """1001 calls 1002, whose phone rings: (caller's INVITE, its leg, 1002's INVITE)."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        return invite, leg, forked

    def pick(self, number: str, forked: Request, invite: Request, leg: Leg) -> Leg:
        """1003 dials ``number`` and takes the call: 1002 is cancelled, both sides answered."""
        session = self.session()
        picking, picked = self.picker.invite(number, body=PICKER_SDP)
        trying, ok = self.picker.expect(100, 200)
        assert isinstance(ok, Response)
        host, port, formats, direction = audio(ok.body)
        # The first codec of 1003's offer that 1001 offered too: PCMA (not G.722).
        self.assertEqual(
            (host, port, formats[0]), ("127.0.0.1", session.local_port("b"), "8")
        )
        self.picker.confirm(picking, picked, ok)
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
        answer = self.caller.expect_one(200)
        host, port, formats, direction = audio(answer.body)
        self.assertEqual(
            (host, port, formats[0]), ("127.0.0.1", session.local_port("a"), "8")
        )
        self.caller.confirm(invite, leg, answer)
        self.advance(1)
        self.quiet(self.caller, self.callee, self.picker)
        [call] = self.controller.calls.values()
        assert isinstance(call, Call)
        self.assertEqual(call.state, "confirmed")
        self.assertEqual(session.leg("b").rtp.remote, ("192.0.2.13", 6000))
        self.assertEqual(session.leg("a").rtp.remote, ("192.0.2.11", 4000))
        self.assertFalse(call.media.transcoding)
        [event] = self.answered
        self.assertEqual(event.detail["picked_up_by"], "1003")
        return picked

    def test_directed(self) -> None:
        """1003 dials **1002 while 1002 rings: 1003 talks to 1001, 1002 stops ringing; the BYE reaches 1003."""
        invite, leg, forked = self.ringing()
        self.pick("**1002", forked, invite, leg)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.picker.respond(self.picker.expect_one("BYE"), 200)
        records = self.records()
        self.assertEqual(records["b"].callee, "1003")
        self.assertEqual(records["b"].disposition, "ANSWERED")

    def test_records_linked(self) -> None:
        """The picked-up call's two records share the caller's Call-ID as linked id; the picker's is its own dialog's."""
        invite, leg, forked = self.ringing()
        picked = self.pick("**1002", forked, invite, leg)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.picker.respond(self.picker.expect_one("BYE"), 200)
        records = self.records()
        self.assertEqual({r.linked_id for r in records.values()}, {leg.call_id})
        self.assertEqual((records["b"].call_id, records["b"].callee), (picked.call_id, "1003"))

    def test_group(self) -> None:
        """1003 dials *8: the call ringing 1002, in its pickup group, is picked up; the picker hangs up."""
        invite, leg, forked = self.ringing()
        picked = self.pick("*8", forked, invite, leg)
        self.picker.in_dialog(picked, "BYE")
        self.picker.expect(200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)

    def test_nothing_ringing(self) -> None:
        """A pickup with no call ringing there: 404."""
        invite, leg = self.picker.invite("**1002", body=PICKER_SDP)
        trying, refused = self.picker.expect(100, 404)
        self.assertEqual(refused.reason, "Nothing to Pick Up")
        self.picker.ack_failure(invite, refused)

    def test_group_outsider(self) -> None:
        """1002's own group pickup does not reach a call 1002 makes, and 1004, in no group, picks nothing."""
        outsider = self.phone("1004", "192.0.2.14")
        invite, leg, forked = self.ringing()
        picking, picked = outsider.invite("*8", body=PICKER_SDP)
        trying, refused = outsider.expect(100, 404)
        outsider.ack_failure(picking, refused)
        self.abandon(invite, (self.callee, forked))

    def test_no_common_codec(self) -> None:
        """A picker offering nothing the caller offered: 488, and the call still rings."""
        invite, leg, forked = self.ringing()
        g722 = PICKER_SDP.replace(b"RTP/AVP 9 8 101", b"RTP/AVP 9").replace(
            b"a=rtpmap:8 PCMA/8000\r\n", b""
        )
        picking, picked = self.picker.invite("**1002", body=g722)
        trying, refused = self.picker.expect(100, 488)
        self.picker.ack_failure(picking, refused)
        self.quiet(self.callee, self.caller)
        self.abandon(invite, (self.callee, forked))

    def test_answered_call_not_picked(self) -> None:
        """A call already answered is not picked up: 404."""
        invite, leg, callee_leg = self.establish()
        picking, picked = self.picker.invite("**1002", body=CALLER_SDP)
        trying, refused = self.picker.expect(100, 404)
        self.picker.ack_failure(picking, refused)
        self.hang_up(leg)


class PickupGroupsConfigTests(SynchronousTestCase):
    """The ``pickup_groups:`` section."""

    def test_parsed(self) -> None:
        """Groups of extension numbers; none without the section."""
        config = parse_config(
            'sip: {domain: pbx.test}\npickup_groups: {sales: ["1001", 1002]}\n',
            "t.yml",
            {},
        )
        self.assertEqual(config.pickup_groups, {"sales": ("1001", "1002")})
        self.assertEqual(parse_pickup_groups(None), {})

    def test_bad(self) -> None:
        """Each problem names its key."""
        cases = [
            ([], "pickup_groups"),
            ({"sales": []}, "pickup_groups.sales"),
            ({"sales": "1001"}, "pickup_groups.sales"),
            ({"sales": ["front desk"]}, "pickup_groups.sales[0]"),
            ({"sales": [True]}, "pickup_groups.sales[0]"),
        ]
        for raw, key in cases:
            error = self.assertRaises(ConfigError, parse_pickup_groups, raw)
            self.assertEqual(error.key, key, raw)
