"""
Tests for :mod:`pbx.calls`: whole calls through the B2BUA, in memory.

A real :class:`SIPCore`, registrar, authenticator and :class:`CallController`
are wired as :func:`pbx.switch.build_switch` wires them, on a
:class:`FakeUDPReactor` (its clock drives every timer, its fake UDP ports
carry the relay's sockets).  Phones are scripted: each registers, then sends
requests and answers what pbx sends it, datagram by datagram.
"""

from __future__ import annotations

import attrs

from pbx.calls.cdr import TOUCH_INTERVAL
from pbx.calls.dialplan import Dialplan, HangUp, Route, ToApplication, compile_pattern
from pbx.calls.media_watchdog import MEDIA_CHECK_INTERVAL
from pbx.config import CallsConfig
from pbx.sip import timers
from pbx.sip.message import Request, Response

from support.phones import (
    CALLEE_SDP,
    CALLER_SDP,
    REALM,
    RTP_MAX,
    RTP_MIN,
    CallTestCase,
    Leg,
    audio,
    describe,
    hold_sdp,
)


class CallSetupTests(CallTestCase):
    """Authenticating the caller and forking the INVITE."""

    def test_challenge(self) -> None:
        """An INVITE without credentials gets one 407 with a Digest challenge and no 100; nobody rings."""
        self.caller.invite(authenticate=False)
        challenge = self.caller.expect_one(407)
        self.assertTrue(challenge.to.tag)
        header = challenge.headers.get("Proxy-Authenticate") or ""
        self.assertTrue(header.startswith("Digest "))
        self.assertIn(f'realm="{REALM}"', header)
        self.quiet(self.callee)
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.allocator.in_use, 0)

    def test_wrong_password(self) -> None:
        """Credentials with a wrong password get a fresh 407 (once) and an audit event; nobody rings."""
        self.caller.password = "Wrong-pass-1001"
        self.caller.invite()
        self.caller.expect(100, 407)
        self.clock.advance(40)
        self.caller.expect()
        self.assertEqual([e.kind for e in self.store.audit], ["sip.auth.failure"])
        self.quiet(self.callee)
        self.assertEqual(self.allocator.in_use, 0)

    def test_forked_to_every_contact(self) -> None:
        """Each registered phone of the callee gets its own INVITE, at its own contact, in its own dialog."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, forked = self.ring(self.callee, mobile)
        self.assertEqual(
            [str(f.uri) for f in forked], [self.callee.contact, mobile.contact]
        )
        self.assertEqual(len({f.call_id for f in forked} | {invite.call_id}), 3)
        self.assertEqual(len({f.from_.tag for f in forked}), 2)
        port = self.session().local_port("b")
        self.assertEqual([audio(f.body)[:2] for f in forked], [("127.0.0.1", port)] * 2)
        self.abandon(invite)
        # §9.1: phones that sent no provisional response get no CANCEL yet.
        self.quiet(self.callee, mobile)

    def test_caller_identity(self) -> None:
        """The forked INVITE shows who authenticated (1001 and its name), not what From claimed, and asserts it."""
        self.caller.invite(claimed="9999")
        self.caller.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.assertEqual(str(forked.from_.uri), f"sip:1001@{REALM}")
        self.assertEqual(forked.from_.display_name, "User 1001")
        self.assertEqual(
            forked.headers.get("P-Asserted-Identity"), f'"User 1001" <sip:1001@{REALM}>'
        )
        self.assertEqual(str(forked.to.uri), f"sip:1002@{REALM}")
        self.assertIsNone(forked.to.tag)
        self.assertEqual(forked.max_forwards, 69)
        self.assertEqual(forked.contacts[0].uri.user, "1001")
        self.assertEqual(forked.contacts[0].uri.host, "127.0.0.1")
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.caller.expect(486)

    def test_offer_points_at_relay(self) -> None:
        """The callee is offered the caller's codecs at pbx's relay port of leg b."""
        invite, leg, [forked] = self.ring()
        session = self.session()
        self.assertEqual(forked.headers.get("Content-Type"), "application/sdp")
        host, port, formats, direction = audio(forked.body)
        self.assertEqual((host, port), ("127.0.0.1", session.local_port("b")))
        self.assertTrue(RTP_MIN <= port <= RTP_MAX)
        self.assertNotEqual(session.local_port("a"), session.local_port("b"))
        self.assertEqual(formats, ["0", "8", "101"])
        self.assertEqual(direction, "sendrecv")
        self.assertNotIn(b"192.0.2.11", forked.body)
        # The relay sends the caller's media where its SDP said.
        self.assertEqual(session.leg("a").rtp.remote, ("192.0.2.11", 4000))
        self.abandon(invite)

    def test_malformed_offer(self) -> None:
        """An INVITE whose SDP does not parse gets 488 and rings nobody."""
        invite, leg = self.caller.invite(body=b"v=0\r\nthis is not sdp\r\n")
        trying, refused = self.caller.expect(100, 488)
        self.caller.ack_failure(invite, refused)
        self.quiet(self.callee)
        self.assertEqual(self.records()["a"].disposition, "FAILED")
        self.assertEqual(self.allocator.in_use, 0)


class BrokenInputTests(CallTestCase):
    """Values that would break a header, and failures inside the controller, leave nothing behind."""

    def test_line_break_in_stored_name(self) -> None:
        """A name stored with a CR/LF (before the API checked names) rings the callee with the line break blanked."""
        self.store.extensions["1001"] = attrs.evolve(self.store.extensions["1001"], name="Eve\r\nX-Evil: 1")
        invite, leg, [forked] = self.ring()
        self.assertEqual(forked.from_.display_name, "Eve  X-Evil: 1")
        self.assertIsNone(forked.headers.get("X-Evil"))
        self.abandon(invite)

    def test_failure_while_ringing_leaves_no_call(self) -> None:
        """An error while building the forked INVITE answers 500, and the call and its RTP ports are gone."""
        import pbx.calls.call

        def broken(**_: object) -> Request:
            raise ValueError("header values must not contain CR or LF")

        self.patch(pbx.calls.call, "new_invite", broken)
        invite, leg = self.caller.invite()
        trying, failed = self.caller.expect(100, 500)
        self.caller.ack_failure(invite, failed)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.allocator.in_use, 0)
        self.assertEqual(self.records()["a"].disposition, "FAILED")


class AnswerTests(CallTestCase):
    """Ringing, early media, answer and hang-up."""

    def test_ringing(self) -> None:
        """A 180 from the callee reaches the caller as 180 with pbx's To tag and Contact."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        ringing = self.caller.expect_one(180)
        self.assertTrue(ringing.to.tag)
        self.assertEqual(ringing.call_id, invite.call_id)
        self.assertEqual(ringing.contacts[0].uri.host, "127.0.0.1")
        self.assertEqual(ringing.body, b"")
        self.assertEqual([c.state for c in self.controller.calls.values()], ["ringing"])
        self.abandon(invite, (self.callee, forked))

    def test_early_media(self) -> None:
        """A 183 with SDP reaches the caller as 183 with SDP at the relay's leg-a port and the callee's codec."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 183, body=CALLEE_SDP)
        progress = self.caller.expect_one(183)
        host, port, formats, _ = audio(progress.body)
        self.assertEqual((host, port), ("127.0.0.1", self.session().local_port("a")))
        self.assertEqual(formats, ["8", "101"])
        self.assertEqual(self.session().leg("b").rtp.remote, ("192.0.2.12", 5000))
        self.abandon(invite, (self.callee, forked))

    def test_answer(self) -> None:
        """A 200 from the callee is ACKed, and the caller gets 200 with SDP at the relay, in the callee's codec."""
        invite, leg, [forked] = self.ring()
        session = self.session()
        self.callee.respond(forked, 180)
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        ack = self.callee.expect_one("ACK")
        self.assertEqual(str(ack.uri), self.callee.contact)
        self.assertEqual(ack.to.tag, self.callee.tag)
        self.assertEqual(ack.call_id, forked.call_id)
        ringing, ok = self.caller.expect(180, 200)
        self.assertEqual(ok.to.tag, ringing.to.tag)
        self.assertEqual(ok.headers.get("Content-Type"), "application/sdp")
        host, port, formats, direction = audio(ok.body)
        self.assertEqual((host, port), ("127.0.0.1", session.local_port("a")))
        self.assertEqual(formats, ["8", "101"])
        self.assertEqual(direction, "sendrecv")
        self.assertEqual(str(ok.contacts[0].uri), "sip:pbx@127.0.0.1:5060")
        self.assertEqual(session.leg("b").rtp.remote, ("192.0.2.12", 5000))
        self.caller.confirm(invite, leg, ok)
        self.assertEqual(
            [c.state for c in self.controller.calls.values()], ["confirmed"]
        )
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_answer_cancels_other_forks(self) -> None:
        """When one phone answers, the other phones that rang get CANCEL; their 487 is ACKed."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, [desk, cell] = self.ring(self.callee, mobile)
        mobile.respond(cell, 180)
        self.answer(self.callee, desk)
        cancel = mobile.expect_one("CANCEL")
        self.assertEqual(cancel.top_via.branch, cell.top_via.branch)
        self.assertEqual(str(cancel.cseq), f"{cell.cseq.number} CANCEL")
        mobile.respond(cancel, 200)
        mobile.respond(cell, 487)
        mobile.expect("ACK")
        ok = self.caller.expect(180, 180, 200)[2]
        self.assertEqual(len(self.controller.calls), 1)
        self.caller.confirm(invite, leg, ok)
        self.hang_up(leg)

    def test_late_provisional_fork_cancelled(self) -> None:
        """A phone that had not answered at all when another answered gets CANCEL once its 180 arrives."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, [desk, cell] = self.ring(self.callee, mobile)
        self.answer(self.callee, desk)
        self.quiet(mobile)
        mobile.respond(cell, 180)
        cancel = mobile.expect_one("CANCEL")
        self.assertEqual(cancel.top_via.branch, cell.top_via.branch)
        mobile.respond(cancel, 200)
        mobile.respond(cell, 487)
        mobile.expect("ACK")
        ok = self.caller.expect(180, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.hang_up(leg)

    def test_second_answer_hung_up(self) -> None:
        """A second phone that answers in the race is ACKed and sent BYE; the caller sees one answer."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, [desk, cell] = self.ring(self.callee, mobile)
        mobile.respond(cell, 180)
        self.answer(self.callee, desk)
        mobile.expect("CANCEL")
        mobile.respond(cell, 200, body=CALLEE_SDP)
        ack, bye = mobile.expect("ACK", "BYE")
        self.assertEqual(bye.to.tag, mobile.tag)
        self.assertEqual(bye.call_id, cell.call_id)
        mobile.respond(bye, 200)
        ok = self.caller.expect(180, 180, 200)[2]
        self.caller.confirm(invite, leg, ok)
        self.hang_up(leg)

    def test_callee_2xx_retransmission(self) -> None:
        """A retransmitted 200 from the callee is ACKed again and not passed on."""
        invite, leg, callee_leg = self.establish()
        forked = self.answered_invite()
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        self.quiet(self.caller)
        self.hang_up(leg)

    def test_ok_retransmitted_until_ack(self) -> None:
        """The 200 to the caller is resent after T1, 2T1, 4T1, then every T2, until the ACK comes."""
        invite, leg, [forked] = self.ring()
        self.answer(self.callee, forked)
        ok = self.caller.expect(180, 200)[1]
        start = self.clock.seconds()
        times = []
        for _ in range(int(16 / 0.25)):
            self.advance(0.25)
            for message in self.caller.received():
                self.assertEqual(describe(message), 200)
                self.assertEqual(message.body, ok.body)
                times.append(self.clock.seconds() - start)
        self.assertEqual(times, [0.5, 1.5, 3.5, 7.5, 11.5, 15.5])
        self.caller.confirm(invite, leg, ok)
        self.advance(10)
        self.quiet(self.caller)
        self.hang_up(leg)

    def test_caller_hangs_up(self) -> None:
        """The caller's BYE gets 200 and a BYE goes to the callee in its dialog."""
        invite, leg, callee_leg = self.establish()
        forked = self.answered_invite()
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.callee.expect_one("BYE")
        self.assertEqual(bye.call_id, forked.call_id)
        self.assertEqual(bye.from_.tag, forked.from_.tag)
        self.assertEqual(bye.to.tag, self.callee.tag)
        self.assertEqual(str(bye.uri), self.callee.contact)
        self.assertEqual(str(bye.cseq), "2 BYE")
        self.callee.respond(bye, 200)
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.allocator.in_use, 0)
        self.assertEqual(self.relay.sessions, 0)

    def test_callee_hangs_up(self) -> None:
        """The callee's BYE gets 200 and a BYE goes to the caller in its dialog."""
        invite, leg, callee_leg = self.establish()
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        bye = self.caller.expect_one("BYE")
        self.assertEqual(bye.call_id, invite.call_id)
        self.assertEqual(bye.to.tag, self.caller.tag)
        self.assertEqual(str(bye.uri), self.caller.contact)
        self.assertEqual(str(bye.cseq), "1 BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(self.records()["a"].hangup_side, "b")
        self.assertEqual(self.allocator.in_use, 0)

    def test_call_records(self) -> None:
        """An answered call writes records for legs a and b: answered, answer time, billable time, codec."""
        start = self.clock.seconds()
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(3)
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        answered = self.clock.seconds()
        ok = self.caller.expect(180, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.advance(42)
        self.hang_up(leg)
        records = self.records()
        self.assertEqual(sorted(records), ["a", "b"])
        a, b = records["a"], records["b"]
        self.assertEqual((a.call_id, b.call_id), (invite.call_id, forked.call_id))
        for record in (a, b):
            self.assertEqual((record.caller, record.callee), ("1001", "1002"))
            self.assertEqual(record.disposition, "ANSWERED")
            self.assertEqual(record.answer, answered)
            self.assertEqual(record.end, answered + 42)
            self.assertEqual(record.billable, 42)
            self.assertEqual(record.codecs, "PCMA")
            self.assertEqual((record.hangup_side, record.hangup_cause), ("a", "BYE"))
        self.assertEqual(a.start, start)
        self.assertEqual(a.duration, 45)

    def test_live_call_journal(self) -> None:
        """An answered call has journal entries for both legs, touched while it lasts, gone with its records."""
        installed = self.clock.seconds()  # the touches run every TOUCH_INTERVAL from here
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(3)
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        answered = self.clock.seconds()
        self.caller.confirm(invite, leg, self.caller.expect(180, 200)[1])
        entries = sorted(self.store.live_calls.values(), key=lambda e: e.leg)
        self.assertEqual([(e.call, e.leg, e.call_id, e.answer, e.touched) for e in entries],
                         [(invite.call_id, "a", invite.call_id, answered, answered),
                          (invite.call_id, "b", forked.call_id, answered, answered)])
        self.advance(TOUCH_INTERVAL)
        self.assertEqual({e.touched for e in self.store.live_calls.values()}, {installed + TOUCH_INTERVAL})
        self.hang_up(leg)
        self.assertEqual(self.store.live_calls, {})
        self.assertEqual(sorted(self.records()), ["a", "b"])


class FailureTests(CallTestCase):
    """Calls that are not answered."""

    def test_busy(self) -> None:
        """486 from every phone is passed on as 486, and the record says BUSY."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, [desk, cell] = self.ring(self.callee, mobile)
        self.callee.respond(desk, 486)
        self.callee.expect("ACK")
        self.quiet(self.caller)
        mobile.respond(cell, 486)
        mobile.expect("ACK")
        busy = self.caller.expect_one(486)
        self.caller.ack_failure(invite, busy)
        self.assertEqual(self.controller.calls, {})
        [record] = self.store.calls
        self.assertEqual(
            (record.disposition, record.answer, record.billable), ("BUSY", None, 0)
        )
        self.assertEqual(record.hangup_side, "b")
        self.assertEqual(self.allocator.in_use, 0)

    def test_best_failure(self) -> None:
        """Of several failures the caller gets the most telling: busy before not-found-here."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, [desk, cell] = self.ring(self.callee, mobile)
        self.callee.respond(desk, 404)
        self.callee.expect("ACK")
        mobile.respond(cell, 486)
        mobile.expect("ACK")
        busy = self.caller.expect_one(486)
        self.caller.ack_failure(invite, busy)

    def test_forward_busy(self) -> None:
        """With forward_busy set, a busy callee's calls ring the forward target instead."""
        self.store.extensions["1002"] = attrs.evolve(
            self.store.extensions["1002"], forward_busy="1003"
        )
        other = self.phone("1003", "192.0.2.14")
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        forwarded = other.expect_one("INVITE")
        self.assertEqual(str(forwarded.uri), other.contact)
        self.assertEqual(str(forwarded.from_.uri), f"sip:1001@{REALM}")
        self.quiet(self.caller)
        self.answer(other, forwarded)
        ok = self.caller.expect(180, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = other.expect_one("BYE")
        other.respond(bye, 200)
        self.assertEqual(self.records()["a"].callee, "1003")

    def test_ring_timeout(self) -> None:
        """After ring_timeout the phones get CANCEL and the caller 480; the record says NO ANSWER."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.advance(29.5)
        self.quiet(self.caller, self.callee)
        self.advance(0.5)
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
        timeout = self.caller.expect_one(480)
        self.caller.ack_failure(invite, timeout)
        [record] = self.store.calls
        self.assertEqual(record.disposition, "NO ANSWER")
        self.assertEqual(self.allocator.in_use, 0)

    def test_ring_timeout_forwards(self) -> None:
        """After ring_timeout with forward_no_answer set, the forward target rings."""
        self.store.extensions["1002"] = attrs.evolve(
            self.store.extensions["1002"], forward_no_answer="1003"
        )
        other = self.phone("1003", "192.0.2.14")
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(30)
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
        forwarded = other.expect_one("INVITE")
        self.caller.expect(180)
        other.respond(forwarded, 486)
        other.expect("ACK")
        busy = self.caller.expect_one(486)
        self.caller.ack_failure(invite, busy)
        self.assertEqual(self.records()["a"].callee, "1003")

    def test_caller_cancels(self) -> None:
        """The caller's CANCEL gets 200, the INVITE 487, and the ringing phones CANCEL."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, [desk, cell] = self.ring(self.callee, mobile)
        self.callee.respond(desk, 180)
        mobile.respond(cell, 180)
        self.caller.expect(180, 180)
        cancel = self.caller.cancel(invite)
        ok, terminated = self.caller.expect(200, 487)
        self.assertEqual(str(ok.cseq), f"{invite.cseq.number} CANCEL")
        self.assertEqual(ok.to.tag, terminated.to.tag)
        self.assertEqual(ok.top_via.branch, cancel.top_via.branch)
        self.assertEqual(str(terminated.cseq), f"{invite.cseq.number} INVITE")
        self.caller.ack_failure(invite, terminated)
        for phone, forked in ((self.callee, desk), (mobile, cell)):
            theirs = phone.expect_one("CANCEL")
            phone.respond(theirs, 200)
            phone.respond(forked, 487)
            phone.expect("ACK")
        self.quiet(self.caller)
        [record] = self.store.calls
        self.assertEqual((record.disposition, record.hangup_side), ("CANCELLED", "a"))

    def test_cancel_unknown(self) -> None:
        """A CANCEL matching no INVITE gets 481."""
        invite, leg = self.caller.invite(authenticate=False)
        self.caller.expect(407)
        stray = Leg("nowhere@192.0.2.11", leg.local, leg.remote, leg.target, 1)
        self.caller.send(self.caller.request_to("CANCEL", leg.target, stray, cseq=1))
        self.caller.expect(481)

    def refused(self, number: str, status: int) -> Response:
        """Call ``number``; the caller must get ``status`` (which it ACKs) and nobody rings."""
        invite, leg = self.caller.invite(number)
        trying, response = self.caller.expect(100, status)
        self.assertTrue(response.to.tag)
        self.caller.ack_failure(invite, response)
        self.quiet(self.callee)
        self.assertEqual(self.allocator.in_use, 0)
        assert isinstance(response, Response)
        return response

    def test_not_registered(self) -> None:
        """A callee with no registered phone: 480."""
        self.refused("1003", 480)

    def test_not_registered_forwards(self) -> None:
        """A callee with no registered phone and forward_no_answer set: the target rings."""
        self.store.extensions["1003"] = attrs.evolve(
            self.store.extensions["1003"], forward_no_answer="1002"
        )
        invite, leg, [forked] = self.ring(number="1003")
        self.callee.respond(forked, 603)
        self.callee.expect("ACK")
        declined = self.caller.expect_one(603)
        self.caller.ack_failure(invite, declined)

    def test_unknown(self) -> None:
        """A number that is no extension: 404."""
        self.refused("1999", 404)

    def test_disabled(self) -> None:
        """A disabled extension is unknown: 404."""
        self.store.extensions["1002"] = attrs.evolve(
            self.store.extensions["1002"], enabled=False
        )
        self.refused("1002", 404)

    def test_dnd(self) -> None:
        """A callee in do-not-disturb: 486, and no phone rings."""
        self.store.extensions["1002"] = attrs.evolve(
            self.store.extensions["1002"], dnd=True
        )
        self.assertEqual(self.refused("1002", 486).reason, "Do Not Disturb")

    def test_forward_always_chain(self) -> None:
        """forward_always is followed along a chain (1002 -> 1003 -> 1004)."""
        self.store.extensions["1002"] = attrs.evolve(
            self.store.extensions["1002"], forward_always="1003"
        )
        self.store.extensions["1003"] = attrs.evolve(
            self.store.extensions["1003"], forward_always="1004"
        )
        last = self.phone("1004", "192.0.2.15")
        invite, leg, [forked] = self.ring(last)
        self.assertEqual(str(forked.to.uri), f"sip:1004@{REALM}")
        self.quiet(self.callee)
        last.respond(forked, 486)
        last.expect("ACK")
        self.caller.ack_failure(invite, self.caller.expect_one(486))

    def test_forward_loop(self) -> None:
        """A forward_always loop (1002 -> 1003 -> 1002) is refused with 482."""
        self.store.extensions["1002"] = attrs.evolve(
            self.store.extensions["1002"], forward_always="1003"
        )
        self.store.extensions["1003"] = attrs.evolve(
            self.store.extensions["1003"], forward_always="1002"
        )
        self.refused("1002", 482)

    def test_dialplan_hangup(self) -> None:
        """A hangup route refuses the call with its status and reason."""
        self.controller.config = attrs.evolve(
            self.config,
            dialplan=Dialplan(
                (Route("_19XX", compile_pattern("_19XX"), HangUp(403, "Barred")),)
            ),
        )
        self.assertEqual(self.refused("1900", 403).reason, "Barred")

    def test_dialplan_application(self) -> None:
        """An application route whose application is not registered gets 404."""
        self.controller.config = attrs.evolve(
            self.config,
            dialplan=Dialplan(
                (Route("*97", compile_pattern("*97"), ToApplication("voicemail", {})),)
            ),
        )
        self.refused("*97", 404)

    def test_public_route(self) -> None:
        """A public route rings without authentication; the caller is who From says."""
        from pbx.calls.dialplan import ToExtension

        self.controller.config = attrs.evolve(
            self.config,
            dialplan=Dialplan(
                (
                    Route(
                        "100", compile_pattern("100"), ToExtension("1002"), public=True
                    ),
                )
            ),
        )
        invite, leg = self.caller.invite("100", authenticate=False, claimed="0555")
        self.caller.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.assertEqual(forked.from_.uri.user, "0555")
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.caller.ack_failure(invite, self.caller.expect_one(486))

    def test_no_media_ports(self) -> None:
        """With every RTP port in use the caller gets 503 and nothing rings."""
        taken = [self.allocator.allocate() for _ in range(self.allocator.capacity)]
        invite, leg = self.caller.invite("1002")
        trying, unavailable = self.caller.expect(100, 503)
        self.caller.ack_failure(invite, unavailable)
        self.quiet(self.callee)
        self.assertEqual(self.allocator.in_use, self.allocator.capacity)
        for port in taken:
            self.allocator.release(port)


class InDialogTests(CallTestCase):
    """Requests within an answered call: re-INVITE, glare, INFO, unknown dialogs."""

    def test_hold(self) -> None:
        """A sendonly re-INVITE from the caller reaches the callee as sendonly; its recvonly 200 is ACKed and answered."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendonly"))
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        self.assertEqual(reinvite.to.tag, self.callee.tag)
        self.assertEqual(str(reinvite.cseq), "2 INVITE")
        host, port, formats, direction = audio(reinvite.body)
        self.assertEqual(
            (host, port, direction), ("127.0.0.1", session.local_port("b"), "sendonly")
        )
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "recvonly"))
        ack = self.callee.expect_one("ACK")
        self.assertEqual(str(ack.cseq), "2 ACK")
        ok = self.caller.expect_one(200)
        self.assertEqual(str(ok.cseq), f"{leg.cseq} INVITE")
        host, port, formats, direction = audio(ok.body)
        self.assertEqual(
            (host, port, direction), ("127.0.0.1", session.local_port("a"), "recvonly")
        )
        self.assertTrue(session.leg("a").rtp.held)
        self.assertFalse(session.leg("b").rtp.held)
        self.caller.ack_reinvite(leg)
        # Unhold: sendrecv again.
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendrecv", 3))
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        self.assertEqual(audio(reinvite.body)[3], "sendrecv")
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "sendrecv", 3))
        self.callee.expect("ACK")
        self.assertEqual(audio(self.caller.expect_one(200).body)[3], "sendrecv")
        self.assertFalse(session.leg("a").rtp.held)
        self.hang_up(leg)

    def reinvite_answered(self, leg: Leg) -> Response:
        """The caller puts the call on hold and the callee accepts; returns the 200 the caller got."""
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendonly"))
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        assert isinstance(reinvite, Request)
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "recvonly"))
        self.callee.expect("ACK")
        self.last_reinvite = reinvite
        ok = self.caller.expect_one(200)
        assert isinstance(ok, Response)
        return ok

    def test_reinvite_ok_retransmitted(self) -> None:
        """The 200 to a re-INVITE is resent after T1, 2T1, 4T1... until the ACK comes (§13.3.1.4)."""
        invite, leg, callee_leg = self.establish()
        ok = self.reinvite_answered(leg)
        start, times = self.clock.seconds(), []
        for _ in range(int(8 / 0.25)):
            self.advance(0.25)
            for message in self.caller.received():
                self.assertEqual((describe(message), message.body), (200, ok.body))
                times.append(self.clock.seconds() - start)
        self.assertEqual(times, [0.5, 1.5, 3.5, 7.5])
        self.caller.ack_reinvite(leg)
        self.advance(10)
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_reinvite_ok_given_up(self) -> None:
        """Without an ACK the re-INVITE's 200 is resent for 64*T1 at most."""
        invite, leg, callee_leg = self.establish()
        self.reinvite_answered(leg)
        self.advance(timers.TIMER_H)
        self.assertEqual({describe(m) for m in self.caller.received()}, {200})
        self.advance(10)
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_reinvite_2xx_retransmission(self) -> None:
        """A retransmitted 200 to pbx's re-INVITE is ACKed again and not answered twice."""
        invite, leg, callee_leg = self.establish()
        self.reinvite_answered(leg)
        self.caller.ack_reinvite(leg)
        self.callee.respond(
            self.last_reinvite, 200, body=hold_sdp(CALLEE_SDP, "recvonly")
        )
        ack = self.callee.expect_one("ACK")
        self.assertEqual(ack.cseq.number, self.last_reinvite.cseq.number)
        self.quiet(self.caller)
        self.hang_up(leg)

    def test_callee_reinvite(self) -> None:
        """A re-INVITE from the callee reaches the caller in the caller's dialog."""
        invite, leg, callee_leg = self.establish()
        self.callee.in_dialog(
            callee_leg, "INVITE", body=hold_sdp(CALLEE_SDP, "sendonly")
        )
        self.callee.expect(100)
        reinvite = self.caller.expect_one("INVITE")
        self.assertEqual(
            (reinvite.call_id, reinvite.to.tag), (invite.call_id, self.caller.tag)
        )
        self.assertEqual(audio(reinvite.body)[3], "sendonly")
        self.caller.respond(reinvite, 200, body=hold_sdp(CALLER_SDP, "recvonly"))
        self.caller.expect("ACK")
        self.assertEqual(audio(self.callee.expect_one(200).body)[3], "recvonly")
        self.callee.ack_reinvite(callee_leg)
        self.advance(5)
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_reinvite_refused(self) -> None:
        """A failure answer to the relayed re-INVITE is passed back to the offerer."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendonly"))
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        self.callee.respond(reinvite, 488)
        self.callee.expect("ACK")
        refused = self.caller.expect_one(488)
        self.assertEqual(str(refused.cseq), f"{leg.cseq} INVITE")
        self.assertEqual(
            [c.state for c in self.controller.calls.values()], ["confirmed"]
        )
        self.hang_up(leg)

    def test_glare(self) -> None:
        """A re-INVITE while another offer is pending gets 491."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendonly"))
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        self.callee.in_dialog(
            callee_leg, "INVITE", body=hold_sdp(CALLEE_SDP, "sendonly")
        )
        glare = self.callee.expect(100, 491)[1]
        self.assertEqual(str(glare.cseq), f"{callee_leg.cseq} INVITE")
        self.quiet(self.caller)
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "recvonly"))
        self.callee.expect("ACK")
        self.caller.expect(200)
        self.hang_up(leg)

    def test_malformed_reoffer(self) -> None:
        """A re-INVITE whose SDP does not parse gets 488 and goes no further."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "INVITE", body=b"v=0\r\nnonsense\r\n")
        self.caller.expect(100, 488)
        self.quiet(self.callee)
        self.assertEqual(
            [c.state for c in self.controller.calls.values()], ["confirmed"]
        )
        self.hang_up(leg)

    def test_update(self) -> None:
        """An UPDATE with SDP is relayed as UPDATE and its answer passed back (no ACK)."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "UPDATE", body=hold_sdp(CALLER_SDP, "sendonly"))
        update = self.callee.expect_one("UPDATE")
        self.assertEqual(audio(update.body)[3], "sendonly")
        self.callee.respond(update, 200, body=hold_sdp(CALLEE_SDP, "recvonly"))
        self.quiet(self.callee)
        ok = self.caller.expect_one(200)
        self.assertEqual(audio(ok.body)[3], "recvonly")
        self.hang_up(leg)

    def test_info_relayed(self) -> None:
        """INFO (DTMF) from the caller is sent to the callee and its answer passed back."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(
            leg,
            "INFO",
            body=b"Signal=5\r\nDuration=160\r\n",
            extra=[("Content-Type", "application/dtmf-relay")],
        )
        info = self.callee.expect_one("INFO")
        self.assertEqual(info.body, b"Signal=5\r\nDuration=160\r\n")
        self.assertEqual(info.headers.get("Content-Type"), "application/dtmf-relay")
        self.assertEqual(info.to.tag, self.callee.tag)
        self.quiet(self.caller)
        self.callee.respond(info, 200)
        self.assertEqual(str(self.caller.expect_one(200).cseq), f"{leg.cseq} INFO")
        self.hang_up(leg)

    def test_unknown_dialog(self) -> None:
        """A BYE with a To tag of no dialog gets 481."""
        invite, leg, callee_leg = self.establish()
        stray = attrs.evolve(leg, remote=f"<sip:1002@{REALM}>;tag=not-ours")
        self.caller.in_dialog(stray, "BYE")
        self.caller.expect(481)
        self.quiet(self.callee)
        self.assertEqual(len(self.controller.calls), 1)
        self.hang_up(leg)

    def test_wrong_from_tag(self) -> None:
        """A BYE with our To tag but another From tag is not in the dialog: 481 (RFC 3261 §12.2.2)."""
        invite, leg, callee_leg = self.establish()
        stray = attrs.evolve(leg, local=f"<sip:1001@{REALM}>;tag=somebody-else")
        self.caller.in_dialog(stray, "BYE")
        self.caller.expect(481)
        self.quiet(self.callee)
        self.assertEqual(len(self.controller.calls), 1)
        self.hang_up(leg)

    def test_no_dialog_without_tag(self) -> None:
        """An in-dialog method without a To tag gets 481."""
        invite, leg = self.caller.invite(authenticate=False)
        self.caller.expect(407)
        self.caller.send(
            self.caller.request_to(
                "BYE", leg.target, attrs.evolve(leg, call_id="x@192.0.2.11")
            )
        )
        self.caller.expect(481)

    def test_cseq_out_of_order(self) -> None:
        """An in-dialog request with a CSeq below the last one gets 500."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "INFO")
        self.callee.respond(self.callee.expect_one("INFO"), 200)
        self.caller.expect(200)
        leg.cseq = 0
        self.caller.in_dialog(leg, "INFO")
        self.assertEqual(self.caller.expect_one(500).reason, "CSeq Out of Order")
        leg.cseq = 5
        self.hang_up(leg)

    def test_prack(self) -> None:
        """A reliable 180 (Require: 100rel, RSeq) is PRACKed once, in the early dialog."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180, extra=[("Require", "100rel"), ("RSeq", "1")])
        prack = self.callee.expect_one("PRACK")
        self.assertEqual(prack.headers.get("RAck"), f"1 {forked.cseq.number} INVITE")
        self.assertEqual(
            (prack.call_id, prack.to.tag), (forked.call_id, self.callee.tag)
        )
        self.assertEqual(str(prack.uri), self.callee.contact)
        self.assertEqual(str(prack.cseq), f"{forked.cseq.number + 1} PRACK")
        self.callee.respond(prack, 200)
        ringing = self.caller.expect_one(180)
        self.assertEqual(ringing.headers.get_all("Require"), [])
        # A retransmission of the same reliable response is not PRACKed again.
        self.callee.respond(forked, 180, extra=[("Require", "100rel"), ("RSeq", "1")])
        self.quiet(self.callee)
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        ack = self.callee.expect_one("ACK")
        self.assertEqual(str(ack.cseq), f"{forked.cseq.number} ACK")
        ok = self.caller.expect(180, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.callee.expect_one("BYE")
        self.assertEqual(str(bye.cseq), f"{forked.cseq.number + 2} BYE")
        self.callee.respond(bye, 200)

    def test_prack_method_from_phone(self) -> None:
        """A PRACK from a phone (pbx sends no reliable provisional responses) gets 481."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "PRACK")
        self.caller.expect(481)
        self.hang_up(leg)


class SessionTimerTests(CallTestCase):
    """RFC 4028 session timers."""

    # No RTP flows in these tests: keep the media watchdog out of the way.
    calls_config = CallsConfig(
        ring_timeout=30, media_timeout=3600, min_session_expires=90
    )

    def test_too_small(self) -> None:
        """A Session-Expires below Min-SE gets 422 with our Min-SE, and nobody rings."""
        invite, leg = self.caller.invite(
            extra=[("Session-Expires", "60"), ("Supported", "timer")]
        )
        trying, small = self.caller.expect(100, 422)
        self.assertEqual(small.headers.get("Min-SE"), "90")
        self.assertTrue(small.to.tag)
        self.caller.ack_failure(invite, small)
        self.quiet(self.callee)
        self.assertEqual(self.allocator.in_use, 0)

    def test_malformed(self) -> None:
        """A Session-Expires that is not a number gets 400."""
        invite, leg = self.caller.invite(extra=[("Session-Expires", "soon")])
        trying, bad = self.caller.expect(100, 400)
        self.caller.ack_failure(invite, bad)
        self.quiet(self.callee)

    def establish_timed(self, expires: int = 120) -> tuple[Request, Leg, Response]:
        """A confirmed call whose caller asked for a session interval; returns the 200 too."""
        invite, leg, [forked] = self.ring(
            extra=[
                ("Session-Expires", f"{expires};refresher=uac"),
                ("Supported", "timer"),
            ]
        )
        self.answer(self.callee, forked)
        ok = self.caller.expect(180, 200)[1]
        assert isinstance(ok, Response)
        self.caller.confirm(invite, leg, ok)
        return invite, leg, ok

    def test_accepted(self) -> None:
        """An acceptable interval is echoed in the 200 with the caller as refresher, and Require: timer."""
        invite, leg, ok = self.establish_timed(120)
        self.assertEqual(ok.headers.get("Session-Expires"), "120;refresher=uac")
        self.assertEqual(ok.headers.get_all("Require"), ["timer"])
        self.hang_up(leg)

    def test_expiry(self) -> None:
        """Without a refresh within the interval, pbx ends the call with BYE to both phones."""
        invite, leg, ok = self.establish_timed(120)
        self.advance(119)
        self.quiet(self.caller, self.callee)
        self.advance(1)
        bye_a = self.caller.expect_one("BYE")
        bye_b = self.callee.expect_one("BYE")
        self.caller.respond(bye_a, 200)
        self.callee.respond(bye_b, 200)
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.records()["a"].hangup_cause, "session timer expired")
        self.assertEqual(self.allocator.in_use, 0)

    def test_refresh(self) -> None:
        """A refreshing re-INVITE from the caller restarts the interval."""
        invite, leg, ok = self.establish_timed(120)
        self.advance(100)
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendrecv"))
        reinvite = self.callee.expect_one("INVITE")
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "sendrecv"))
        self.callee.expect("ACK")
        refreshed = self.caller.expect(100, 200)[1]
        self.assertEqual(refreshed.headers.get("Session-Expires"), "120;refresher=uac")
        self.caller.ack_reinvite(leg)
        self.advance(100)
        self.assertEqual(len(self.controller.calls), 1)
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_caller_without_timer_support(self) -> None:
        """Without a caller able to refresh (or asking for timers at all) no session timer runs: the call lasts."""
        for extra in (
            [],
            [("Session-Expires", "120")],
            [("Session-Expires", "120;refresher=uas"), ("Supported", "timer")],
        ):
            invite, leg, [forked] = self.ring(extra=extra)
            self.answer(self.callee, forked)
            ok = self.caller.expect(180, 200)[1]
            self.assertIsNone(ok.headers.get("Session-Expires"))
            self.assertEqual(ok.headers.get_all("Require"), [])
            self.caller.confirm(invite, leg, ok)
            self.advance(300)
            self.quiet(self.caller, self.callee)
            self.assertEqual(len(self.controller.calls), 1)
            self.hang_up(leg)


class DeadCallTests(CallTestCase):
    """Calls ended because a phone went away: media watchdog and missing ACK."""

    def test_media_timeout(self) -> None:
        """No RTP either way for media_timeout seconds: BYE to both phones and a 'media timeout' record."""
        invite, leg, callee_leg = self.establish()
        self.advance(55)
        self.quiet(self.caller, self.callee)
        self.advance(MEDIA_CHECK_INTERVAL)
        bye_a = self.caller.expect_one("BYE")
        bye_b = self.callee.expect_one("BYE")
        self.caller.respond(bye_a, 200)
        self.callee.respond(bye_b, 200)
        record = self.records()["a"]
        self.assertEqual(
            (record.disposition, record.hangup_side, record.hangup_cause),
            ("ANSWERED", "pbx", "media timeout"),
        )
        self.assertEqual(self.allocator.in_use, 0)

    def test_media_flowing(self) -> None:
        """A call whose RTP flows is not ended by the watchdog."""
        invite, leg, callee_leg = self.establish()
        session = self.session()
        for _ in range(30):
            self.advance(5)
            session.leg("a").rtp.datagramReceived(
                b"\x80" + b"\x00" * 171, ("192.0.2.11", 4000)
            )
        self.assertEqual(len(self.controller.calls), 1)
        # The packets were relayed to the callee's address.
        relayed = self.clock.udpPorts[session.local_port("b")].written
        self.assertEqual(len(relayed), 30)
        self.assertEqual({addr for _, addr in relayed}, {("192.0.2.12", 5000)})
        self.quiet(self.caller, self.callee)
        self.hang_up(leg)

    def test_media_timeout_counts_from_answer(self) -> None:
        """A call that rang longer than media_timeout is not ended before its media had time to start."""
        self.controller.config = attrs.evolve(
            self.config, calls=attrs.evolve(self.calls_config, ring_timeout=120)
        )
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(90)
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        ok = self.caller.expect(180, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.advance(MEDIA_CHECK_INTERVAL)
        self.quiet(self.caller, self.callee)
        self.assertEqual(len(self.controller.calls), 1)
        self.hang_up(leg)

    def test_no_ack(self) -> None:
        """A caller that never ACKs the 200 is hung up after 64*T1: BYE to both phones."""
        invite, leg, [forked] = self.ring()
        self.answer(self.callee, forked)
        ok = self.caller.expect(180, 200)[1]
        self.advance(timers.TIMER_H - 0.25)
        self.assertEqual({describe(m) for m in self.caller.received()}, {200})
        self.quiet(self.callee)
        self.advance(0.25)
        bye_a = self.caller.expect_one("BYE")
        self.assertEqual(bye_a.to.tag, self.caller.tag)
        self.assertEqual(bye_a.from_.tag, ok.to.tag)
        bye_b = self.callee.expect_one("BYE")
        self.caller.respond(bye_a, 200)
        self.callee.respond(bye_b, 200)
        self.assertEqual(self.records()["a"].hangup_cause, "no ACK")
        self.assertEqual(self.allocator.in_use, 0)

    def test_shutdown(self) -> None:
        """Stopping the controller hangs up answered calls and refuses ringing ones with 503."""
        other = self.phone("1003", "192.0.2.14")
        invite, leg, callee_leg = self.establish()
        second, second_leg = self.caller.invite("1003")
        self.caller.expect(100)
        forked = other.expect_one("INVITE")
        other.respond(forked, 180)
        self.caller.expect(180)
        self.controller.stop()
        bye_a, unavailable = self.caller.expect("BYE", 503)
        self.assertEqual(unavailable.call_id, second.call_id)
        self.caller.ack_failure(second, unavailable)
        bye_b = self.callee.expect_one("BYE")
        self.caller.respond(bye_a, 200)
        self.callee.respond(bye_b, 200)
        cancel = other.expect_one("CANCEL")
        other.respond(cancel, 200)
        other.respond(forked, 487)
        other.expect("ACK")
        causes = {(r.call_id, r.leg): r.hangup_cause for r in self.store.calls}
        self.assertEqual(causes[(invite.call_id, "a")], "shutdown")
        self.assertEqual(causes[(second.call_id, "a")], "503 Service Unavailable")
