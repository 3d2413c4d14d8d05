"""The in-memory test double passes the same store suite as the real backends."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from pbx.testing import MemoryStore

from support.store_suite import StoreSuiteMixin


class MemoryStoreTests(StoreSuiteMixin, TestCase):
    """pbx.testing.MemoryStore behaves like a real store."""

    async def make_store(self) -> MemoryStore:
        """A fresh MemoryStore."""
        return MemoryStore()
