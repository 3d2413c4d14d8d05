"""
A call out that the calling-permissions guard refuses hears the guard's
announcement as early media (183 with pbx's SDP), then gets the 403.
"""

from __future__ import annotations

import attrs

from pbx.calls.dialplan import parse_dialplan
from pbx.media.wav import load_wav
from pbx.permissions.guard import Guard
from pbx.permissions.options import parse_permissions
from pbx.sip.message import Response
from pbx.trunks.config import parse_trunks
from pbx.trunks.joins import ask_guard
from pbx.trunks.registry import Trunks

from support.app_calls import PROMPTS, AppCallTestCase
from support.phones import CALLER_SDP, Phone, audio

PREMIUM = "919005550100"
PROMPT = "general/not-available"


class RefusalAnnouncementTests(AppCallTestCase):
    """1001 (national class) dials a +1 900 number out through the carrier trunk."""

    def setUp(self) -> None:
        """pbx with media, a carrier trunk, a ``9`` route and the guard joined to the trunk."""
        super().setUp()
        trunks = parse_trunks({"carrier": {"uri": "sip:192.0.2.50", "allow_from": ["192.0.2.50/32"]}}, None)
        self.config = attrs.evolve(
            self.controller.config, trunks=trunks,
            dialplan=parse_dialplan([{"match": "_9X.", "trunk": ["carrier"], "strip": 1, "prepend": "+"}]),
        )
        self.controller.config = self.config
        self.controller.trunks = Trunks(self.config.trunks, self.controller.services, self.controller.local_address)
        guard = Guard(parse_permissions({"default": "national", "announcement": PROMPT}), self.clock, self.store)
        self.controller.trunks.hooks.outbound.append(ask_guard(guard))
        self.carrier = Phone(self, "1003", "192.0.2.50")
        self.phones[self.carrier.address] = self.carrier

    def test_announcement_then_403(self) -> None:
        """183 with SDP at once; the prompt's frames go to the caller; then 403; nothing reaches the carrier."""
        invite, leg = self.caller.invite(PREMIUM, body=CALLER_SDP)
        trying, early = self.caller.expect(100, 183)
        assert isinstance(early, Response)
        host, port, formats, direction = audio(early.body)
        self.assertEqual(host, "127.0.0.1")
        socket = self.clock.udpPorts[port]
        seconds = len(load_wav(PROMPTS.path(PROMPT, 8000)).samples) / 8000
        self.media(1.0)
        self.assertGreater(len(self.sent(socket)), 40)
        self.quiet(self.caller)
        self.media(seconds - 1.0 + 0.2)
        refused = self.caller.expect_one(403)
        self.assertEqual(refused.reason, "Call Not Permitted")
        self.caller.ack_failure(invite, refused)
        self.quiet(self.carrier)
        self.assertEqual(self.controller.calls, {})
        rows = {(r.disposition, r.hangup_cause) for r in self.store.calls}
        self.assertIn(("FAILED", "403 Call Not Permitted"), rows)

    def test_cancel_during_the_announcement(self) -> None:
        """A caller that cancels while the prompt plays gets 487 and no 403."""
        invite, leg = self.caller.invite(PREMIUM, body=CALLER_SDP)
        self.caller.expect(100, 183)
        self.media(0.5)
        self.caller.cancel(invite)
        ok, terminated = self.caller.expect(200, 487)
        self.caller.ack_failure(invite, terminated)
        self.media(5.0)
        self.quiet(self.caller, self.carrier)
