"""Tests for :mod:`pbx.security.defence`."""

from __future__ import annotations

from typing import Any

from zope.interface.verify import verifyObject

from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import SecurityConfig
from pbx.security.defence import SWEEP_INTERVAL, Ban, SourceDefence, is_scanner
from pbx.security.interfaces import ISourceDefence
from pbx.security.networks import parse_networks
from pbx.security.ratelimit import Limit

HOST = "192.0.2.7"
OTHER = "192.0.2.8"


def invite(n: int) -> bytes:
    """A new INVITE (its own branch)."""
    return f"INVITE sip:1001@pbx SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-{n}\r\n\r\n".encode()


class DefenceTests(SynchronousTestCase):
    """Rate limits, scores, bans and the allow-list."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.bans: list[Ban] = []
        self.defence = SourceDefence(
            self.clock, {"INVITE": Limit(10, 5)}, parse_networks(["10.0.0.0/8"]),
        )
        self.defence.add_ban_listener(self.bans.append)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def tearDown(self) -> None:
        self.defence.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def admit(self, host: str, first: int, count: int) -> list[bool]:
        """Offer ``count`` new INVITEs from ``host``; what admit said to each."""
        return [self.defence.admit(invite(n), host) for n in range(first, first + count)]

    def test_interface(self) -> None:
        """SourceDefence provides ISourceDefence."""
        self.assertTrue(verifyObject(ISourceDefence, self.defence))

    def test_burst_then_limited(self) -> None:
        """The burst passes, the next is dropped, and the bucket refills at the rate."""
        self.assertEqual(self.admit(HOST, 0, 6), [True] * 5 + [False])
        self.clock.advance(0.1)
        self.assertEqual(self.admit(HOST, 6, 2), [True, False])
        self.assertEqual(self.defence.stats["limited"], 2)

    def test_per_source(self) -> None:
        """One source's flood does not limit another."""
        self.admit(HOST, 0, 50)
        self.assertEqual(self.admit(OTHER, 0, 5), [True] * 5)

    def test_unlimited_kinds(self) -> None:
        """Kinds without a limit pass."""
        self.admit(HOST, 0, 5)
        self.assertTrue(self.defence.admit(b"OPTIONS sip:x SIP/2.0\r\n\r\n", HOST))

    def test_retransmission_passes(self) -> None:
        """A retransmission of an admitted INVITE passes when the bucket is empty; a new one does not."""
        self.admit(HOST, 0, 5)
        self.assertTrue(self.defence.admit(invite(0), HOST))
        self.assertFalse(self.defence.admit(invite(99), HOST))

    def test_flood_bans(self) -> None:
        """500 dropped requests ban the source for 60 s with one warning; then everything is dropped."""
        self.assertEqual(sum(self.admit(HOST, 0, 504)), 5)
        self.assertFalse(self.defence.banned(HOST))
        self.admit(HOST, 504, 1)
        self.assertTrue(self.defence.banned(HOST))
        self.assertEqual(self.bans, [Ban(HOST, 1_000, 1_060, 1, "flood")])
        warnings = [formatEvent(e) for e in self.events if "banned" in e.get("log_format", "")]
        self.assertEqual(warnings, [f"banned {HOST} for 60 s: flood (ban 1)"])
        self.assertFalse(self.defence.admit(b"OPTIONS sip:x SIP/2.0\r\n\r\n", HOST))
        self.assertEqual([b.host for b in self.defence.bans()], [HOST])
        self.clock.advance(60)
        self.assertFalse(self.defence.banned(HOST))
        self.assertTrue(self.defence.admit(invite(1_000), HOST))

    def test_bans_grow(self) -> None:
        """Each further ban doubles, up to ban_max_time."""
        defence = SourceDefence(self.clock, ban_time=60, ban_max_time=200)
        durations = []
        for _ in range(4):
            defence.offence(HOST, "scanner")
            [ban] = defence.bans()
            durations.append(ban.until - ban.since)
            self.clock.advance(ban.until - self.clock.seconds())
        self.assertEqual(durations, [60, 120, 200, 200])

    def test_strikes_forgotten(self) -> None:
        """A source out of trouble for ban_max_time after its ban starts again at ban_time."""
        defence = SourceDefence(self.clock, ban_time=60, ban_max_time=200)
        defence.offence(HOST, "scanner")
        self.clock.advance(60 + 200)
        defence.offence(HOST, "scanner")
        [ban] = defence.bans()
        self.assertEqual((ban.strikes, ban.until - ban.since), (1, 60))

    def test_scores(self) -> None:
        """Offences add their points; ten auth failures ban; scores halve every 300 s."""
        for _ in range(9):
            self.assertFalse(self.defence.offence(HOST, "auth failure"))
        self.assertEqual(self.defence.scores(), [(HOST, 90.0)])
        self.clock.advance(300)
        self.assertEqual(self.defence.scores(), [(HOST, 45.0)])
        for _ in range(6):
            self.defence.offence(HOST, "auth failure")
        self.assertEqual(self.defence.scores(), [])
        self.assertEqual([(b.host, b.reason) for b in self.defence.bans()], [(HOST, "auth failure")])

    def test_allow_list(self) -> None:
        """An allow-listed source is never limited, scored or banned."""
        self.assertEqual(self.admit("10.1.2.3", 0, 2_000), [True] * 2_000)
        self.assertFalse(self.defence.offence("10.1.2.3", "scanner"))
        self.assertEqual(self.defence.bans(), [])
        self.assertEqual(self.defence.allow_list(), ["10.0.0.0/8"])

    def test_set_allow_list_lifts_ban(self) -> None:
        """Allow-listing a banned source lifts its ban; a bad network is refused."""
        self.defence.offence(HOST, "scanner")
        self.defence.set_allow_list(["192.0.2.0/24"])
        self.assertFalse(self.defence.banned(HOST))
        self.assertRaises(ValueError, self.defence.set_allow_list, ["not-a-network"])

    def test_unban(self) -> None:
        """Unbanning lifts the ban and forgets the source."""
        self.defence.offence(HOST, "scanner")
        self.assertTrue(self.defence.unban(HOST))
        self.assertFalse(self.defence.banned(HOST))
        self.assertFalse(self.defence.unban(HOST))
        self.assertEqual(self.defence.tracked, 0)

    def test_sweep(self) -> None:
        """The periodic sweep forgets idle sources and keeps banned ones."""
        self.defence.start()
        self.admit(HOST, 0, 3)
        self.clock.advance(SWEEP_INTERVAL / 2)
        self.defence.offence(OTHER, "scanner")
        self.assertEqual(self.defence.tracked, 2)
        self.clock.advance(SWEEP_INTERVAL / 2)
        self.assertEqual(self.defence.tracked, 1)
        self.assertTrue(self.defence.banned(OTHER))

    def test_bounded(self) -> None:
        """At max_sources the oldest sources are dropped, banned ones last."""
        defence = SourceDefence(self.clock, {"INVITE": Limit(1, 1)}, max_sources=100)
        defence.offence("192.0.2.200", "scanner")
        for n in range(150):
            defence.admit(invite(0), f"198.51.100.{n}")
        self.assertLessEqual(defence.tracked, 100)
        self.assertTrue(defence.banned("192.0.2.200"))

    def test_ban_listener_failure_logged(self) -> None:
        """A failing ban listener is logged; the ban stands and later listeners are told."""
        def fail(ban: Ban) -> None:
            raise RuntimeError("store down")

        told: list[Ban] = []
        defence = SourceDefence(self.clock)
        defence.add_ban_listener(fail)
        defence.add_ban_listener(told.append)
        self.assertTrue(defence.offence(HOST, "scanner"))
        self.assertTrue(defence.banned(HOST))
        self.assertEqual([ban.host for ban in told], [HOST])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_from_config(self) -> None:
        """The security section's limits, allow-list and ban times are used."""
        config = SecurityConfig(allow=("127.0.0.0/8",), rate_limits=(("INVITE", Limit(1, 2)),), ban_time=5,
                                ban_max_time=10)
        defence = SourceDefence.from_config(self.clock, config)
        self.assertEqual(defence.allow_list(), ["127.0.0.0/8"])
        self.assertEqual([defence.admit(invite(n), HOST) for n in range(3)], [True, True, False])
        defence.offence(HOST, "scanner")
        [ban] = defence.bans()
        self.assertEqual(ban.until - ban.since, 5)

    def test_scanners(self) -> None:
        """Known scanner User-Agents are recognised, ordinary phones are not."""
        self.assertTrue(is_scanner("friendly-scanner"))
        self.assertTrue(is_scanner("VaxSIPUserAgent/3.1"))
        self.assertFalse(is_scanner("Yealink SIP-T46S 66.86.0.15"))
        self.assertFalse(is_scanner("sipsak 0.9.8"))
