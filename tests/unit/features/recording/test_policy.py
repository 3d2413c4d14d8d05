"""
Recording policy per trunk and per route (:mod:`pbx.features.recording.policy`):
the options, the decision, and the service recording (and announcing) a call
by the trunk and route its ``answered`` event names.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.events import CallEvent
from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.features.recording.library import KIND
from pbx.features.recording.policy import Decision
from pbx.plugin_loader import configure
from pbx.plugins.recording import recording
from pbx.testing import FakePBX

from support.recording import FakeTap

CONFIG = """
sip: {{domain: pbx.test}}
state_dir: {state}
trunks:
  carrier: {{uri: "sip:192.0.2.50", allow_from: ["192.0.2.50/32"]}}
  backup: {{uri: "sip:192.0.2.51"}}
dialplan:
  - {{match: "_9NXXNXXXXXX", trunk: carrier, name: national}}
  - {{match: "_9011.", trunk: [carrier, backup]}}
"""


class OptionsTests(SynchronousTestCase):
    """``trunks:`` and ``routes:`` as lists or as names mapped to ``{announce: ...}``."""

    def test_list_and_mapping(self) -> None:
        """A list takes the feature's announce; a mapping entry says its own, or takes the feature's."""
        options = recording.parse_options({
            "announce": True, "trunks": ["carrier"],
            "routes": {"national": {"announce": False}, "_9011.": None},
        })
        self.assertEqual(dict(options.trunks), {"carrier": True})
        self.assertEqual(dict(options.routes), {"national": False, "_9011.": True})
        self.assertEqual((dict(recording.parse_options({}).trunks), dict(recording.parse_options({}).routes)),
                         ({}, {}))

    def test_errors(self) -> None:
        """Each bad entry is named under features.recording."""
        cases = {
            "not names": ({"trunks": "carrier"}, "features.recording.trunks"),
            "number in list": ({"routes": ["national", 9]}, "features.recording.routes"),
            "other key": ({"trunks": {"carrier": {"loud": True}}}, "features.recording.trunks.carrier"),
            "announce": ({"trunks": {"carrier": {"announce": "yes"}}}, "features.recording.trunks.carrier.announce"),
        }
        for name, (options, key) in cases.items():
            with self.assertRaises(ConfigError, msg=name) as caught:
                configure({"recording": options}, {"recording": recording})
            self.assertEqual(caught.exception.key, key, name)


class DecisionTests(SynchronousTestCase):
    """Any matching rule records; the call is announced when any matching rule says so."""

    def setUp(self) -> None:
        self.options = recording.parse_options({
            "always": ["1001"], "trunks": {"carrier": {"announce": True}, "backup": None},
            "routes": ["national"],
        })

    def test_rules(self) -> None:
        """Extension, trunk and route rules each record; none matching records nothing."""
        self.assertEqual(self.options.decide("1001", "1002"), Decision(("extension 1001",), False))
        self.assertEqual(self.options.decide("+13125550100", "1002", "carrier"), Decision(("trunk carrier",), True))
        self.assertEqual(self.options.decide("1003", "+15552345678", "backup", "national"),
                         Decision(("trunk backup", "route national"), False))
        self.assertEqual(self.options.decide("1001", "+15552345678", "carrier", "national"),
                         Decision(("extension 1001", "trunk carrier", "route national"), True))
        self.assertIsNone(self.options.decide("1003", "1004"))
        self.assertIsNone(self.options.decide("1003", "+15552345678", "other", "intl"))


class ServiceTests(SynchronousTestCase):
    """The service records a call by the trunk and route of its answered event."""

    options: dict[str, Any] = {"trunks": {"carrier": {"announce": True}}, "routes": ["national"], "toggle": ""}

    def start(self, options: dict[str, Any]) -> Any:
        """A started service on a fake PBX with two trunks and two trunk routes."""
        self.pbx = FakePBX(config=parse_config(CONFIG.format(state=os.path.abspath(self.mktemp())), "t.yml", {}))
        service = recording.make_service(self.pbx, recording.parse_options(options))
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def answer(self, call_id: str, caller: str, callee: str, **line: str) -> FakeTap:
        """A call over a line (``trunk``, ``route``, ``did``) is answered."""
        tap = self.pbx.taps[call_id] = FakeTap(call_id, caller, callee)
        self.pbx.events.publish(CallEvent("answered", call_id, caller, callee, 0.0, "b", line))
        return tap

    def test_trunk_recorded_and_announced(self) -> None:
        """A call in from the recorded trunk is recorded by policy and announced, as its entry says."""
        service = self.start(self.options)
        tap = self.answer("c1", "+13125550100", "1002", trunk="carrier", did="+15551230000")
        self.assertEqual(sorted(tap.listeners), ["a", "b"])
        self.assertEqual(tap.announced, ["general/call-recorded"])
        self.assertEqual(service.watches["c1"].meta["started_by"], "policy")

    def test_route_recorded_not_announced(self) -> None:
        """A call out by the recorded route over another trunk is recorded, unannounced (the feature's default)."""
        service = self.start(self.options)
        tap = self.answer("c2", "1001", "+15552345678", trunk="backup", route="national")
        self.assertEqual((sorted(tap.listeners), tap.announced), (["a", "b"], []))
        self.assertEqual([d["caller"] for _, _, d in self.successResultOf(self.pbx.store.list_items(KIND))],
                         ["1001"])
        self.assertIn("c2", service.watches)

    def test_other_lines_not_recorded(self) -> None:
        """Calls over other trunks and routes, or between phones, are not tapped (no toggle here)."""
        self.start(self.options)
        taps = [self.answer("c3", "1001", "+15552345678", trunk="backup", route="_9011."),
                self.answer("c4", "1001", "1002")]
        self.assertEqual([t.listeners for t in taps], [{}, {}])

    def test_unknown_names(self) -> None:
        """A trunk or route the configuration does not have is a config error naming the entry, at start."""
        for options, key in (({"trunks": ["carier"]}, "features.recording.trunks.carier"),
                             ({"routes": ["intl"]}, "features.recording.routes.intl")):
            with self.assertRaises(ConfigError) as caught:
                self.start(options)
            self.assertEqual(caught.exception.key, key)
