"""
The attendant on a real call, in memory: the PBX of :mod:`support.app_calls`
(SIP core, call controller, RTP relay, real channels) routes ``*60`` to the
attendant, whose transfers go through the controller's own ``dial``.  Keys
are RFC 4733 packets; what the caller hears is counted in RTP frames.
"""

from __future__ import annotations

from typing import Any

import attrs

from twisted.internet.defer import succeed

from pbx.calls.dialplan import Dialplan, Route, ToApplication, compile_pattern
from pbx.features.attendant.app import Attendant
from pbx.features.attendant.options import parse_options
from pbx.testing import FakePBX

from support.app_calls import TICK, AppCallTestCase, frames
from support.phones import audio

MENUS = {
    "menus": {
        "main": {
            "greeting": "aa/welcome",
            "direct_dial": True,
            "options": {"*": {"hangup": True}},
            "retries": 2,
        },
    },
}


class AttendantCallTests(AppCallTestCase):
    """*60: the attendant's menu main."""

    def setUp(self) -> None:
        """Route *60 to the attendant."""
        super().setUp()
        route = Route("*60", compile_pattern("*60"), ToApplication("attendant", {"menu": "main"}))
        self.controller.config = attrs.evolve(
            self.controller.config, dialplan=Dialplan((*self.controller.config.dialplan.routes, route)))
        menu_set = parse_options(MENUS)
        pbx = FakePBX(store=self.store, clock=self.clock, applications=self.controller.applications,
                      dialer=self.controller.dial)
        self.controller.applications["attendant"] = Attendant(pbx, lambda: succeed(menu_set))

    def answered(self) -> tuple[Any, Any]:
        """The caller calls *60 and pbx answers; the leg and pbx's RTP socket."""
        invite, leg = self.caller.invite("*60")
        ok = self.caller.expect(100, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.clock.advance(TICK / 2)
        return leg, self.clock.udpPorts[audio(ok.body)[1]]

    def test_direct_dial_busy_then_hang_up(self) -> None:
        """
        Keys 1002 during the greeting cut it short and transfer to 1002; its
        486 gives general/busy and the greeting again; star says goodbye and
        pbx hangs up.
        """
        leg, port = self.answered()
        self.media(1)
        self.assertEqual(len(self.sent(port)), 50)
        for digit in "1002":
            self.press(port, digit)
        self.media(frames("aa/transfer") * TICK + 0.2)
        forked = self.callee.expect_one("INVITE")
        self.assertEqual((forked.to.uri.user, forked.from_.uri.user), ("1002", "1001"))
        # The greeting stopped at the first key; then aa/transfer played in full.
        self.assertLess(len(self.sent(port)), frames("aa/transfer") + 10)
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.media(frames("general/busy") * TICK + 1)
        self.assertGreaterEqual(len(self.sent(port)), frames("general/busy"))
        self.press(port, "*")
        self.media(frames("general/goodbye") * TICK + 0.2)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)

    def test_silent_caller(self) -> None:
        """A caller who presses nothing hears the greeting and aa/timeout twice, then goodbye and a BYE."""
        leg, port = self.answered()
        heard = frames("aa/welcome", "aa/timeout") * 2 + frames("general/goodbye")
        self.media(heard * TICK + 2 * 5 + 0.5)
        sent = [p for p in self.sent(port) if p.payload_type == 0]
        self.assertEqual(len(sent), heard)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)

    def test_caller_hangs_up(self) -> None:
        """A BYE during the greeting ends the call cleanly (no transfer, nothing left running)."""
        leg, port = self.answered()
        self.media(1)
        self.bye(leg)
        self.quiet(self.callee)
