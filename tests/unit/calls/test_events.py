"""
Tests for call events (:mod:`pbx.calls.events`): every call's life as the
controller publishes it, and the hub's handling of subscribers.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.events import CallEvent, CallEvents

from support.app_calls import AppCallTestCase
from support.phones import CALLEE_SDP, CALLER_SDP, hold_sdp


class HubTests(SynchronousTestCase):
    """The subscriber list."""

    def test_failing_subscriber(self) -> None:
        """A subscriber that raises is logged; the others still get the event, and it stays subscribed."""
        events = CallEvents()
        seen: list[str] = []

        def broken(event: CallEvent) -> None:
            raise RuntimeError("subscriber bug")

        events.subscribe(broken)
        events.subscribe(lambda event: seen.append(event.kind))
        events.publish(CallEvent("created", "c", "1001", "1002", 0.0))
        events.publish(CallEvent("ended", "c", "1001", "1002", 1.0))
        self.assertEqual(seen, ["created", "ended"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class CallEventTests(AppCallTestCase):
    """What the controller publishes for relayed and answered calls."""

    def setUp(self) -> None:
        """Record every event the controller publishes."""
        super().setUp()
        self.events: list[CallEvent] = []
        self.controller.events.subscribe(self.events.append)

    def kinds(self) -> list[tuple[str, str]]:
        """(kind, leg) of every event so far."""
        return [(e.kind, e.leg) for e in self.events]

    def test_relayed_call(self) -> None:
        """A call through the B2BUA: created, ringing, answered, bridged, held, resumed, ended."""
        invite, leg, callee_leg = self.establish()
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendonly"))
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "recvonly"))
        self.callee.expect("ACK")
        self.caller.expect(200)
        self.caller.ack_reinvite(leg)
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendrecv", 3))
        self.caller.expect(100)
        reinvite = self.callee.expect_one("INVITE")
        self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "sendrecv", 3))
        self.callee.expect("ACK")
        self.caller.expect(200)
        self.caller.ack_reinvite(leg)
        self.hang_up(leg)
        self.assertEqual(self.kinds(), [
            ("created", ""), ("ringing", "b"), ("answered", "b"), ("bridged", ""),
            ("held", "a"), ("resumed", "a"), ("ended", ""),
        ])
        self.assertEqual({(e.caller, e.callee, e.call_id) for e in self.events},
                         {("1001", "1002", invite.call_id)})
        ended = self.events[-1]
        self.assertEqual([r.leg for r in ended.detail["records"]], ["a", "b"])
        self.assertEqual(ended.detail["disposition"], "ANSWERED")

    def test_application_call(self) -> None:
        """A call pbx answers for an application: created, answered, ended, each naming the application."""
        leg, _ = self.connect("*43")
        self.bye(leg)
        self.assertEqual(self.kinds(), [("created", ""), ("answered", "a"), ("ended", "")])
        self.assertEqual({e.detail["application"] for e in self.events}, {"echo"})

    def test_cdr_is_a_subscriber(self) -> None:
        """The records an ended event carries are the ones written to the store."""
        invite, leg, callee_leg = self.establish()
        self.hang_up(leg)
        [ended] = [e for e in self.events if e.kind == "ended"]
        self.assertEqual(list(ended.detail["records"]), self.store.calls)


class KindsTests(SynchronousTestCase):
    """Subscribing to some kinds only."""

    def test_kinds(self) -> None:
        """A subscriber of some kinds gets only those; a kind nobody takes is not wanted, so calls make none."""
        events = CallEvents()
        seen: list[str] = []
        events.subscribe(lambda event: seen.append(event.kind), kinds=("ended",))
        self.assertEqual((events.wants("ended"), events.wants("created")), (True, False))
        events.publish(CallEvent("created", "c", "1001", "1002", 0.0))
        events.publish(CallEvent("ended", "c", "1001", "1002", 1.0))
        self.assertEqual(seen, ["ended"])

    def test_unknown_kind(self) -> None:
        """Subscribing to a kind that does not exist is refused."""
        with self.assertRaises(ValueError):
            CallEvents().subscribe(lambda event: None, kinds=("answred",))

    def test_unsubscribe_narrows(self) -> None:
        """Once the only subscriber of a kind leaves, that kind is no longer wanted."""
        events = CallEvents()
        events.subscribe(lambda event: None, kinds=("ended",))
        unsubscribe = events.subscribe(lambda event: None)
        self.assertTrue(events.wants("ringing"))
        unsubscribe()
        self.assertEqual((events.wants("ringing"), events.wants("ended")), (False, True))
