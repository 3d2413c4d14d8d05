"""
Tests of the call records of calls whose parties change (transfer, attended
transfer, park and retrieval), of the journal of live calls that follows
them (:mod:`pbx.calls.cdr`), and of a hold pbx answered when its party
leaves the seat (:mod:`pbx.calls.hold`): by scripted phones through the
real controller, in memory.

1001 calls 1002 at T; 1003 is the transfer target or the retriever.
"""

from __future__ import annotations

from urllib.parse import quote

import numpy as np

from twisted.internet.defer import Deferred

from pbx.calls.cdr import CDRWriter
from pbx.calls.park_options import ParkConfig
from pbx.config import CallsConfig
from pbx.media.codecs import PCMA, PCMU
from pbx.media.music import MusicClass
from pbx.media.playout import HoldMusic
from pbx.records import CallRecord
from pbx.sip.message import Request, Response

from support.phones import (
    CALLEE_SDP,
    CALLER_SDP,
    REALM,
    CallTestCase,
    Leg,
    Phone,
    hold_sdp,
)

#: 1003's SDP: PCMA, the codec the call uses, at 192.0.2.13:6000.
THIRD_SDP = (
    CALLEE_SDP.replace(b"bob 200", b"carol 300")
    .replace(b"192.0.2.12", b"192.0.2.13")
    .replace(b"m=audio 5000", b"m=audio 6000")
)


def timeline(records: list[CallRecord]) -> list[tuple[str, str, str, str, float, float]]:
    """(leg, caller, callee, hangup cause, answer, end) of each record, in the order parties were connected."""
    rows = sorted(records, key=lambda r: (r.answer or 0.0, r.leg, r.end))
    return [(r.leg, r.caller, r.callee, r.hangup_cause, r.answer or 0.0, r.end) for r in rows]


class LinkedTestCase(CallTestCase):
    """1003 registered; park on 70 (slot 71); no RTP flows, so the media watchdog waits longer than the tests."""

    calls_config = CallsConfig(ring_timeout=30, media_timeout=3600, min_session_expires=90)
    park_config = ParkConfig(code="70", slots=("71",), timeout=600)

    def setUp(self) -> None:
        """Register 1003; note the time the first call is answered."""
        super().setUp()
        self.third = self.phone("1003", "192.0.2.13")
        self.t = self.clock.seconds()

    def refer(self, phone: Phone, leg: Leg, refer_to: str) -> None:
        """``phone`` REFERs without a subscription (RFC 4488): 202, no NOTIFY."""
        phone.in_dialog(leg, "REFER", extra=[("Refer-To", refer_to), ("Refer-Sub", "false")])
        phone.expect(202)

    def blind(self, phone: Phone, leg: Leg, after: float) -> tuple[Request, Leg]:
        """
        ``after`` seconds on, ``phone`` transfers its call to 1003, which
        rings (``phone`` gets BYE) and answers two seconds later.
        """
        self.advance(after)
        self.refer(phone, leg, f"<sip:1003@{REALM}>")
        forked = self.third.expect_one("INVITE")
        self.third.respond(forked, 180)
        phone.respond(phone.expect_one("BYE"), 200)
        self.advance(2)
        self.third.respond(forked, 200, body=THIRD_SDP)
        self.third.expect("ACK")
        return forked, self.third.answer_leg(forked)

    def caller_hangs_up(self, leg: Leg) -> None:
        """1001 hangs up its call with 1003; 1003 answers the BYE."""
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        self.third.respond(self.third.expect_one("BYE"), 200)

    def stored(self) -> list[CallRecord]:
        """Every record stored so far."""
        return list(self.store.calls)

    def journal(self) -> list[tuple[str, str, str, str, float, str]]:
        """(leg, call_id, caller, callee, answer, linked id) of each journal entry."""
        entries = sorted(self.store.live_calls.values(), key=lambda e: e.leg)
        return [(e.leg, e.call_id, e.caller, e.callee, e.answer, e.linked_id) for e in entries]


class TransferRecordsTests(LinkedTestCase):
    """Every record of a transferred call shares its linked id, and each covers its party's own time."""

    def test_blind_transfer_by_callee(self) -> None:
        """
        1002 transfers 1001 to 1003 after 10 s; 1003 answers 2 s later and
        talks 20 s: three records with the first call's linked id, 1002's
        ending at the transfer, 1003's answered when it was connected.
        """
        invite, leg, callee_leg = self.establish()
        forked, third_leg = self.blind(self.callee, callee_leg, 10)
        self.advance(20)
        self.caller_hangs_up(leg)
        t = self.t
        records = self.stored()
        self.assertEqual({r.linked_id for r in records}, {leg.call_id})
        self.assertEqual(timeline(records), [
            ("a", "1001", "1003", "BYE", t, t + 32),
            ("b", "1001", "1002", "transferred to 1003", t, t + 10),
            ("b", "1001", "1003", "BYE", t + 12, t + 32),
        ])
        [target] = [r for r in records if r.callee == "1003" and r.leg == "b"]
        self.assertEqual((target.call_id, target.start, target.billable), (forked.call_id, t + 10, 20))
        total, listed = self.successResultOf(self.store.list_call_records(linked_id=leg.call_id))
        self.assertEqual(total, 3)

    def test_blind_transfer_by_caller(self) -> None:
        """
        1001 transfers 1002 to 1003: 1003's record is its own dialog's
        (its Call-ID, its ringing, its answer), not the caller's INVITE's.
        """
        invite, leg, callee_leg = self.establish()
        forked, third_leg = self.blind(self.caller, leg, 5)
        self.advance(7)
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.third.respond(self.third.expect_one("BYE"), 200)
        t = self.t
        records = self.stored()
        self.assertEqual(timeline(records), [
            ("a", "1001", "1002", "transferred to 1003", t, t + 5),
            ("b", "1003", "1002", "BYE", t, t + 14),
            ("a", "1003", "1002", "BYE", t + 7, t + 14),
        ])
        self.assertEqual({r.linked_id for r in records}, {leg.call_id})
        [target] = [r for r in records if r.caller == "1003" and r.leg == "a"]
        self.assertEqual((target.call_id, target.start), (forked.call_id, t + 5))

    def test_attended_transfer_links_both_calls(self) -> None:
        """
        1002 consults 1003 in a second call, then joins 1001 and 1003: the
        records of both calls carry the first (older) call's linked id.
        """
        invite, leg, callee_leg = self.establish()
        self.advance(3)
        second, consult = self.callee.invite("1003")
        self.callee.expect(100)
        forked = self.third.expect_one("INVITE")
        third_leg = self.answer(self.third, forked, body=THIRD_SDP)
        ringing, ok = self.callee.expect(180, 200)
        self.callee.confirm(second, consult, ok)
        self.advance(4)
        value = f"{consult.call_id};to-tag={ok.to.tag};from-tag={self.callee.tag}"
        self.refer(self.callee, callee_leg, f"<sip:1003@{REALM}?Replaces={quote(value, safe='')}>")
        reinvite = self.third.expect_one("INVITE")
        self.third.respond(reinvite, 200, body=THIRD_SDP.replace(b" 1 IN", b" 2 IN"))
        self.third.expect("ACK")
        for bye in self.callee.expect("BYE", "BYE"):
            self.callee.respond(bye, 200)
        self.advance(5)
        self.third.in_dialog(third_leg, "BYE")
        self.third.expect(200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)
        records = self.stored()
        self.assertEqual(len(records), 5)
        self.assertEqual({r.linked_id for r in records}, {leg.call_id})
        self.assertIn(consult.call_id, {r.call_id for r in records})
        t = self.t
        self.assertEqual(timeline(records)[-1], ("b", "1001", "1003", "BYE", t + 7, t + 12))


class JournalAfterTransferTests(LinkedTestCase):
    """The journal of live calls names the parties in the call now; a crash then leaves the right records."""

    def test_journal_follows_blind_transfer(self) -> None:
        """
        Once 1003 is connected, the journal holds 1001's and 1003's entries
        (with the linked id) and 1002's record is stored; recovery after a
        crash adds INTERRUPTED records of 1001 and 1003 only.
        """
        invite, leg, callee_leg = self.establish()
        forked, third_leg = self.blind(self.callee, callee_leg, 10)
        t = self.t
        self.assertEqual(self.journal(), [
            ("a", leg.call_id, "1001", "1003", t, leg.call_id),
            ("b", forked.call_id, "1001", "1003", t + 12, leg.call_id),
        ])
        [departed] = self.stored()
        self.assertEqual((departed.callee, departed.end), ("1002", t + 10))
        self.advance(40)  # one touch of the journal, at 30 s
        restarted = CDRWriter(self.store, self.clock)
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(restarted.recover())), 2)
        records = self.stored()
        self.assertEqual(
            sorted((r.leg, r.callee, r.disposition, r.answer, r.linked_id) for r in records[1:]),
            [("a", "1003", "INTERRUPTED", t, leg.call_id),
             ("b", "1003", "INTERRUPTED", t + 12, leg.call_id)],
        )
        self.caller_hangs_up(leg)

    def test_ended_call_stores_departed_once(self) -> None:
        """A departed party's record, stored at the transfer, is not stored again when the call ends."""
        invite, leg, callee_leg = self.establish()
        self.blind(self.callee, callee_leg, 1)
        self.caller_hangs_up(leg)
        causes = sorted(r.hangup_cause for r in self.stored())
        self.assertEqual(causes, ["BYE", "BYE", "transferred to 1003"])
        self.assertEqual(self.store.live_calls, {})

    def test_park_and_retrieve(self) -> None:
        """
        While 1001 is parked the journal holds its entry only; 1003's
        retrieval adds 1003's; the three records share the linked id.
        """
        invite, leg, callee_leg = self.establish()
        self.advance(5)
        self.callee.in_dialog(callee_leg, "REFER", extra=[("Refer-To", f"<sip:70@{REALM}>"), ("Refer-Sub", "false")])
        accepted, bye = self.callee.expect(202, "BYE")
        self.callee.respond(bye, 200)
        t = self.t
        self.assertEqual(self.journal(), [("a", leg.call_id, "1001", "1002", t, leg.call_id)])
        self.assertEqual([r.hangup_cause for r in self.stored()], ["parked at 71"])
        self.advance(10)
        retrieving, retrieved = self.third.invite("71", body=THIRD_SDP)
        self.third.expect(100)
        reinvite = self.caller.expect_one("INVITE")
        self.caller.respond(reinvite, 200, body=CALLER_SDP.replace(b" 1 IN", b" 2 IN"))
        self.caller.expect("ACK")
        ok = self.third.expect_one(200)
        self.third.confirm(retrieving, retrieved, ok)
        self.assertEqual(self.journal(), [
            ("a", leg.call_id, "1001", "1003", t, leg.call_id),
            ("b", retrieved.call_id, "1001", "1003", t + 15, leg.call_id),
        ])
        self.advance(3)
        self.third.in_dialog(retrieved, "BYE")
        self.third.expect(200)
        self.caller.respond(self.caller.expect_one("BYE"), 200)
        records = self.stored()
        self.assertEqual({r.linked_id for r in records}, {leg.call_id})
        self.assertEqual(timeline(records), [
            ("a", "1001", "1003", "BYE", t, t + 18),
            ("b", "1001", "1002", "parked at 71", t, t + 5),
            ("b", "1001", "1003", "BYE", t + 15, t + 18),
        ])


class HoldLeavesWithItsPartyTests(LinkedTestCase):
    """A hold pbx answered ends when the holding party leaves its seat by a transfer."""

    def setUp(self) -> None:
        """Music on hold: one class for everyone."""
        super().setUp()
        track = ((np.arange(8000) % 400) - 200) / 400.0
        self.music = HoldMusic({"default": MusicClass("default", 8000, track)}, {},
                               {"pcmu": PCMU(), "pcma": PCMA()}, self.controller.media_clock)
        self.controller.music = self.music

    def test_transfer_after_hold(self) -> None:
        """
        1002 holds 1001 (pbx answers, 1001 hears music), then transfers it
        to 1003: the music stops, 1003's RTP reaches 1001, and 1003's own
        sendrecv re-INVITE goes to 1001 (1003 does not inherit the hold).
        """
        invite, leg, callee_leg = self.establish()
        self.callee.in_dialog(callee_leg, "INVITE", body=hold_sdp(CALLEE_SDP, "sendonly"))
        trying, ok = self.callee.expect(100, 200)
        assert isinstance(ok, Response)
        self.callee.ack_reinvite(callee_leg)
        session = self.session()
        self.assertIsNotNone(session.feeding("a"))
        forked, third_leg = self.blind(self.callee, callee_leg, 1)
        self.assertIsNone(session.feeding("a"))
        self.assertEqual(self.music.listeners(), {"default/pcma": 0})
        packet = b"\x80\x08\x12\x34" + b"\x55" * 168
        port_a = self.clock.udpPorts[session.local_port("a")]
        port_a.written.clear()
        session.leg("b").rtp.datagramReceived(packet, ("192.0.2.13", 6000))
        self.assertEqual(port_a.written, [(packet, ("192.0.2.11", 4000))])
        self.third.in_dialog(third_leg, "INVITE", body=THIRD_SDP.replace(b" 1 IN", b" 2 IN"))
        self.third.expect(100)
        reinvite = self.caller.expect_one("INVITE")
        self.caller.respond(reinvite, 200, body=CALLER_SDP.replace(b" 1 IN", b" 2 IN"))
        self.caller.expect("ACK")
        self.third.expect(200)
        self.third.ack_reinvite(third_leg)
        self.caller_hangs_up(leg)
