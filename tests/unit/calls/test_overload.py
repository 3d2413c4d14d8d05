"""Calls through the B2BUA while the overload guard sheds new work (RFC 3261 §17.1.1.2, §21.5.4; RFC 7339)."""

from __future__ import annotations

from pbx.config import SIPOverloadConfig
from pbx.sip.message import Response
from pbx.sip.overload import SAMPLE_INTERVAL, OverloadGuard

from support.phones import CallTestCase, Phone


class SheddingCallTests(CallTestCase):
    """Under overload, calls already up finish; new calls are refused with 503 and Retry-After."""

    def setUp(self) -> None:
        super().setUp()
        self.guard = OverloadGuard(self.clock, SIPOverloadConfig(lag_ms=200, retry_after=9, queue_ms=200))
        self.core.overload = self.guard
        self.guard.start()

    def tearDown(self) -> None:
        self.guard.stop()
        super().tearDown()

    def overload(self) -> None:
        """The lag has made the guard refuse all new work, and what phones send over UDP waits 1 s."""
        self.guard.share = 1.0
        for phone in self.phones.values():
            phone.waited = 1.0

    def test_call_up_finishes(self) -> None:
        """A confirmed call's BYE, which waited as long, completes end to end while a new INVITE over UDP gets 503."""
        other = self.phone("1003", "192.0.2.13")
        _, leg, _ = self.establish()
        self.overload()
        other.invite("1002", authenticate=False)
        refused = other.expect_one(503)
        assert isinstance(refused, Response)
        self.assertEqual(refused.headers.get("Retry-After"), "9")
        self.hang_up(leg)
        self.assertEqual(list(self.controller.calls), [])
        self.assertEqual(self.guard.stats["late"], 1)

    def test_refused_on_a_stream(self) -> None:
        """A new INVITE on a TCP connection gets 503 with Retry-After (nothing retransmits it there)."""
        other = self.phone("1003", "192.0.2.13", transport="tcp")
        self.overload()
        other.invite("1002", authenticate=False)
        refused = other.expect_one(503)
        assert isinstance(refused, Response)
        self.assertEqual(refused.headers.get("Retry-After"), "9")
        self.assertTrue(refused.to.tag)
        other.disconnect()

    def test_challenged_call_completes(self) -> None:
        """A call whose challenge came before the overload completes: its INVITE with credentials passes."""
        invite, leg, [forked] = self.ring()
        self.overload()
        callee_leg = self.answer(self.callee, forked)
        _, ok = self.caller.expect(180, 200)
        assert isinstance(ok, Response)
        self.caller.confirm(invite, leg, ok)
        self.assertEqual([c.state for c in self.controller.calls.values()], ["confirmed"])
        self.assertTrue(callee_leg.target)
        self.hang_up(leg)

    def test_new_registration_refused(self) -> None:
        """A new REGISTER over UDP that waited too long gets 503 (the phone's script waited for a 401)."""
        self.overload()
        phone = Phone(self, "1003", "192.0.2.13")
        phone.waited = 1.0
        self.phones[phone.address] = phone
        with self.assertRaises(self.failureException) as refused:
            phone.register()
        self.assertIn("[503] != [401]", str(refused.exception))

    def test_recovery(self) -> None:
        """Once requests are read in time and the reactor keeps time, new calls are let in again within half a second."""
        self.overload()
        for phone in self.phones.values():
            phone.waited = 0.01
        for _ in range(21):
            self.clock.advance(SAMPLE_INTERVAL)
        self.assertEqual(self.guard.share, 0.0)
        _, leg, _ = self.establish()
        self.hang_up(leg)
