"""
Tests for :mod:`pbx.calls.keys`: the keys parties press in a relayed call,
from the RFC 4733 events in their RTP and from SIP INFO, per call and seat.
"""

from __future__ import annotations

from pbx.calls.call import Call
from pbx.calls.keys import CallKeys
from pbx.calls.tap import CallTap
from pbx.config import TransferConfig
from pbx.media.relay_endpoint import RelayEndpoint

from support.phones import CallTestCase
from support.recording import Talker

#: Where the phones' RTP comes from (their SDP addresses).
SOURCES = {"a": ("192.0.2.11", 4000), "b": ("192.0.2.12", 5000)}


class KeyStreamTestCase(CallTestCase):
    """A confirmed call 1001 -> 1002 and helpers to send its phones' RTP."""

    def setUp(self) -> None:
        super().setUp()
        self.invite, self.leg, self.callee_leg = self.establish()
        [call] = self.controller.calls.values()
        assert isinstance(call, Call)
        self.the_call = call

    def endpoint(self, seat: str) -> RelayEndpoint:
        """The relay's RTP socket of ``seat``."""
        protocol = self.clock.udpPorts[self.session().local_port(seat)].protocol
        assert isinstance(protocol, RelayEndpoint)
        return protocol

    def send(self, seat: str, packets: list[bytes]) -> None:
        """``seat``'s phone sends ``packets`` to its relay port."""
        for packet in packets:
            self.endpoint(seat).datagramReceived(packet, SOURCES[seat])

    def sent_to(self, seat: str) -> list[bytes]:
        """What the relay sent to ``seat``'s phone (from ``seat``'s port)."""
        return [data for data, _ in self.clock.udpPorts[self.session().local_port(seat)].written]

    def press(self, seat: str, keys: str, phone: Talker | None = None) -> list[bytes]:
        """``seat``'s phone presses ``keys`` as RFC 4733 events (start, three ends each); the packets."""
        phone = phone or Talker(0)
        packets = [p for key in keys for p in phone.key(key)]
        self.send(seat, packets)
        return packets


class WatchTests(KeyStreamTestCase):
    """One call's keys, as a feature watches them through its tap (no feature code configured)."""

    transfer_config = TransferConfig(blind_code="", attended_code="", three_way_code="", cancel_code="")

    def test_rfc4733_keys_per_seat(self) -> None:
        """Each press (four packets) is one key, reported with its seat; the packets are relayed unchanged."""
        keys: list[tuple[str, str]] = []
        tap = self.controller.tap_call(self.invite.call_id)
        assert isinstance(tap, CallTap)
        tap.keys(lambda seat, key: keys.append((seat, key)))
        packets = self.press("b", "*1")
        self.press("a", "9#")
        self.assertEqual(keys, [("b", "*"), ("b", "1"), ("a", "9"), ("a", "#")])
        self.assertEqual(self.sent_to("a"), packets)
        self.hang_up(self.leg)

    def test_audio_is_not_a_key(self) -> None:
        """Audio packets (another payload type) are relayed and reported as nothing."""
        keys: list[tuple[str, str]] = []
        self.controller.keys.watch(self.the_call, lambda seat, key: keys.append((seat, key)))
        talker = Talker(600)
        frames = [talker.frame() for _ in range(5)]
        self.send("a", frames)
        self.assertEqual((keys, self.sent_to("b")), ([], frames))
        self.hang_up(self.leg)

    def test_info_keys(self) -> None:
        """A key sent as INFO reaches the watcher, and the INFO is relayed to the other party."""
        keys: list[tuple[str, str]] = []
        self.controller.keys.watch(self.the_call, lambda seat, key: keys.append((seat, key)))
        self.callee.in_dialog(
            self.callee_leg, "INFO", body=b"Signal=5\r\nDuration=160\r\n",
            extra=[("Content-Type", "application/dtmf-relay")],
        )
        self.caller.respond(self.caller.expect_one("INFO"), 200)
        self.callee.expect(200)
        self.assertEqual(keys, [("b", "5")])
        self.hang_up(self.leg)

    def test_unwatched_call_untouched(self) -> None:
        """With nobody watching, the relay's sockets run the plain hot path; stopping a watch restores it."""
        keys = self.controller.keys
        self.assertEqual(keys.watching, 0)
        for seat in ("a", "b"):
            self.assertNotIn("datagramReceived", vars(self.endpoint(seat)))
        stop = keys.watch(self.the_call, lambda seat, key: None)
        self.assertIn("datagramReceived", vars(self.endpoint("a")))
        stop()
        stop()
        self.assertEqual(keys.watching, 0)
        for seat in ("a", "b"):
            self.assertNotIn("datagramReceived", vars(self.endpoint(seat)))
        self.hang_up(self.leg)

    def test_new_stream_in_seat(self) -> None:
        """A new phone in a seat (another SSRC, an older timestamp) is heard from its first press."""
        keys: list[str] = []
        self.controller.keys.watch(self.the_call, lambda seat, key: keys.append(key))
        first = Talker(0)
        first.sender.advance(80000)
        self.press("b", "1", first)
        self.press("b", "2", Talker(0))
        self.assertEqual(keys, ["1", "2"])
        self.hang_up(self.leg)

    def test_ended_call_unwatched(self) -> None:
        """The call's end stops its watch; a listener that raises does not stop the others."""
        keys: list[str] = []

        def broken(seat: str, key: str) -> None:
            raise RuntimeError("boom")

        self.controller.keys.watch(self.the_call, broken)
        self.controller.keys.watch(self.the_call, lambda seat, key: keys.append(key))
        self.press("a", "4")
        self.assertEqual(keys, ["4"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.hang_up(self.leg)
        self.assertEqual(self.controller.keys.watching, 0)


class SubscribeTests(KeyStreamTestCase):
    """Keys of every answered call, for the feature codes (the default ``##`` subscribes the transfers)."""

    def test_every_answered_call_watched(self) -> None:
        """With a feature code configured, an answered call is watched at once; its keys name the call."""
        self.assertEqual(self.controller.keys.watching, 1)
        seen: list[tuple[str, str, str]] = []
        self.controller.keys.subscribe(lambda call, seat, key: seen.append((call.call_id, seat, key)))
        self.press("a", "7")
        self.assertEqual(seen, [(self.invite.call_id, "a", "7")])
        self.hang_up(self.leg)
        self.assertEqual(self.controller.keys.watching, 0)


class NoCodeTests(CallTestCase):
    """Without feature codes nobody subscribes: calls are not watched."""

    transfer_config = TransferConfig(blind_code="", attended_code="", three_way_code="", cancel_code="")

    def test_not_watched(self) -> None:
        """No call is watched, by the controller's key stream or one nobody subscribed to."""
        fresh = CallKeys(self.controller.events, self.controller.calls.get)
        invite, leg, _ = self.establish()
        self.assertEqual((self.controller.keys.watching, fresh.watching), (0, 0))
        self.hang_up(leg)


class PayloadTypeTests(KeyStreamTestCase):
    """The seat's telephone-event payload type is looked up again when the seat's SDP changes."""

    transfer_config = TransferConfig(blind_code="", attended_code="", three_way_code="", cancel_code="")

    def test_renegotiated_event_type(self) -> None:
        """After the callee's SDP moves telephone-event to 96, presses under 96 are keys."""
        keys: list[str] = []
        self.controller.keys.watch(self.the_call, lambda seat, key: keys.append(key))
        self.send("b", [Talker(600).frame()])
        media = self.the_call.media
        answer = media.answers["b"]
        body = answer.to_bytes().replace(b"101", b"96")
        media.answers["b"] = media.parse(body)
        media.offers.pop("b", None)
        phone = Talker(0)
        packets = [bytearray(p) for p in phone.key("3")]
        for p in packets:
            p[1] = (p[1] & 0x80) | 96
        self.send("b", [bytes(p) for p in packets])
        self.assertEqual(keys, ["3"])
        self.hang_up(self.leg)
