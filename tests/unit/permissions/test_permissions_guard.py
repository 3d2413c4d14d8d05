"""Tests for :mod:`pbx.permissions.guard` and :mod:`pbx.permissions.alerts`."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.events import CallEvent
from pbx.emergency.desk import make_desk
from pbx.emergency.options import parse_emergency
from pbx.permissions.alerts import AUDIT_KIND, MAX_ALERTS
from pbx.permissions.classes import ServiceClass
from pbx.permissions.guard import HOLD_KIND, HOUR, MAX_CALL_SECONDS, Guard, Verdict
from pbx.permissions.options import parse_permissions
from pbx.testing import MemoryStore

# 2026-12-07 16:00 UTC, a Monday: 08:00 in Los Angeles.
MONDAY_MORNING = 1796659200.0
UK = "+442071234567"
US = "+12125551234"
HOURS = {
    "timezone": "America/Los_Angeles",
    "hours": [{"days": "mon-fri", "from": "07:00", "to": "19:00"}],
}


class GuardTests(SynchronousTestCase):
    """Classes of service, limits, alerts and holds for outside calls."""

    def make(self, **section: Any) -> Guard:
        """A guard for ``permissions: section`` on this test's clock and store."""
        return Guard(parse_permissions(section), self.clock, self.store)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(MONDAY_MORNING)
        self.store = MemoryStore()

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def audited(self) -> list[tuple[str, str, str]]:
        """The toll-fraud audit events: (kind, subject, detail)."""
        return [
            (e.kind, e.subject, e.detail)
            for e in self.store.audit
            if e.kind == AUDIT_KIND
        ]

    # -- classes -------------------------------------------------------------

    def test_allowed_call_takes_a_ticket(self) -> None:
        """A call within the class is allowed and counts as up until released."""
        guard = self.make()
        decision = guard.check("1001", US)
        self.assertTrue(decision.allowed)
        self.assertEqual(
            (decision.verdict, decision.status, decision.number_class),
            (Verdict.ALLOW, 0, ServiceClass.NATIONAL),
        )
        self.assertEqual(guard.outside_calls("1001"), 1)
        guard.release(decision.ticket)
        guard.release(decision.ticket)
        self.assertEqual(guard.outside_calls("1001"), 0)

    def test_number_above_class_is_refused(self) -> None:
        """A national extension calling abroad or a premium number gets 403, a reason and the announcement."""
        guard = self.make(announcement="site/no-toll")
        for number, wanted in ((UK, "international"), ("+19005550000", "premium")):
            decision = guard.check("1001", number)
            self.assertEqual(
                (
                    decision.verdict,
                    decision.status,
                    decision.reason,
                    decision.announcement,
                ),
                (Verdict.REFUSE, 403, "Call Not Permitted", "site/no-toll"),
            )
            self.assertIn(
                f"a {wanted} number; the class of service is national (default)",
                decision.detail,
            )
            self.assertEqual(decision.ticket, "")
        self.assertEqual(guard.outside_calls("1001"), 0)
        self.assertEqual(guard.alerts.alerts(), [])

    def test_classes_by_extension_and_group(self) -> None:
        """An extension's own class beats its groups', which beat the default."""
        guard = self.make(
            default="internal",
            groups={"sales": {"class": "international", "members": ["1002"]}},
            extensions={"1003": "local", "1004": "premium"},
        )
        self.assertFalse(guard.check("1001", "+14085550000").allowed)
        self.assertTrue(guard.check("1002", UK).allowed)
        self.assertFalse(guard.check("1002", "+19765550000").allowed)
        self.assertFalse(guard.check("1003", US).allowed)
        self.assertTrue(guard.check("1004", "+19765550000").allowed)
        self.assertTrue(
            guard.check("1001", "2001").allowed
        )  # internal, over a tie line

    # -- emergency -----------------------------------------------------------

    def test_emergency_never_blocked_or_counted(self) -> None:
        """911 and 933, with or without the outside-line prefix, pass an internal, held, full, closed extension uncounted."""
        guard = self.make(
            default="internal",
            limits={"concurrent_outside": 1, "international_per_hour": 1, "hold": True},
            international_hours=HOURS,
        )
        guard.check("1001", "4000")  # the one outside call it may have up
        self.assertEqual(guard.check("1001", US).verdict, Verdict.REFUSE)  # class
        self.clock.advance(12 * HOUR)  # 20:00 in Los Angeles: international closed
        self.assertEqual(
            guard.check("1001", "4001").verdict, Verdict.HOLD
        )  # concurrent trips and holds
        for number, dialled, meant in (
            ("911", "911", "911"),
            ("+1911", "9911", "911"),
            ("933", "", "933"),
            ("9-911", "", "911"),
        ):
            decision = guard.check("1001", number, dialled=dialled, call_id="e")
            self.assertEqual(
                (decision.verdict, decision.emergency, decision.ticket),
                (Verdict.ALLOW, meant, ""),
            )
        self.assertEqual(
            (guard.outside_calls("1001"), guard.international_calls("1001")), (1, 0)
        )

    def test_emergency_numbers_of_the_configuration(self) -> None:
        """The guard asks the emergency desk, so emergency.dial and prefixes apply (112, 0112)."""
        desk = make_desk(
            parse_emergency({"dial": ["911", "112"], "prefixes": ["0"]}),
            self.store,
            self.clock,
            lambda aor: [],
        )
        guard = Guard(
            parse_permissions({"default": "internal"}),
            self.clock,
            self.store,
            emergency=desk.is_emergency,
        )
        self.assertEqual(guard.check("1001", "0112").emergency, "112")
        self.assertEqual(
            guard.check("1001", "9911").emergency, ""
        )  # 9 is no prefix here

    # -- concurrent calls ----------------------------------------------------

    def test_concurrent_limit(self) -> None:
        """The call over concurrent_outside is refused and alerts; a call ending makes room."""
        guard = self.make(limits={"concurrent_outside": 2})
        first = guard.check("1001", US)
        guard.check("1001", US)
        with capturedLogs() as logs:
            over = guard.check("1001", US)
        self.assertEqual(
            (over.verdict, over.status, over.limit, over.reason),
            (Verdict.REFUSE, 403, "concurrent_outside", "Too Many Outside Calls"),
        )
        self.assertTrue(guard.check("1002", US).allowed)  # per extension
        warnings = [e for e in logs if e["log_level"] == LogLevel.warn]
        self.assertEqual(
            [(e["extension"], e["limit"]) for e in warnings],
            [("1001", "concurrent_outside")],
        )
        self.assertEqual(
            self.audited(),
            [
                (
                    AUDIT_KIND,
                    "1001",
                    f"concurrent_outside: {US}: 2 outside calls up (limit 2)",
                )
            ],
        )
        guard.release(first.ticket)
        self.assertTrue(guard.check("1001", US).allowed)

    def test_call_id_counts_once(self) -> None:
        """A call asked again (failover to the next trunk) gets the same decision, counted once; ended releases it."""
        guard = self.make(
            limits={"concurrent_outside": 1, "international_per_hour": 5},
            default="international",
        )
        decision = guard.check("1001", UK, call_id="abc@phone")
        self.assertEqual(decision.ticket, "abc@phone")
        self.assertIs(guard.check("1001", UK, call_id="abc@phone"), decision)
        self.assertEqual(
            (guard.outside_calls("1001"), guard.international_calls("1001")), (1, 1)
        )
        guard.on_call_event(
            CallEvent("answered", "abc@phone", "1001", UK, self.clock.seconds())
        )
        self.assertEqual(guard.outside_calls("1001"), 1)
        guard.on_call_event(
            CallEvent("ended", "abc@phone", "1001", UK, self.clock.seconds())
        )
        self.assertEqual(guard.outside_calls("1001"), 0)

    def test_lost_release_stops_counting_after_a_day(self) -> None:
        """A ticket nobody released stops counting after MAX_CALL_SECONDS, with a warning."""
        guard = self.make(limits={"concurrent_outside": 1})
        guard.check("1001", US)
        self.clock.advance(MAX_CALL_SECONDS)
        self.assertFalse(guard.check("1001", US).allowed)
        self.clock.advance(1)
        with capturedLogs() as logs:
            self.assertTrue(guard.check("1001", US).allowed)
        self.assertTrue(any("never released" in e["log_format"] for e in logs))

    # -- international per hour ------------------------------------------------

    def test_hourly_window_slides(self) -> None:
        """The 11th international call within 60 minutes is refused; each call frees its slot 60 minutes later."""
        guard = self.make(default="premium", limits={"international_per_hour": 10})
        for minute in range(10):
            decision = guard.check("1001", UK if minute % 2 else "+19005550000")
            self.assertTrue(decision.allowed, minute)
            guard.release(decision.ticket)
            self.clock.advance(60)
        self.assertTrue(guard.check("1001", US).allowed)  # national calls do not count
        over = guard.check("1001", UK)
        self.assertEqual(
            (over.verdict, over.limit, over.reason),
            (Verdict.REFUSE, "international_per_hour", "International Call Limit"),
        )
        self.assertEqual(guard.international_calls("1001"), 10)
        # The first call was at t0; at t0 + 60 min it leaves the window.
        self.clock.advance(HOUR - 10 * 60 - 1)
        self.assertFalse(guard.check("1001", UK).allowed)
        self.clock.advance(1)
        self.assertTrue(guard.check("1001", UK).allowed)
        self.assertFalse(guard.check("1001", UK).allowed)
        self.clock.advance(60)
        self.assertTrue(guard.check("1001", UK).allowed)
        self.assertEqual(guard.international_calls("1001"), 10)
        self.clock.advance(HOUR)
        self.assertEqual(guard.international_calls("1001"), 0)

    def test_refused_calls_do_not_fill_the_window(self) -> None:
        """Only allowed international calls count toward the hourly limit."""
        guard = self.make(
            default="national",
            extensions={"1002": "international"},
            limits={"international_per_hour": 1},
        )
        self.assertFalse(guard.check("1002", "+19005550000").allowed)  # class refuses
        self.assertTrue(guard.check("1002", UK).allowed)

    def test_extension_limits(self) -> None:
        """An extension's own limits replace the section's, key by key."""
        guard = self.make(
            default="international",
            limits={"international_per_hour": 1, "concurrent_outside": 5},
            extensions={"1002": {"limits": {"international_per_hour": 3}}},
        )
        self.assertTrue(guard.check("1001", UK).allowed)
        self.assertFalse(guard.check("1001", UK).allowed)
        self.assertEqual(
            [guard.check("1002", UK).allowed for _ in range(4)],
            [True, True, True, False],
        )

    # -- international hours -------------------------------------------------

    def test_international_outside_hours(self) -> None:
        """International calls outside international_hours are refused and alert; national calls are not."""
        guard = self.make(default="international", international_hours=HOURS)
        self.assertTrue(guard.check("1001", UK).allowed)  # Monday 08:00 local
        self.clock.advance(11 * HOUR)  # 19:00 local
        closed = guard.check("1001", UK)
        self.assertEqual(
            (closed.verdict, closed.limit, closed.reason),
            (Verdict.REFUSE, "international_hours", "International Calls Closed"),
        )
        self.assertTrue(guard.check("1001", US).allowed)
        self.assertEqual(
            [a.limit for a in guard.alerts.alerts()], ["international_hours"]
        )

    # -- alerts ----------------------------------------------------------------

    def test_alerts_count_until_acknowledged(self) -> None:
        """The same limit tripping again counts on the open alert; after acknowledgement a new alert is raised and audited."""
        guard = self.make(limits={"concurrent_outside": 1})
        guard.check("1001", US)
        guard.check("1001", US)
        self.clock.advance(5)
        guard.check("1001", US)
        [alert] = guard.alerts.alerts()
        self.assertEqual((alert.count, alert.last - alert.time), (2, 5))
        self.assertEqual(len(self.audited()), 1)
        self.assertIs(
            guard.alerts.acknowledge(alert.id, "admin", self.clock.seconds()), alert
        )
        guard.alerts.acknowledge(alert.id, "other", 0)
        self.assertEqual(
            (alert.acknowledged_by, alert.as_dict()["acknowledged"]), ("admin", True)
        )
        guard.check("1001", US)
        newest, oldest = guard.alerts.alerts()
        self.assertEqual((newest.id, oldest.id), (2, 1))
        self.assertEqual([a.id for a in guard.alerts.alerts(unacknowledged=True)], [2])
        self.assertEqual(len(self.audited()), 2)
        self.assertIsNone(guard.alerts.acknowledge(99, "admin", 0))

    def test_alert_list_is_bounded(self) -> None:
        """Only the newest MAX_ALERTS alerts are kept; the audit trail has them all."""
        guard = self.make(limits={"concurrent_outside": 1})
        for n in range(MAX_ALERTS + 3):
            extension = str(2000 + n)
            guard.check(extension, US)
            guard.check(extension, US)
        kept = guard.alerts.alerts()
        self.assertEqual((len(kept), kept[-1].id), (MAX_ALERTS, 4))
        self.assertEqual(len(self.audited()), MAX_ALERTS + 3)

    def test_failed_audit_is_logged(self) -> None:
        """An audit write that fails is logged; the call is still refused."""
        guard = self.make(limits={"concurrent_outside": 1})
        self.patch(
            self.store, "add_audit", lambda event: Deferred.fromCoroutine(self._fail())
        )
        guard.check("1001", US)
        with capturedLogs() as logs:
            self.assertFalse(guard.check("1001", US).allowed)
        self.assertTrue(any(e.get("log_failure") for e in logs))
        self.flushLoggedErrors(OSError)

    async def _fail(self) -> int:
        raise OSError("disk full")

    def test_preview_changes_nothing(self) -> None:
        """preview() answers as check() would, with no ticket, count, alert or hold."""
        guard = self.make(
            default="international",
            limits={"international_per_hour": 1, "hold": True},
        )
        ask = guard.preview("1001", UK)
        self.assertEqual((ask.verdict, ask.ticket), (Verdict.ALLOW, ""))
        self.assertEqual(
            (guard.outside_calls("1001"), guard.international_calls("1001")), (0, 0)
        )
        self.assertTrue(guard.check("1001", UK).allowed)
        ask = guard.preview("1001", UK)
        self.assertEqual(
            (ask.verdict, ask.limit), (Verdict.HOLD, "international_per_hour")
        )
        self.assertEqual((guard.alerts.alerts(), guard.holds()), ([], []))
        self.assertEqual(guard.preview("1001", "911").emergency, "911")
        self.assertTrue(guard.check("1001", US).allowed)

    # -- holds -----------------------------------------------------------------

    def test_hold_until_released(self) -> None:
        """With limits.hold a trip holds every outside call, kept across restarts, until released."""
        guard = self.make(limits={"concurrent_outside": 1, "hold": True})
        first = guard.check("1001", US)
        tripped = guard.check("1001", US)
        self.assertEqual((tripped.verdict, tripped.status), (Verdict.HOLD, 403))
        guard.release(first.ticket)
        held = guard.check("1001", "+14085550000")
        self.assertEqual(
            (held.verdict, held.reason, held.limit),
            (Verdict.HOLD, "Outside Calls Held", ""),
        )
        self.assertTrue(guard.check("1002", US).allowed)
        self.assertEqual(
            len(guard.alerts.alerts()), 1
        )  # being held raises no alert of its own
        [(owner, _key, data)] = self.successResultOf(self.store.list_items(HOLD_KIND))
        self.assertEqual((owner, data["limit"]), ("1001", "concurrent_outside"))
        restarted = self.make(limits={"concurrent_outside": 1, "hold": True})
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(restarted.load())), 1
        )
        self.assertEqual(restarted.check("1001", US).verdict, Verdict.HOLD)
        self.assertEqual([h.extension for h in restarted.holds()], ["1001"])
        self.assertTrue(
            self.successResultOf(Deferred.fromCoroutine(restarted.release_hold("1001")))
        )
        self.assertFalse(
            self.successResultOf(Deferred.fromCoroutine(restarted.release_hold("1001")))
        )
        self.assertEqual(self.successResultOf(self.store.list_items(HOLD_KIND)), [])
        self.assertTrue(restarted.check("1001", US).allowed)

    def test_usage(self) -> None:
        """usage() lists extensions with calls up, international calls this hour or a hold."""
        guard = self.make(
            default="international", limits={"concurrent_outside": 1, "hold": True}
        )
        guard.release(guard.check("1001", UK).ticket)
        guard.check("1002", US)
        guard.check("1002", US)
        self.assertEqual(
            guard.usage(),
            [
                {
                    "extension": "1001",
                    "outside_calls": 0,
                    "international_last_hour": 1,
                    "held": False,
                },
                {
                    "extension": "1002",
                    "outside_calls": 1,
                    "international_last_hour": 0,
                    "held": True,
                },
            ],
        )
