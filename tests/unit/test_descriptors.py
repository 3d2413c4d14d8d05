"""Tests for :mod:`pbx.descriptors`: raising and sharing out the open files limit."""

from __future__ import annotations

import resource

from twisted.trial.unittest import SynchronousTestCase

from pbx.config import APIConnectionsConfig, SIPConnectionsConfig
from pbx.descriptors import (
    RESERVED,
    SIP_CEILING,
    UNLIMITED,
    raise_descriptor_limit,
    share_descriptors,
)


class FakeLimits:
    """Stands in for getrlimit/setrlimit on RLIMIT_NOFILE."""

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.set: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        """The limits."""
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        """Record (or refuse) a change."""
        assert which == resource.RLIMIT_NOFILE
        if self.refuse:
            raise ValueError("not allowed")
        self.set.append(limits)
        self.soft, self.hard = limits


class RaiseTests(SynchronousTestCase):
    """The soft limit goes up to the hard one."""

    def test_raised(self) -> None:
        """A soft limit under the hard one is raised to it."""
        limits = FakeLimits(1024, 524288)
        self.assertEqual(raise_descriptor_limit(limits.getrlimit, limits.setrlimit), (1024, 524288, 524288))
        self.assertEqual(limits.set, [(524288, 524288)])

    def test_already_there(self) -> None:
        """A soft limit at the hard one is left alone."""
        limits = FakeLimits(1024, 1024)
        self.assertEqual(raise_descriptor_limit(limits.getrlimit, limits.setrlimit), (1024, 1024, 1024))
        self.assertEqual(limits.set, [])

    def test_unlimited_hard(self) -> None:
        """An unlimited hard limit is taken as UNLIMITED descriptors."""
        limits = FakeLimits(1024, resource.RLIM_INFINITY)
        _, now, _ = raise_descriptor_limit(limits.getrlimit, limits.setrlimit)
        self.assertEqual(now, UNLIMITED)
        self.assertEqual(limits.set, [(UNLIMITED, resource.RLIM_INFINITY)])

    def test_refused(self) -> None:
        """If the system refuses, the old soft limit is the one in force."""
        limits = FakeLimits(1024, 4096, refuse=True)
        self.assertEqual(raise_descriptor_limit(limits.getrlimit, limits.setrlimit), (1024, 1024, 4096))


class ShareTests(SynchronousTestCase):
    """How the descriptors are shared out."""

    def test_1024(self) -> None:
        """At 1,024 descriptors: 464 SIP connections (116 per address), 32 API (16 per address), 464 media."""
        budget = share_descriptors(1024, 10001, SIPConnectionsConfig(), APIConnectionsConfig())
        self.assertEqual((budget.sip.max_total, budget.sip.max_per_source), (464, 116))
        self.assertEqual((budget.api_total, budget.api_per_source, budget.media), (32, 16, 464))
        self.assertLessEqual(RESERVED + budget.api_total + budget.media + budget.sip.max_total, 1024)
        self.assertIn("SIP connections 464 (116 per address)", budget.describe())

    def test_small_rtp_range(self) -> None:
        """A small RTP range leaves the rest to SIP."""
        budget = share_descriptors(1024, 100, SIPConnectionsConfig(), APIConnectionsConfig())
        self.assertEqual((budget.media, budget.sip.max_total), (100, 828))

    def test_ceiling(self) -> None:
        """However high the limit, derived caps stop at their ceilings."""
        budget = share_descriptors(UNLIMITED, 10001, SIPConnectionsConfig(), APIConnectionsConfig())
        self.assertEqual((budget.sip.max_total, budget.api_total), (SIP_CEILING, 256))

    def test_configured_wins(self) -> None:
        """Configured caps and timeouts are kept as given; a per-source cap never exceeds the total."""
        sip = SIPConnectionsConfig(max_total=100, max_per_source=500, first_message_timeout=7, idle_timeout=90,
                                   max_message=8192, max_buffered=65536)
        budget = share_descriptors(1024, 10001, sip, APIConnectionsConfig(max_total=4, max_per_source=2))
        self.assertEqual((budget.sip.max_total, budget.sip.max_per_source), (100, 100))
        self.assertEqual((budget.sip.first_message_timeout, budget.sip.idle_timeout), (7.0, 90.0))
        self.assertEqual((budget.sip.max_message, budget.sip.max_buffered), (8192, 65536))
        self.assertEqual((budget.api_total, budget.api_per_source), (4, 2))
