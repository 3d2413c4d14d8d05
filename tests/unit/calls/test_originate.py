"""
Tests for :meth:`pbx.calls.controller.CallController.originate`, the
primitive under ``dial``: place a leg to an extension's phones and get its
channel when answered, or the outcome when not.  In memory, with the
scripted phones of :mod:`support.phones`.
"""

from __future__ import annotations

from typing import Any

from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred

from pbx.calls.originated import Originated
from pbx.interfaces import IChannel
from pbx.sip.message import Request

from support.app_calls import AppCallTestCase
from support.phones import CALLEE_SDP


class OriginateTests(AppCallTestCase):
    """A leg placed by an application, from ringing to its end."""

    def originate(self, number: str = "1002", **kwargs: Any) -> tuple[Deferred[Originated], list[Originated]]:
        """Originate to ``number``; the result lands in the returned list."""
        results: list[Originated] = []
        d = self.controller.originate(number, caller="0800", caller_name="Front desk", **kwargs)
        d.addCallback(results.append)
        return d, results

    def test_answered(self) -> None:
        """The callee's phone rings with our caller ID; once it answers, the result holds its channel."""
        _, results = self.originate()
        invite = self.callee.expect_one("INVITE")
        assert isinstance(invite, Request)
        self.assertEqual(invite.from_.uri.user, "0800")
        self.assertIn('"Front desk"', invite.headers.get("From") or "")
        self.assertEqual(results, [])
        self.callee.respond(invite, 180)
        self.callee.respond(invite, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        [result] = results
        self.assertEqual(result.outcome, "answered")
        self.assertTrue(verifyObject(IChannel, result.channel))
        self.assertEqual(result.channel.callee, "1002")
        ended: list[None] = []
        assert result.ended is not None
        result.ended.addCallback(ended.append)
        result.hang_up()
        bye = self.callee.expect_one("BYE")
        self.callee.respond(bye, 200)
        self.assertEqual(ended, [None])
        [record] = self.store.calls
        self.assertEqual((record.leg, record.disposition, record.caller), ("b", "ANSWERED", "0800"))

    def test_busy(self) -> None:
        """A phone that answers 486 gives the outcome "busy" and no channel."""
        _, results = self.originate()
        invite = self.callee.expect_one("INVITE")
        self.callee.respond(invite, 486)
        self.callee.expect("ACK")
        self.assertEqual([(r.outcome, r.channel) for r in results], [("busy", None)])

    def test_no_answer(self) -> None:
        """Nobody answers within the timeout: the phone is cancelled and the outcome is "no_answer"."""
        _, results = self.originate(timeout=5)
        invite = self.callee.expect_one("INVITE")
        self.callee.respond(invite, 180)
        self.advance(5)
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(invite, 487)
        self.callee.expect("ACK")
        self.assertEqual([r.outcome for r in results], ["no_answer"])

    def test_unknown_and_unregistered(self) -> None:
        """An unknown number gives "not_found"; an extension with no phone registered, "unavailable"."""
        _, unknown = self.originate("1999")
        _, unregistered = self.originate("1004")
        self.assertEqual([r.outcome for r in unknown + unregistered], ["not_found", "unavailable"])
        self.quiet(self.callee)

    def test_cancelled(self) -> None:
        """Cancelling the Deferred while the phone rings sends CANCEL; the outcome is "cancelled", no call is left."""
        d, results = self.originate()
        invite = self.callee.expect_one("INVITE")
        self.callee.respond(invite, 180)
        d.cancel()
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(invite, 487)
        self.callee.expect("ACK")
        self.assertEqual([r.outcome for r in results], ["cancelled"])
        self.assertEqual(self.controller.calls, {})

    def test_several_at_once(self) -> None:
        """Two legs ring at once (a queue ringing two agents); each gets its own outcome."""
        other = self.phone("1003", "192.0.2.13")
        _, first = self.originate("1002")
        _, second = self.originate("1003")
        to_first = self.callee.expect_one("INVITE")
        to_second = other.expect_one("INVITE")
        self.callee.respond(to_first, 486)
        self.callee.expect("ACK")
        other.respond(to_second, 200, body=CALLEE_SDP)
        other.expect("ACK")
        self.assertEqual([r.outcome for r in first + second], ["busy", "answered"])
        second[0].hang_up()
        other.respond(other.expect_one("BYE"), 200)

    def test_extra_headers(self) -> None:
        """Headers given to originate (a page's auto-answer) are in the INVITE, after pbx's own."""
        auto = [("Call-Info", "<sip:pbx.test>;answer-after=0"),
                ("Alert-Info", "<http://localhost>;info=alert-autoanswer")]
        _, results = self.originate(headers=auto)
        invite = self.callee.expect_one("INVITE")
        assert isinstance(invite, Request)
        self.assertEqual(invite.headers.get_all("Call-Info"), ["<sip:pbx.test>;answer-after=0"])
        self.assertEqual(invite.headers.get_all("Alert-Info"), ["<http://localhost>;info=alert-autoanswer"])
        self.assertEqual(invite.headers.get_all("Call-ID"), [invite.call_id])
        self.callee.respond(invite, 486)
        self.callee.expect("ACK")
        self.assertEqual([r.outcome for r in results], ["busy"])

    def test_bad_extra_headers(self) -> None:
        """A header name that is no token, one pbx writes itself, or a value with a line break is refused."""
        for bad in [("Call Info", "x"), ("Call-ID", "forged"), ("Via", "SIP/2.0/UDP evil"),
                    ("Call-Info", "a\r\nVia: evil"), ("X-Note", "a\nb")]:
            with self.assertRaises(ValueError):
                self.controller.originate("1002", caller="0800", headers=[bad])
        self.quiet(self.callee)
        self.assertEqual(self.controller.calls, {})
