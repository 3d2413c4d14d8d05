"""Tests for the permissions guard in :func:`pbx.switch.build_switch`: built from the config, told of ended calls."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.events import CallEvent
from pbx.config import parse_config
from pbx.permissions.classes import ServiceClass
from pbx.permissions.guard import HOLD_KIND, Verdict
from pbx.switch import build_switch
from pbx.testing import FakeUDPReactor, MemoryStore

CONFIG = """
sip:
  domain: pbx.test
  listen: ["udp:5060:interface=127.0.0.1"]
emergency:
  dial: ["911", "112"]
permissions:
  default: internal
  extensions: {"1001": international}
  limits: {concurrent_outside: 1}
"""


class PermissionsSwitchTests(SynchronousTestCase):
    """The switch's guard: its configuration, the emergency numbers, the call events, the store."""

    def setUp(self) -> None:
        self.reactor = FakeUDPReactor()
        self.reactor.advance(1_000)
        self.store = MemoryStore()
        self.switch = build_switch(
            parse_config(CONFIG), self.store, self.reactor, b"s" * 32, {}, {}
        )
        guard = self.switch.permissions
        assert guard is not None
        self.guard = guard

    def test_built_from_config(self) -> None:
        """The guard has the ``permissions:`` section and the emergency section's numbers."""
        self.assertEqual(
            self.guard.config.class_of("1001"),
            (ServiceClass.INTERNATIONAL, "extension"),
        )
        self.assertFalse(self.guard.check("1002", "+12125551234").allowed)
        self.assertEqual(self.guard.check("1002", "112").emergency, "112")

    def test_ended_call_releases(self) -> None:
        """A call's ``ended`` event releases the outside call it counted."""
        self.assertTrue(self.guard.check("1001", "+12125551234", call_id="c1").allowed)
        self.assertFalse(self.guard.check("1001", "+12125551234", call_id="c2").allowed)
        self.switch.calls.events.publish(
            CallEvent("ended", "c1", "1001", "+12125551234", 1_000.0)
        )
        self.assertTrue(self.guard.check("1001", "+12125551234", call_id="c3").allowed)

    def test_holds_loaded_at_start(self) -> None:
        """Extensions held by the last run are held again at start."""
        self.store.put_item(
            HOLD_KIND,
            "1001",
            "hold",
            {"since": 900.0, "limit": "international_per_hour", "detail": "x"},
        )
        self.successResultOf(Deferred.fromCoroutine(self.switch.start()))
        self.addCleanup(
            lambda: self.successResultOf(Deferred.fromCoroutine(self.switch.stop()))
        )
        self.assertEqual(self.guard.check("1001", "+12125551234").verdict, Verdict.HOLD)
