"""Tests for :mod:`pbx.emergency.callback`: the PSAP callback window, on a :class:`task.Clock`."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.emergency.callback import CALLBACK_KIND, CallbackRegistry, number_key
from pbx.testing import MemoryStore


class CallbackRegistryTests(SynchronousTestCase):
    """Which extension a callback reaches, and for how long."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.store = MemoryStore()
        self.registry = CallbackRegistry(self.clock, 60, self.store)

    def test_window(self) -> None:
        """For 60 minutes after the call the callback number reaches the caller; then it does not."""
        self.registry.record_emergency("1000", "+15551230000")
        self.assertEqual(self.registry.callback_target("+15551230000"), "1000")
        self.clock.advance(60 * 60 - 1)
        self.assertEqual(self.registry.callback_target("+15551230000"), "1000")
        self.clock.advance(1)
        self.assertIsNone(self.registry.callback_target("+15551230000"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_explicit_now(self) -> None:
        """The times may be given instead of read from the clock."""
        self.registry.record_emergency("1000", "5551230000", now=50.0)
        self.assertEqual(
            self.registry.callback_target("5551230000", now=50.0 + 3599), "1000"
        )
        self.assertIsNone(self.registry.callback_target("5551230000", now=50.0 + 3600))

    def test_number_forms(self) -> None:
        """A callback presented without the country code or with separators still matches."""
        self.registry.record_emergency("1000", "+1 (555) 123-0000")
        for form in ("+15551230000", "15551230000", "5551230000", "555-123-0000"):
            self.assertEqual(self.registry.callback_target(form), "1000", form)
        self.assertIsNone(self.registry.callback_target("5551230001"))
        self.assertEqual(number_key("+15551230000"), "5551230000")
        self.assertEqual(number_key("1000"), "1000")

    def test_latest_caller_wins(self) -> None:
        """When two extensions presented the same number, the later caller is reached, with a fresh window."""
        self.registry.record_emergency("1000", "+15551230000")
        self.clock.advance(1800)
        self.registry.record_emergency("1001", "+15551230000")
        self.assertEqual(self.registry.callback_target("+15551230000"), "1001")
        self.clock.advance(3599)
        self.assertEqual(self.registry.callback_target("+15551230000"), "1001")

    def test_other_numbers(self) -> None:
        """A number never presented, or no number, reaches nobody."""
        self.registry.record_emergency("1000", "")
        self.assertIsNone(self.registry.callback_target(""))
        self.assertIsNone(self.registry.callback_target("+15559999999"))
        self.assertEqual(self.store.items, {})

    def test_survives_a_restart(self) -> None:
        """A new registry on the same store takes the windows still open and drops the closed ones."""
        self.registry.record_emergency("1000", "+15551230000")
        self.clock.advance(1000)
        self.registry.record_emergency("1001", "+15557654321")
        self.clock.advance(2700)  # the first window closed 100 s ago
        again = CallbackRegistry(self.clock, 60, self.store)
        self.assertEqual(self.successResultOf(again.load()), 1)
        self.assertEqual(again.callback_target("+15557654321"), "1001")
        self.assertIsNone(again.callback_target("+15551230000"))
        self.assertEqual(
            [
                k
                for _, k, _ in self.successResultOf(
                    self.store.list_items(CALLBACK_KIND)
                )
            ],
            ["5557654321"],
        )
        self.assertEqual(
            [(e, round(u - self.clock.seconds())) for _, e, u in again.open_windows()],
            [("1001", 900)],
        )

    def test_without_store(self) -> None:
        """Without a store the registry works in memory; loading finds nothing."""
        registry = CallbackRegistry(self.clock, 1)
        registry.record_emergency("1000", "+15551230000")
        self.assertEqual(registry.callback_target("+15551230000"), "1000")
        self.assertEqual(self.successResultOf(registry.load()), 0)
