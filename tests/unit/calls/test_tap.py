"""
Tests for :meth:`pbx.calls.controller.CallController.tap_call`: the media of
an answered relayed call, by call id, as the recording feature takes it.
"""

from __future__ import annotations

from pbx.calls.tap import CallTap

from support.phones import CallTestCase

RTP = b"\x80\x08\x00\x01" + b"\x00" * 8 + bytes(160)


class TapCallTests(CallTestCase):
    """Only an answered call is tapped; its packets and payload types are what the phones use."""

    def test_ringing_call_not_tapped(self) -> None:
        """A call that rings has no media to tap yet; an unknown call id neither."""
        invite, _, [forked] = self.ring()
        self.assertIsNone(self.controller.tap_call(invite.call_id))
        self.assertIsNone(self.controller.tap_call("no-such-call"))
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.caller.ack_failure(invite, self.caller.expect_one(486))

    def test_answered_call(self) -> None:
        """An answered call's tap names its parties and codec and hands over each leg's packets."""
        invite, leg, _ = self.establish()
        tap = self.controller.tap_call(invite.call_id)
        assert isinstance(tap, CallTap)
        self.assertEqual(
            (tap.call_id, tap.caller, tap.callee, tap.codec),
            (invite.call_id, "1001", "1002", "PCMA"),
        )
        self.assertEqual(tap.payload_types("a")[8], ("pcma", 8000))
        self.assertEqual(
            tap.payload_types("b"), {8: ("pcma", 8000), 101: ("telephone-event", 8000)}
        )
        seen: list[tuple[str, bytes]] = []
        tap.tap("a", lambda data: seen.append(("a", data)))
        tap.tap("b", lambda data: seen.append(("b", data)))
        session = self.session()
        ports = self.clock.udpPorts
        ports[session.local_port("a")].protocol.datagramReceived(
            RTP, ("192.0.2.11", 4000)
        )
        ports[session.local_port("b")].protocol.datagramReceived(
            RTP[::-1], ("192.0.2.12", 5000)
        )
        self.assertEqual(seen, [("a", RTP), ("b", RTP[::-1])])
        tap.untap("a")
        ports[session.local_port("a")].protocol.datagramReceived(
            RTP, ("192.0.2.11", 4000)
        )
        self.assertEqual(len(seen), 2)
        self.hang_up(leg)
        self.assertIsNone(self.controller.tap_call(invite.call_id))

    def test_listen_and_feed(self) -> None:
        """A listener sees a leg's packets beside the tap; a fed leg gets the feed's frames instead of the other leg's."""
        invite, leg, _ = self.establish()
        tap = self.controller.tap_call(invite.call_id)
        assert isinstance(tap, CallTap)
        seen: list[bytes] = []
        tap.tap("a", lambda data: None)
        remove = tap.listen("a", seen.append)
        session = self.session()
        ports = self.clock.udpPorts
        ports[session.local_port("a")].protocol.datagramReceived(
            RTP, ("192.0.2.11", 4000)
        )
        self.assertEqual(seen, [RTP])
        remove()
        sinks: list[object] = []

        class Source:
            timestamp_step = 160

            def add(self, sink: object) -> object:
                sinks.append(sink)
                return lambda: sinks.remove(sink)

        tap.feed("a", Source(), 8)
        self.assertIsNotNone(session.feeding("a"))
        self.assertEqual(len(sinks), 1)
        tap.unfeed("a")
        self.assertIsNone(session.feeding("a"))
        self.assertEqual(sinks, [])
        self.hang_up(leg)
