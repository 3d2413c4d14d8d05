"""
Tests for :mod:`pbx.store.sqlite` and the database URLs of :mod:`pbx.store.url`.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from pbx.interfaces import IStore
from pbx.records import ExtensionRecord
from pbx.store.schema import LATEST_VERSION
from pbx.store.sqlite import SQLiteStore
from pbx.store.url import StoreURL, StoreURLError, open_store, parse_store_url

from support.store_suite import SQLStoreSuiteMixin, deferred_test


def _reactor() -> Any:
    """The global reactor: store tests do real I/O."""
    from twisted.internet import reactor

    return reactor


class SQLiteStoreTests(SQLStoreSuiteMixin, TestCase):
    """The shared store suite on an SQLite database file."""

    async def make_store(self) -> IStore:
        """A store in a new file, in a directory that does not exist yet."""
        self.path = os.path.join(self.mktemp(), "state", "pbx.db")
        return SQLiteStore(self.path, _reactor())

    def test_wal_mode(self) -> None:
        """The database file is in write-ahead-log mode."""
        connection = sqlite3.connect(self.path)
        try:
            (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        finally:
            connection.close()
        self.assertEqual(mode, "wal")

    @deferred_test
    async def test_commits_are_flushed(self) -> None:
        """Every connection commits with synchronous=FULL: a commit is on disk when it returns."""
        assert isinstance(self.store, SQLiteStore)
        rows = await self.store._run_query("PRAGMA synchronous")
        self.assertEqual(rows, [(2,)])  # 2 is FULL

    @deferred_test
    async def test_persistent(self) -> None:
        """A second store on the same file, after the first closed, sees its data."""
        await self.store.put_extension(ExtensionRecord("100", name="Alice"))
        await self.store.close()
        again = SQLiteStore(self.path, _reactor())
        self.addCleanup(again.close)
        self.assertEqual(await again.migrate(), LATEST_VERSION)
        self.assertEqual(
            await again.get_extension("100"), ExtensionRecord("100", name="Alice")
        )


class MemorySQLiteStoreTests(TestCase):
    """An in-memory SQLite store, as tests of other modules use it."""

    @deferred_test
    async def test_memory_store(self) -> None:
        """``sqlite://:memory:`` opens a working store shared by every call."""
        store = open_store("sqlite://:memory:", _reactor())
        self.addCleanup(store.close)
        self.assertEqual(await store.migrate(), LATEST_VERSION)
        await store.put_setting("k", "v")
        self.assertEqual(await store.get_setting("k"), "v")


def _problem(url: str) -> str:
    try:
        parse_store_url(url)
    except StoreURLError as e:
        return str(e)
    raise AssertionError(f"{url!r} was accepted")


class StoreURLTests(SynchronousTestCase):
    """Database URLs name a backend and what it opens."""

    def test_sqlite_absolute(self) -> None:
        """Three slashes give an absolute path."""
        self.assertEqual(
            parse_store_url("sqlite:///var/lib/pbx/pbx.db"),
            StoreURL("sqlite", "/var/lib/pbx/pbx.db"),
        )

    def test_sqlite_relative(self) -> None:
        """Two slashes give a path relative to the working directory."""
        self.assertEqual(
            parse_store_url("sqlite://state/pbx.db"), StoreURL("sqlite", "state/pbx.db")
        )

    def test_sqlite_memory(self) -> None:
        """``sqlite://:memory:`` gives an in-memory database."""
        self.assertEqual(
            parse_store_url("sqlite://:memory:"), StoreURL("sqlite", ":memory:")
        )

    def test_sqlite_without_path(self) -> None:
        """An SQLite URL without a path is refused."""
        self.assertIn("names no database file", _problem("sqlite://"))

    def test_postgres(self) -> None:
        """Both PostgreSQL schemes pass the URL on to libpq unchanged."""
        for url in (
            "postgresql://pbx@db.example.com:5432/pbx",
            "postgres://pbx@db/pbx?sslmode=require",
        ):
            self.assertEqual(parse_store_url(url), StoreURL("postgresql", url))

    def test_postgres_invalid(self) -> None:
        """A PostgreSQL URL libpq cannot parse is refused without showing its password."""
        for url in (
            "postgresql://pbx:s3cret@db/pbx?bogus=1",
            "postgresql://pbx:s3cret@[db/pbx",
        ):
            problem = _problem(url)
            self.assertIn("invalid PostgreSQL URL: ", problem)
            self.assertNotIn("s3cret", problem)

    def test_unknown_scheme(self) -> None:
        """An unknown scheme is refused, listing the supported forms but not the URL."""
        problem = _problem("mysql://root:s3cret@db/pbx")
        self.assertIn("unsupported database type 'mysql'", problem)
        self.assertIn("postgresql://", problem)
        self.assertNotIn("s3cret", problem)

    def test_not_a_url(self) -> None:
        """Text without a scheme is refused."""
        self.assertIn("not a database URL", _problem("/var/lib/pbx/pbx.db"))

    def test_error_is_value_error(self) -> None:
        """StoreURLError is a ValueError, and open_store raises it too."""
        self.assertRaises(ValueError, open_store, "mysql://db/pbx", None)

    def test_open_store_sqlite(self) -> None:
        """open_store makes an SQLite store for an SQLite URL without touching the disk."""
        path = os.path.join(self.mktemp(), "pbx.db")
        store = open_store(f"sqlite://{path}", _reactor())
        self.addCleanup(store.close)
        self.assertIsInstance(store, SQLiteStore)
        self.assertFalse(os.path.exists(os.path.dirname(path)))
