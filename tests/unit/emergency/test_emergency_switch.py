"""Tests for the emergency desk in :func:`pbx.switch.build_switch`: built from the config, told of calls."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.events import CallEvent
from pbx.config import parse_config
from pbx.emergency.callback import CALLBACK_KIND
from pbx.emergency.event import AUDIT_KIND
from pbx.records import Binding
from pbx.switch import build_switch
from pbx.testing import FakeUDPReactor, MemoryStore

CONFIG = """
sip:
  domain: pbx.test
  listen: ["udp:5060:interface=127.0.0.1"]
emergency:
  callback_minutes: 30
  locations:
    hq: {country: US, A3: Town, HNO: "1"}
    lab: {country: US, A3: Lab town, BLD: Lab}
  extensions: {"1001": hq}
  subnets: {"10.0.0.0/8": lab}
"""


class EmergencySwitchTests(SynchronousTestCase):
    """The switch's desk: its configuration, the registrar's bindings, the call events, the store."""

    def setUp(self) -> None:
        self.reactor = FakeUDPReactor()
        self.reactor.advance(1_000)
        self.store = MemoryStore()
        self.switch = build_switch(
            parse_config(CONFIG), self.store, self.reactor, b"s" * 32, {}, {}
        )

    def test_built_from_config(self) -> None:
        """The desk has the ``emergency:`` section and its callback window."""
        desk = self.switch.emergency
        assert desk is not None
        self.assertEqual(desk.callbacks.minutes, 30)
        self.assertEqual(desk.config.extensions, {"1001": "hq"})

    def test_call_events_reach_the_desk(self) -> None:
        """A call created to 9911 is an emergency call in the audit trail, located by the registrar's binding."""
        self.switch.registrar.bindings["1001"] = {
            "sip:1001@10.1.2.3": Binding(
                "1001", "sip:1001@10.1.2.3", 5_000.0, source="10.1.2.3:5060"
            )
        }
        self.switch.calls.events.publish(
            CallEvent("created", "c1", "1001", "9911", 1_000.0)
        )
        [audit] = self.successResultOf(self.store.list_audit(kind=AUDIT_KIND))
        self.assertEqual(audit.subject, "1001")
        self.assertIn('"name":"lab"', audit.detail)

    def test_callback_windows_loaded_at_start(self) -> None:
        """Windows left open by the last run are taken at start."""
        self.store.put_item(
            CALLBACK_KIND, "", "5551230000", {"extension": "1001", "until": 2_000.0}
        )
        desk = self.switch.emergency
        assert desk is not None
        self.successResultOf(Deferred.fromCoroutine(self.switch.start()))
        self.addCleanup(
            lambda: self.successResultOf(Deferred.fromCoroutine(self.switch.stop()))
        )
        self.assertEqual(desk.callback_target("+15551230000"), "1001")
        self.reactor.advance(1_000)
        self.assertIsNone(desk.callback_target("+15551230000"))
