"""Tests for the extension record cache."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.records import ExtensionRecord
from pbx.store.cache import ExtensionCache
from pbx.testing import MemoryStore


class ExtensionCacheTests(SynchronousTestCase):
    """Records are served from memory for the TTL and dropped on invalidate."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.store.extensions["100"] = ExtensionRecord("100", name="old")
        self.cache = ExtensionCache(self.store, self.clock, ttl=5)

    def test_cached_until_ttl(self) -> None:
        """A change in the store shows only after the TTL."""
        self.assertEqual(self.successResultOf(self.cache.get("100")).name, "old")
        self.store.extensions["100"] = ExtensionRecord("100", name="new")
        self.assertEqual(self.successResultOf(self.cache.get("100")).name, "old")
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(self.cache.get("100")).name, "new")
        self.assertEqual((self.cache.hits, self.cache.misses), (1, 2))

    def test_invalidate(self) -> None:
        """Invalidation makes the next get read the store."""
        self.successResultOf(self.cache.get("100"))
        del self.store.extensions["100"]
        self.cache.invalidate("100")
        self.assertIsNone(self.successResultOf(self.cache.get("100")))

    def test_unknown_cached(self) -> None:
        """An unknown number is remembered as unknown for the TTL."""
        self.assertIsNone(self.successResultOf(self.cache.get("999")))
        self.store.extensions["999"] = ExtensionRecord("999")
        self.assertIsNone(self.successResultOf(self.cache.get("999")))
        self.cache.invalidate()
        self.assertIsNotNone(self.successResultOf(self.cache.get("999")))
