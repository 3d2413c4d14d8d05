"""
Tests for :mod:`pbx.features.supervision.app` and :mod:`.desk`: a
supervisor dials code + extension on a real channel and joins a fake live
call (:class:`support.supervision.Desk`), on a :class:`task.Clock`.
"""

from __future__ import annotations

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.events import CallEvent
from pbx.features.supervision.app import REFUSED
from pbx.features.supervision.desk import NoCall, NotAllowed
from pbx.interfaces import IDialplanApplication, IFeature
from pbx.plugin_loader import discover
from pbx.plugins.supervision import supervision

from support.supervision import SUPERVISOR_TONE, TONES, Desk

OPTIONS = 'supervisors: {"1000": ["1001"], "1009": "*"}'


class DeskTestCase(SynchronousTestCase):
    """A desk with :data:`OPTIONS`; no timer or monitor left at the end."""

    def setUp(self) -> None:
        """The desk."""
        self.desk = Desk(OPTIONS)

    def tearDown(self) -> None:
        """Every supervisor hangs up; nothing keeps running."""
        for phone in self.desk.phones:
            phone.hang_up()
        self.desk.run(0.1)
        for phone in self.desk.phones:
            self.successResultOf(phone.done)
        self.assertEqual(self.desk.supervision.monitors, {})
        self.assertEqual((self.desk.tap.taps, self.desk.tap.feeds), ({}, {}))
        self.assertEqual(self.desk.clock.getDelayedCalls(), [])


class PluginTests(SynchronousTestCase):
    """The dropin and its service."""

    def test_plugin(self) -> None:
        """The dropin provides IFeature named supervision and is discovered; the service registers the application and the API."""
        self.assertTrue(verifyObject(IFeature, supervision))
        self.assertIs(discover()["supervision"], supervision)
        desk = Desk(OPTIONS)
        self.assertTrue(
            verifyObject(IDialplanApplication, desk.pbx.applications["supervise"])
        )
        self.assertIn("supervision", desk.pbx.mounted)
        desk.service.stopService()


class SuperviseTests(DeskTestCase):
    """The ``supervise`` application."""

    def test_listen(self) -> None:
        """*331001: the supervisor hears both parties, nobody is fed; hanging up restores the call."""
        phone = self.desk.call("1000", "*331001")
        self.desk.run(1.0)
        [(call_id, monitor)] = self.desk.supervision.monitors.values()
        self.assertEqual(
            (call_id, monitor.mode, monitor.agent), ("call-1", "listen", "a")
        )
        self.assertGreater(phone.hears(TONES["a"]), 0.8)
        self.assertGreater(phone.hears(TONES["b"]), 0.8)
        self.assertEqual(self.desk.tap.feeds, {})
        phone.hang_up()
        self.desk.run(0.1)
        self.successResultOf(phone.done)
        self.assertEqual((self.desk.tap.taps, self.desk.supervision.monitors), ({}, {}))

    def test_whisper_and_keys(self) -> None:
        """*341002 whispers to the callee (leg b); key 5 barges in, key 3 goes back to listening."""
        phone = self.desk.call("1009", "*341002")
        self.desk.run(1.0)
        [(_, monitor)] = self.desk.supervision.monitors.values()
        self.assertEqual((monitor.mode, monitor.agent), ("whisper", "b"))
        self.assertEqual(set(self.desk.tap.feeds), {"b"})
        self.assertGreater(self.desk.tap.hears("b", SUPERVISOR_TONE), 0.8)
        phone.press("5")
        self.desk.run(0.5)
        self.assertEqual(
            (monitor.mode, set(self.desk.tap.feeds)), ("barge", {"a", "b"})
        )
        self.assertGreater(self.desk.tap.hears("a", SUPERVISOR_TONE), 0.8)
        phone.press("3")
        self.desk.run(0.5)
        self.assertEqual((monitor.mode, self.desk.tap.feeds), ("listen", {}))

    def test_route_args(self) -> None:
        """A route's args name the mode and the extension instead of the number dialled."""
        self.desk.call("1000", "*99", {"mode": "barge", "extension": "1001"})
        self.desk.run(0.2)
        [(_, monitor)] = self.desk.supervision.monitors.values()
        self.assertEqual(monitor.mode, "barge")

    def test_not_allowed(self) -> None:
        """A supervisor not allowed over the extension hears the refusal and is hung up; the call is untouched."""
        refused = [self.desk.call("1000", "*331002"), self.desk.call("1001", "*331001")]
        self.desk.run(0.5)
        for phone in refused:
            self.successResultOf(phone.done)
            self.assertEqual(phone.played, REFUSED)
            self.assertTrue(phone.channel.hung_up)
        self.assertEqual(self.desk.tap.taps, {})

    def test_no_call_or_no_number(self) -> None:
        """An extension with no live call is refused; a number without an extension hears invalid-number."""
        idle = self.desk.call("1009", "*331005")
        bad = self.desk.call("1009", "*33")
        self.desk.run(0.5)
        self.assertEqual(idle.played, REFUSED)
        self.assertEqual(bad.played, ["general/invalid-number", "general/goodbye"])

    def test_call_ends(self) -> None:
        """When the supervised call ends, the supervisor is hung up and the monitor stopped."""
        phone = self.desk.call("1000", "*351001")
        self.desk.run(0.2)
        self.desk.pbx.events.publish(
            CallEvent("ended", "other-call", "1003", "1004", 0.0)
        )
        self.assertFalse(phone.channel.hung_up)
        self.desk.pbx.events.publish(CallEvent("ended", "call-1", "1001", "1002", 0.0))
        self.desk.run(0.1)
        self.assertTrue(phone.channel.hung_up)
        self.successResultOf(phone.done)
        self.assertEqual(self.desk.supervision.monitors, {})


class DeskTests(DeskTestCase):
    """Starting monitors directly (as the API does)."""

    def test_by_call_id(self) -> None:
        """By call id the agent is the party the supervisor may supervise; unknown calls and parties are refused."""
        _, monitor = self.desk.supervision.start("1000", "whisper", call_id="call-1")
        self.assertEqual(monitor.agent, "a")
        self.assertRaises(
            NoCall, self.desk.supervision.start, "1000", "listen", call_id="nope"
        )
        self.assertRaises(
            NotAllowed, self.desk.supervision.start, "1001", "listen", call_id="call-1"
        )
        self.assertRaises(
            ValueError, self.desk.supervision.start, "1000", "shout", call_id="call-1"
        )
        self.desk.supervision.stop("1000")
        self.assertEqual(self.desk.tap.feeds, {})

    def test_second_monitor_replaces_first(self) -> None:
        """A supervisor starting again stops its first monitor; stopping an old monitor leaves the new one."""
        _, first = self.desk.supervision.start("1009", "listen", target="1001")
        _, second = self.desk.supervision.start("1009", "listen", target="1002")
        self.assertFalse(first.running)
        self.desk.supervision.stop("1009", first)
        self.assertTrue(second.running)
        self.assertEqual(second.agent, "b")
        self.desk.service.stopService()
        self.assertFalse(second.running)
