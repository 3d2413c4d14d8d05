"""Tests for :mod:`pbx.security.lockout`."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pbx.security.lockout import Lockout

USER = ("user", "1001")
IP = ("ip", "127.0.0.1")


class LockoutTests(SynchronousTestCase):
    """Counting failures and locking keys out."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.lockout = Lockout(clock=self.clock)

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def fail_times(self, key: object, n: int) -> list[float]:
        """Record ``n`` failures for ``key`` and return what each call said."""
        return [self.lockout.record_failure(key) for _ in range(n)]  # type: ignore[arg-type]

    def test_threshold_per_kind(self) -> None:
        """A kind with its own threshold locks at that count; other kinds at max_failures."""
        self.lockout = Lockout(clock=self.clock, thresholds={"ip": 8})
        self.assertEqual(self.fail_times(IP, 7), [0] * 7)
        self.assertEqual(self.fail_times(USER, 5)[-1], 30)
        self.assertFalse(self.lockout.is_locked(IP))
        self.assertEqual(self.lockout.record_failure(IP), 30)

    def test_from_config_addresses(self) -> None:
        """From the config, every kind of address key gets lockout_address_failures; user keys lockout_failures."""
        from pbx.config import SecurityConfig

        lockout = Lockout.from_config(self.clock, SecurityConfig(lockout_failures=2, lockout_address_failures=20))
        self.assertEqual(lockout.thresholds, {"ip": 20, "vm-source": 20, "sip-ip": 20})
        self.assertEqual(lockout.max_failures, 2)

    def test_lock_after_max_failures(self) -> None:
        """The fifth failure locks the key for the base delay; four do not."""
        self.assertEqual(self.fail_times(USER, 4), [0, 0, 0, 0])
        self.assertFalse(self.lockout.is_locked(USER))
        self.assertIsNone(self.lockout.locked_until(USER))
        self.assertEqual(self.lockout.record_failure(USER), 30)
        self.assertTrue(self.lockout.is_locked(USER))
        self.assertEqual(self.lockout.locked_until(USER), 1_030)

    def test_lock_ends(self) -> None:
        """A lock ends when its delay has passed."""
        self.fail_times(USER, 5)
        self.clock.advance(29.9)
        self.assertTrue(self.lockout.is_locked(USER))
        self.clock.advance(0.1)
        self.assertFalse(self.lockout.is_locked(USER))

    def test_failures_while_locked(self) -> None:
        """Failures during a lock report the time left and neither count nor extend it."""
        self.fail_times(USER, 5)
        self.clock.advance(10)
        self.assertEqual(self.fail_times(USER, 20), [20] * 20)
        self.assertEqual(self.lockout.locked_until(USER), 1_030)
        self.clock.advance(20)
        self.assertEqual(self.fail_times(USER, 4), [0, 0, 0, 0])

    def test_growing_delays(self) -> None:
        """Each further lockout doubles the delay, up to the maximum."""
        delays = []
        for _ in range(10):
            delay = self.fail_times(USER, 5)[-1]
            delays.append(delay)
            self.clock.advance(delay)
        self.assertEqual(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600])

    def test_window_forgets(self) -> None:
        """Failures older than the window no longer count."""
        self.fail_times(USER, 4)
        self.clock.advance(300)
        self.assertEqual(self.fail_times(USER, 4), [0, 0, 0, 0])
        self.assertFalse(self.lockout.is_locked(USER))
        self.assertEqual(self.lockout.record_failure(USER), 30)

    def test_sliding_window(self) -> None:
        """Only the failures inside the last window count toward a lock."""
        for _ in range(12):
            self.assertEqual(self.lockout.record_failure(USER), 0)
            self.clock.advance(75)  # four failures per 300 s window at most
        self.assertFalse(self.lockout.is_locked(USER))

    def test_strikes_forgotten_after_quiet(self) -> None:
        """After staying quiet for the maximum delay past a lock, delays start over."""
        self.fail_times(USER, 5)
        self.clock.advance(30)
        self.assertEqual(self.fail_times(USER, 5)[-1], 60)
        self.clock.advance(60 + 3600)
        self.assertEqual(self.fail_times(USER, 5)[-1], 30)

    def test_success_resets(self) -> None:
        """A success clears failures and past lockouts of that key."""
        self.fail_times(USER, 4)
        self.lockout.record_success(USER)
        self.assertEqual(self.fail_times(USER, 4), [0, 0, 0, 0])
        self.lockout.record_failure(USER)
        self.clock.advance(30)
        self.lockout.record_success(USER)
        self.assertEqual(self.fail_times(USER, 5)[-1], 30)

    def test_keys_independent(self) -> None:
        """Failures of one key do not count against another."""
        self.fail_times(USER, 5)
        self.fail_times(IP, 4)
        self.assertTrue(self.lockout.is_locked(USER))
        self.assertFalse(self.lockout.is_locked(IP))
        self.assertFalse(self.lockout.is_locked(("user", "1002")))
        self.lockout.record_success(IP)
        self.assertTrue(self.lockout.is_locked(USER))

    def test_snapshot(self) -> None:
        """The snapshot lists locked keys only, soonest unlock first."""
        self.fail_times(USER, 5)
        self.fail_times(("user", "1002"), 5)
        self.clock.advance(30)
        self.fail_times(("user", "1002"), 5)  # second lock: 60 s
        self.fail_times(IP, 5)
        self.fail_times(("ip", "10.0.0.1"), 2)
        self.assertEqual(
            self.lockout.snapshot(), [(IP, 1_060), (("user", "1002"), 1_090)]
        )

    def test_custom_settings(self) -> None:
        """Thresholds and delays come from the constructor."""
        lockout = Lockout(
            clock=self.clock, max_failures=2, window=10, base_delay=5, max_delay=12
        )
        self.assertEqual([lockout.record_failure(USER) for _ in range(2)], [0, 5])
        self.clock.advance(5)
        self.assertEqual([lockout.record_failure(USER) for _ in range(2)], [0, 10])
        self.clock.advance(10)
        self.assertEqual([lockout.record_failure(USER) for _ in range(2)], [0, 12])

    def test_bad_settings(self) -> None:
        """Nonsensical settings are refused at construction."""
        self.assertRaises(ValueError, Lockout, clock=self.clock, max_failures=0)
        self.assertRaises(
            ValueError, Lockout, clock=self.clock, base_delay=60, max_delay=30
        )
        self.assertRaises(ValueError, Lockout, clock=self.clock, window=0)


class LockoutMemoryTests(SynchronousTestCase):
    """The key table stays bounded."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.lockout = Lockout(clock=self.clock, max_keys=1_000, prune_every=100)

    def test_flood_of_keys(self) -> None:
        """100,000 distinct keys failing at once never hold more than the cap."""
        most = 0
        for i in range(100_000):
            self.lockout.record_failure(("ip", str(i)))
            most = max(most, self.lockout.tracked_keys)
        self.assertLessEqual(most, 1_000)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flood_spares_locked_keys(self) -> None:
        """A flood of new keys evicts idle-but-unlocked keys before a locked one."""
        for _ in range(5):
            self.lockout.record_failure(USER)
        for i in range(3_000):
            self.lockout.record_failure(("ip", str(i)))
        self.assertTrue(self.lockout.is_locked(USER))

    def test_idle_keys_pruned(self) -> None:
        """Keys whose failures aged out are dropped at the next periodic sweep."""
        for i in range(500):
            self.lockout.record_failure(("ip", str(i)))
        self.clock.advance(300)
        for _ in range(100):
            self.lockout.record_failure(IP)
        self.assertEqual(self.lockout.tracked_keys, 1)
        self.assertEqual(self.lockout.prune(), 0)

    def test_locked_keys_kept_until_quiet(self) -> None:
        """A key that was locked is remembered until its strikes are forgotten."""
        for _ in range(5):
            self.lockout.record_failure(USER)
        self.clock.advance(31)
        self.assertEqual(self.lockout.prune(), 0)
        self.clock.advance(3600)
        self.assertEqual(self.lockout.prune(), 1)
        self.assertEqual(self.lockout.tracked_keys, 0)


class LockoutLogTests(SynchronousTestCase):
    """record_failures: one warning per lockout, naming who, from where and for how long."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.lockout = Lockout(clock=self.clock, max_failures=3)
        self.events: list[dict[str, Any]] = []
        self.patch(Lockout, "log", Logger(observer=self.events.append))

    def fail(self, user: str = "1001", ip: str = "192.0.2.7") -> float:
        """One failed SIP digest attempt by ``user`` from ``ip``."""
        return self.lockout.record_failures(
            [("sip-ip", ip), ("sip-user", user)], what="SIP digest", who=user, source=ip
        )

    def lines(self) -> list[str]:
        """The text of each logged event, checking it is a warning."""
        self.assertEqual({e["log_level"].name for e in self.events} - {"warn"}, set())
        return [formatEvent(e) for e in self.events]

    def test_one_line_at_the_lock(self) -> None:
        """Two failures log nothing; the third logs one warning with user, address and delay."""
        self.assertEqual([self.fail(), self.fail()], [0, 0])
        self.assertEqual(self.lines(), [])
        self.assertEqual(self.fail(), 30)
        self.assertEqual(
            self.lines(),
            [
                "SIP digest lockout: '1001' from 192.0.2.7 locked out for 30 s"
                " (too many failures by sip-ip and sip-user)"
            ],
        )

    def test_nothing_while_locked(self) -> None:
        """Failures during the lock return the time left and log nothing more."""
        for _ in range(3):
            self.fail()
        self.clock.advance(10)
        self.assertEqual(self.fail(), 20)
        self.assertEqual(len(self.lines()), 1)

    def test_one_key_locks(self) -> None:
        """An address guessing several users is locked by its address alone; the line names the user of that attempt."""
        for user in ("1001", "1002", "1003"):
            self.fail(user=user)
        self.assertEqual(
            self.lines(),
            [
                "SIP digest lockout: '1003' from 192.0.2.7 locked out for 30 s"
                " (too many failures by sip-ip)"
            ],
        )
        self.assertTrue(self.lockout.is_locked(("sip-ip", "192.0.2.7")))
        self.assertFalse(self.lockout.is_locked(("sip-user", "1003")))

    def test_who_is_quoted(self) -> None:
        """A user name from the network cannot break the line: it is logged quoted."""
        for _ in range(3):
            self.fail(user="x\nforged line")
        [line] = self.lines()
        self.assertNotIn("\n", line)
        self.assertIn("'x\\nforged line'", line)

    def test_growing_delay_logged(self) -> None:
        """The second lockout's line gives the doubled delay."""
        for _ in range(3):
            self.fail()
        self.clock.advance(30)
        for _ in range(3):
            self.fail()
        self.assertIn("locked out for 60 s", self.lines()[-1])
        self.assertEqual(len(self.lines()), 2)
