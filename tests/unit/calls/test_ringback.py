"""Tests for :mod:`pbx.calls.ringback`: ringback written into a relay socket."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.ringback import Ringback, ringback_frames
from pbx.media import g711
from pbx.media.relay_endpoint import RelayEndpoint
from pbx.media.rtp import parse_rtp


class RingbackTests(SynchronousTestCase):
    """The tone, its pacing, and where it goes."""

    def test_frames(self) -> None:
        """One 6 s cadence of 20 ms G.711 frames: 2 s of tone, then 4 s of silence; no other codec."""
        frames = ringback_frames("PCMU")
        assert frames is not None
        self.assertEqual((len(frames), {len(f) for f in frames}), (300, {160}))
        loud = [max(abs(int(x)) for x in g711.ulaw_decode(f)) > 1000 for f in frames]
        self.assertEqual(loud, [True] * 100 + [False] * 200)
        self.assertIsNotNone(ringback_frames("pcma"))
        self.assertIsNone(ringback_frames("opus"))

    def test_paced_to_the_relay_destination(self) -> None:
        """Every 20 ms one packet goes from the socket to where the relay sends; none without a destination."""
        clock = Clock()
        endpoint = RelayEndpoint(clock)
        sent: list[tuple[bytes, tuple[str, int]]] = []
        endpoint.send = lambda data, addr: sent.append((data, addr))
        frames = ringback_frames("PCMA")
        assert frames is not None
        ringback = Ringback(clock, endpoint, frames, 8)
        ringback.start()
        self.assertEqual(sent, [])  # nowhere to send yet
        endpoint.set_remote(("192.0.2.11", 4000), "*")
        for _ in range(10):
            clock.advance(0.02)
        self.assertEqual(len(sent), 10)
        self.assertEqual({addr for _, addr in sent}, {("192.0.2.11", 4000)})
        packets = [parse_rtp(data) for data, _ in sent]
        self.assertEqual({p.payload_type for p in packets}, {8})
        self.assertEqual(
            [p.marker for p in packets[:2]], [False, False]
        )  # the first went nowhere
        ringback.stop()
        self.assertFalse(ringback.running)
        self.assertEqual(clock.getDelayedCalls(), [])
