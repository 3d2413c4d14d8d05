"""
Tests for :mod:`pbx.calls.announce`: a prompt played into both legs of a
relayed call through the relay's feed, then the relay path restored.
"""

from __future__ import annotations

from pbx.calls.announce import READY_WAIT, RECORDED
from pbx.media.rtp import parse_rtp
from pbx.media.wav import load_wav

from support.app_calls import PROMPTS, AppCallTestCase


class AnnounceTests(AppCallTestCase):
    """1001 calls 1002 (PCMA agreed); the call's tap plays "this call is recorded"."""

    def test_both_legs_hear_the_prompt_then_each_other(self) -> None:
        """Each leg is fed the prompt in its codec for the prompt's length (once the wait for media is over), then unfed."""
        invite, leg, callee_leg = self.establish()
        [call_id] = self.controller.calls
        tap = self.controller.tap_call(call_id)
        assert tap is not None
        session = self.session()
        done: list[bool] = []
        tap.announce(RECORDED).addCallback(done.append)
        # The phones send no RTP here: the prompt starts after READY_WAIT.
        self.assertIsNone(session.feeding("a"))
        self.advance(READY_WAIT + 0.1, step=0.02)
        self.assertIsNotNone(session.feeding("a"))
        self.assertIsNotNone(session.feeding("b"))
        seconds = len(load_wav(PROMPTS.path(RECORDED, 8000)).samples) / 8000
        sockets = {leg_name: self.clock.udpPorts[session.local_port(leg_name)] for leg_name in ("a", "b")}
        for port in sockets.values():
            port.written = []
        self.advance(1.0, step=0.02)
        for leg_name, port in sockets.items():
            packets = [parse_rtp(data) for data, _ in port.written]
            self.assertGreater(len(packets), 40, leg_name)
            self.assertEqual({p.payload_type for p in packets}, {8}, leg_name)  # PCMA, as agreed
        self.assertEqual(done, [])
        self.advance(seconds, step=0.02)
        self.assertEqual(done, [True])
        self.assertIsNone(session.feeding("a"))
        self.assertIsNone(session.feeding("b"))
        self.hang_up(leg)

    def test_a_hold_meanwhile_keeps_its_feed(self) -> None:
        """A leg fed by something else when the prompt ends (music on hold) stays fed by it."""
        invite, leg, callee_leg = self.establish()
        [call_id] = self.controller.calls
        tap = self.controller.tap_call(call_id)
        assert tap is not None
        session = self.session()
        tap.announce(RECORDED)
        self.advance(READY_WAIT + 0.1, step=0.02)
        other = session.feeding("a")
        assert other is not None
        # Something else feeds leg a now (as a hold's music would).
        session.feed("a", _Silence(), 8)
        replaced = session.feeding("a")
        self.advance(30, step=0.02)
        self.assertIs(session.feeding("a"), replaced)
        self.assertIsNone(session.feeding("b"))
        session.unfeed("a")
        self.hang_up(leg)


class _Silence:
    """A feed source that sends nothing."""

    timestamp_step = 160

    def add(self, sink: object) -> object:
        """Never calls ``sink``."""
        return lambda: None
