"""
Tests for diverting calls nobody will answer to an application
(:attr:`pbx.calls.controller.CallController.diverters`), in memory.

The PBX is the one of :mod:`support.app_calls` (scripted phones, media
services); here a fake voicemail application notes every call it gets, and
a fake diverter sends every failing call of an extension to it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from pbx.calls.app_call import ApplicationCall
from pbx.calls.dialplan import ToApplication
from pbx.records import ExtensionRecord
from pbx.sip.message import Request, Response

from support.divert import Application, Diverter, DivertTestCase
from support.phones import CALLEE_SDP, audio


class DiversionTests(DivertTestCase):
    """Each reason a call fails reaches the application with the right arguments."""

    def test_no_answer(self) -> None:
        """
        After the ring timeout the phone gets CANCEL and the caller a 200
        from the application, in the dialog of the 180 it saw; records say
        NO ANSWER ("diverted: no_answer", to voicemail) and then VOICEMAIL.
        """
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.advance(29.75)
        self.assertEqual(self.voicemail.calls, [])
        self.advance(0.25)
        self.cancelled_by_pbx(forked)
        ok = self.caller.expect_one(200)
        self.caller.confirm(invite, leg, ok)
        self.voicemail_got("1002", "no_answer")
        self.assertEqual(self.diverter.asked, [("1002", "no_answer")])
        self.bye(leg)
        diverted, answered = self.store.calls
        self.assertEqual(
            (diverted.call_id, diverted.leg, diverted.disposition, diverted.hangup_side, diverted.hangup_cause,
             diverted.answer, diverted.application),
            (invite.call_id, "a", "NO ANSWER", "pbx", "diverted: no_answer", None, "voicemail"),
        )
        self.assertEqual(
            (answered.call_id, answered.leg, answered.callee, answered.disposition, answered.hangup_side,
             answered.application),
            (invite.call_id, "a", "1002", "VOICEMAIL", "a", "voicemail"),
        )
        self.assertEqual(answered.start, diverted.end)

    def test_same_dialog(self) -> None:
        """The 200 carries the To tag of the 180, and the caller's BYE in that dialog ends the application."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        ringing = self.caller.expect_one(180)
        self.advance(30)
        self.cancelled_by_pbx(forked)
        ok = self.caller.expect_one(200)
        self.assertEqual(ok.to.tag, ringing.to.tag)
        self.assertEqual(ok.call_id, invite.call_id)
        self.caller.confirm(invite, leg, ok)
        self.assertEqual(leg.remote, ok.headers.get("To"))
        [call] = self.controller.calls.values()
        self.assertIsInstance(call, ApplicationCall)
        self.bye(leg)
        self.assertEqual(self.controller.calls, {})

    def test_busy(self) -> None:
        """Every phone busy: the caller is answered by the application (reason busy); the record says BUSY."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        ok = self.caller.expect_one(200)
        self.caller.confirm(invite, leg, ok)
        self.voicemail_got("1002", "busy")
        self.bye(leg)
        diverted = self.store.calls[0]
        self.assertEqual(
            (diverted.disposition, diverted.hangup_side, diverted.hangup_cause),
            ("BUSY", "b", "diverted: busy"),
        )

    def test_other_application(self) -> None:
        """A call diverted to an application other than voicemail is recorded ANSWERED, naming that application."""
        menu = Application("menu")
        self.controller.applications["menu"] = menu
        self.controller.diverters.insert(0, Diverter("menu"))
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        ok = self.caller.expect_one(200)
        self.caller.confirm(invite, leg, ok)
        self.bye(leg)
        self.assertEqual((len(menu.calls), self.voicemail.calls), (1, []))
        self.assertEqual(
            [(r.leg, r.disposition, r.application) for r in self.store.calls],
            [("a", "BUSY", "menu"), ("a", "ANSWERED", "menu")],
        )

    def test_decline_is_busy(self) -> None:
        """A 603 Decline counts as busy."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 603)
        self.callee.expect("ACK")
        self.caller.confirm(invite, leg, self.caller.expect_one(200))
        self.voicemail_got("1002", "busy")
        self.bye(leg)

    def test_unreachable_is_unavailable(self) -> None:
        """Phones that fail otherwise (480 from the phone) make the call unavailable."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 480)
        self.callee.expect("ACK")
        self.caller.confirm(invite, leg, self.caller.expect_one(200))
        self.voicemail_got("1002", "unavailable")
        self.bye(leg)

    def test_dnd(self) -> None:
        """An extension in do-not-disturb: nothing rings, the caller is answered by the application (reason dnd)."""
        self.extension("1002", dnd=True)
        invite, leg = self.caller.invite("1002")
        ok = self.caller.expect(100, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.quiet(self.callee)
        self.voicemail_got("1002", "dnd")
        self.bye(leg)
        [record] = self.store.calls
        self.assertEqual((record.callee, record.disposition, record.application),
                         ("1002", "VOICEMAIL", "voicemail"))

    def test_unregistered(self) -> None:
        """An extension with no registered phone: the application gets the call (reason unavailable)."""
        invite, leg = self.caller.invite("1003")
        ok = self.caller.expect(100, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.voicemail_got("1003", "unavailable")
        self.bye(leg)

    def test_forward_always_then_divert(self) -> None:
        """An always-forwarded extension is diverted as its final target."""
        self.extension("1002", forward_always="1003")
        invite, leg = self.caller.invite("1002")
        self.caller.confirm(invite, leg, self.caller.expect(100, 200)[1])
        self.quiet(self.callee)
        self.voicemail_got("1003", "unavailable")
        self.bye(leg)


class ForwardTests(DivertTestCase):
    """Forwards come first; a forward target that fails is diverted as itself."""

    def test_forward_busy_applies(self) -> None:
        """With forward_busy set, the target rings; only when it is busy too is the call diverted, for it."""
        self.extension("1002", forward_busy="1003")
        other = self.phone("1003", "192.0.2.14")
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.assertEqual(self.diverter.asked, [])
        forwarded = other.expect_one("INVITE")
        other.respond(forwarded, 486)
        other.expect("ACK")
        self.caller.confirm(invite, leg, self.caller.expect_one(200))
        self.voicemail_got("1003", "busy")
        self.bye(leg)

    def test_forward_no_answer_applies(self) -> None:
        """With forward_no_answer set, the target rings after the timeout and is diverted at its own timeout."""
        self.extension("1002", forward_no_answer="1003")
        other = self.phone("1003", "192.0.2.14")
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(30)
        self.cancelled_by_pbx(forked)
        forwarded = other.expect_one("INVITE")
        other.respond(forwarded, 180)
        self.advance(30)
        cancel = other.expect_one("CANCEL")
        other.respond(cancel, 200)
        other.respond(forwarded, 487)
        other.expect("ACK")
        ok = self.caller.expect(180, 180, 200)[2]
        self.caller.confirm(invite, leg, ok)
        self.voicemail_got("1003", "no_answer")
        self.bye(leg)

    def test_forward_target_unregistered(self) -> None:
        """A busy forward to an extension with no phone is diverted for that extension, as unavailable."""
        self.extension("1002", forward_busy="1004")
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.caller.confirm(invite, leg, self.caller.expect_one(200))
        self.voicemail_got("1004", "unavailable")
        self.bye(leg)

    def test_forward_target_dnd(self) -> None:
        """A no-answer forward to an extension in do-not-disturb is diverted for it, as dnd."""
        self.extension("1002", forward_no_answer="1004")
        self.extension("1004", dnd=True)
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(30)
        self.cancelled_by_pbx(forked)
        self.caller.confirm(invite, leg, self.caller.expect(180, 200)[1])
        self.voicemail_got("1004", "dnd")
        self.bye(leg)

    def test_forward_target_unknown(self) -> None:
        """A busy forward to a number that is no extension leaves the call to the extension itself: busy."""
        self.extension("1002", forward_busy="1999")
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.caller.confirm(invite, leg, self.caller.expect_one(200))
        self.voicemail_got("1002", "busy")
        self.bye(leg)

    def test_unregistered_forward_target_unregistered(self) -> None:
        """An unregistered extension forwarding to another unregistered one is diverted for the latter."""
        self.extension("1003", forward_no_answer="1004")
        invite, leg = self.caller.invite("1003")
        self.caller.confirm(invite, leg, self.caller.expect(100, 200)[1])
        self.voicemail_got("1004", "unavailable")
        self.bye(leg)

    def test_busy_forward_loop(self) -> None:
        """Busy forwards in a circle (1002 -> 1003 -> 1002) ring each once, then divert the last."""
        self.extension("1002", forward_busy="1003")
        self.extension("1003", forward_busy="1002")
        other = self.phone("1003", "192.0.2.14")
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        forwarded = other.expect_one("INVITE")
        other.respond(forwarded, 486)
        other.expect("ACK")
        self.quiet(self.callee)
        self.caller.confirm(invite, leg, self.caller.expect_one(200))
        self.voicemail_got("1003", "busy")
        self.bye(leg)


class DiverterTests(DivertTestCase):
    """Which diverter decides, and what happens when none does."""

    def test_order(self) -> None:
        """Diverters are asked in order; one answering None passes, the first answer wins."""
        self.controller.diverters[:] = [Diverter(numbers=()), Diverter("voicemail"), Diverter("other")]
        invite, leg = self.caller.invite("1003")
        self.caller.confirm(invite, leg, self.caller.expect(100, 200)[1])
        self.assertEqual([d.asked for d in self.controller.diverters],
                         [[("1003", "unavailable")], [("1003", "unavailable")], []])
        self.voicemail_got("1003", "unavailable")
        self.bye(leg)

    def refused(self, number: str, status: int) -> Response:
        """Calling ``number`` is refused with ``status`` as if there were no diverter."""
        invite, leg = self.caller.invite(number)
        response = self.caller.expect(100, status)[1]
        self.caller.ack_failure(invite, response)
        self.assertEqual(self.voicemail.calls, [])
        self.assertEqual(self.controller.calls, {})
        assert isinstance(response, Response)
        return response

    def test_declined(self) -> None:
        """When every diverter answers None, the call fails as before (480)."""
        self.controller.diverters[:] = [Diverter(numbers=())]
        self.refused("1003", 480)

    def test_raises(self) -> None:
        """A diverter that raises is logged and the call fails normally; later diverters are not asked."""
        def broken(callee: str, reason: str) -> ToApplication | None:
            raise RuntimeError("diverter bug")

        later = Diverter()
        self.controller.diverters[:] = [broken, later]
        self.extension("1002", dnd=True)
        self.assertEqual(self.refused("1002", 486).reason, "Do Not Disturb")
        self.assertEqual(later.asked, [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_not_an_action(self) -> None:
        """A diverter answering something other than a ToApplication is ignored: the call fails normally."""
        self.controller.diverters[:] = [lambda callee, reason: "voicemail"]
        self.refused("1003", 480)

    def test_unknown_application(self) -> None:
        """A diverter naming an application nobody registered leaves the call to fail normally."""
        self.controller.diverters[:] = [Diverter("nosuch")]
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        busy = self.caller.expect_one(486)
        self.caller.ack_failure(invite, busy)
        [record] = self.store.calls
        self.assertEqual((record.disposition, record.hangup_cause), ("BUSY", "486"))

    def test_not_found_not_diverted(self) -> None:
        """A number that is no extension is not offered to the diverters (404)."""
        self.refused("1999", 404)
        self.assertEqual(self.diverter.asked, [])


class HandOffTests(DivertTestCase):
    """CANCEL and late answers around the hand-off to the application."""

    def test_cancel_during_forward_lookup(self) -> None:
        """
        A CANCEL while the forward target is being looked up gets 200 and
        487; once the lookup ends, nothing is diverted and nothing rings.
        """
        self.extension("1002", forward_busy="1004")
        pending: list[Deferred[ExtensionRecord | None]] = []
        store_lookup = self.controller.lookup

        def lookup(number: str) -> Deferred[ExtensionRecord | None]:
            if number != "1004":
                return store_lookup(number)
            d: Deferred[ExtensionRecord | None] = Deferred()
            pending.append(d)
            return d

        self.controller.lookup = lookup
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.caller.expect(180)
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.assertEqual(len(pending), 1)
        self.caller.cancel(invite)
        ok, terminated = self.caller.expect(200, 487)
        self.caller.ack_failure(invite, terminated)
        pending[0].callback(self.store.extensions["1004"])
        self.deliver()
        self.quiet(self.caller, self.callee)
        self.assertEqual(self.diverter.asked, [])
        self.assertEqual(self.voicemail.calls, [])
        [record] = self.store.calls
        self.assertEqual((record.disposition, record.hangup_side), ("CANCELLED", "a"))

    def test_cancel_after_hand_off(self) -> None:
        """
        A CANCEL that crosses pbx's 200 matches the application's call: it
        gets 200 (RFC 3261 §9.2: too late to end the INVITE), and the call
        goes on.
        """
        invite, leg, [forked] = self.ring()
        [ringing] = self.controller.calls.values()
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        ok = self.caller.expect_one(200)
        [call] = self.controller.calls.values()
        self.assertIsInstance(call, ApplicationCall)
        self.assertIs(call.invite, ringing.invite)
        self.assertEqual(call.a_tag, ringing.a_tag)
        self.caller.cancel(invite)
        cancelled = self.caller.expect_one(200)
        self.assertEqual(cancelled.cseq.method, "CANCEL")
        self.assertEqual(cancelled.to.tag, ok.to.tag)
        self.caller.confirm(invite, leg, ok)
        self.assertEqual([c.state for c in self.controller.calls.values()], ["confirmed"])
        self.bye(leg)

    def test_late_answer_hung_up(self) -> None:
        """A phone that answers just after the call was diverted is ACKed and sent BYE; the caller stays with the application."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 180)
        self.advance(30)
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        ack, bye = self.callee.expect("ACK", "BYE")
        self.assertEqual(bye.call_id, forked.call_id)
        self.callee.respond(bye, 200)
        ok = self.caller.expect(180, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.voicemail_got("1002", "no_answer")
        self.bye(leg)

    def test_shutdown_during_application(self) -> None:
        """Stopping the controller hangs up the diverted call like any application call."""
        invite, leg = self.caller.invite("1003")
        ok = self.caller.expect(100, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.controller.stop()
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(self.controller.calls, {})


class EarlyMediaTests(DivertTestCase):
    """
    A caller that got early media (183 with SDP) and is then diverted gets
    that same SDP answer in the application's 200 (RFC 3261 §13.2.1): the
    application takes over the relay's port and the codec the callee chose.
    """

    def early_media(self) -> tuple[Request, Any, Request, Response]:
        """Ring 1002, which answers 183 with SDP (PCMA and events); the caller's 183."""
        invite, leg, [forked] = self.ring()
        self.callee.respond(forked, 183, body=CALLEE_SDP)
        progress = self.caller.expect_one(183)
        return invite, leg, forked, progress

    def test_same_answer(self) -> None:
        """The 200 carries the 183's SDP byte for byte; the application's media is on that port, in PCMA."""
        invite, leg, forked, progress = self.early_media()
        _, early_port, formats, _ = audio(progress.body)
        self.assertEqual(formats, ["8", "101"])
        self.advance(30)
        self.cancelled_by_pbx(forked)
        ok = self.caller.expect_one(200)
        self.assertEqual(ok.body, progress.body)
        self.assertEqual(ok.to.tag, progress.to.tag)
        [call] = self.controller.calls.values()
        self.assertIsInstance(call, ApplicationCall)
        assert call.endpoint is not None and call.channel is not None
        self.assertEqual(call.endpoint.port, early_port)
        self.assertEqual(call.channel.codec.name, "PCMA")
        self.assertEqual(call.codecs, "PCMA")
        self.caller.confirm(invite, leg, ok)
        self.voicemail_got("1002", "no_answer")
        self.bye(leg)
        self.assertEqual(self.allocator.in_use, 0)

    def test_port_taken_meanwhile(self) -> None:
        """When the early port cannot be had again the 200 names another, still in the 183's codec."""
        invite, leg, forked, progress = self.early_media()
        _, early_port, _, _ = audio(progress.body)
        self.allocator.claim = lambda port: False  # type: ignore[method-assign]
        self.advance(30)
        self.cancelled_by_pbx(forked)
        ok = self.caller.expect_one(200)
        _, port, formats, _ = audio(ok.body)
        self.assertNotEqual(port, early_port)
        self.assertEqual(formats, ["8", "101"])
        self.caller.confirm(invite, leg, ok)
        self.voicemail_got("1002", "no_answer")
        self.bye(leg)

    def test_cancel_while_ports_close(self) -> None:
        """
        A CANCEL that comes while the relay's ports are still closing gets
        200 and 487; the application never starts and no port stays taken.
        """
        invite, leg, forked, progress = self.early_media()
        gate: Deferred[None] = Deferred()
        session = self.session()
        session.when_closed = lambda: gate  # type: ignore[method-assign]
        self.advance(30)
        self.cancelled_by_pbx(forked)
        self.quiet(self.caller)
        self.caller.cancel(invite)
        ok, terminated = self.caller.expect(200, 487)
        self.assertEqual(terminated.to.tag, progress.to.tag)
        self.caller.ack_failure(invite, terminated)
        gate.callback(None)
        self.deliver()
        self.quiet(self.caller)
        self.assertEqual(self.voicemail.calls, [])
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.allocator.in_use, 0)
