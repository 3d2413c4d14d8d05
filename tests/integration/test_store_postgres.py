"""
Tests for :mod:`pbx.store.postgres`, against a real PostgreSQL server.

The server is named by ``PBX_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``).  Each test works in a schema of
its own, made for it and dropped after it.  When the server does not answer
the tests are skipped, unless ``CI`` is set: CI must have the server.
"""

from __future__ import annotations

import os
import secrets
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg2

from twisted.trial.unittest import SkipTest, TestCase

from pbx.interfaces import IStore
from pbx.records import ExtensionRecord
from pbx.store.postgres import PostgresStore
from pbx.store.schema import LATEST_VERSION
from pbx.store.url import open_store

from support.store_suite import SQLStoreSuiteMixin, deferred_test

URL = os.environ.get("PBX_TEST_POSTGRES") or "postgresql://postgres@127.0.0.1:5432/test"

#: The probe's outcome, once per process: None when the server answered.
_unreachable: list[str | None] = []


def _server_problem() -> str | None:
    """Why the server cannot be used, or None; asks it only the first time."""
    if not _unreachable:
        try:
            psycopg2.connect(URL, connect_timeout=2).close()
        except psycopg2.Error as e:
            _unreachable.append(" ".join(str(e).split()) or type(e).__name__)
        else:
            _unreachable.append(None)
    return _unreachable[0]


def _with_search_path(url: str, schema: str) -> str:
    """``url`` with every connection's ``search_path`` set to ``schema``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    query.append(("options", f"-c search_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _run(sql: str) -> None:
    """Run one statement outside the reactor (test setup and cleanup only)."""
    connection = psycopg2.connect(URL, connect_timeout=2)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def _reactor() -> Any:
    """The global reactor: store tests do real I/O."""
    from twisted.internet import reactor

    return reactor


class PostgresStoreTests(SQLStoreSuiteMixin, TestCase):
    """The shared store suite on PostgreSQL."""

    async def make_store(self) -> IStore:
        """A store in a new, empty schema; skipped if there is no server."""
        problem = _server_problem()
        if problem is not None:
            message = f"PostgreSQL not reachable at {URL}: {problem}"
            if os.environ.get("CI"):
                self.fail(message)
            raise SkipTest(message)
        schema = f"pbx_test_{secrets.token_hex(6)}"
        _run(f"CREATE SCHEMA {schema}")
        self.addCleanup(_run, f"DROP SCHEMA {schema} CASCADE")
        self.url = _with_search_path(URL, schema)
        return open_store(self.url, _reactor())

    def test_open_store_gives_postgres(self) -> None:
        """A postgresql:// URL opens a PostgresStore."""
        self.assertIsInstance(self.store, PostgresStore)

    @deferred_test
    async def test_persistent(self) -> None:
        """A second store on the same database, after the first closed, sees its data."""
        await self.store.put_extension(ExtensionRecord("100", name="Alice"))
        await self.store.close()
        again = open_store(self.url, _reactor())
        self.addCleanup(again.close)
        self.assertEqual(await again.migrate(), LATEST_VERSION)
        self.assertEqual(
            await again.get_extension("100"), ExtensionRecord("100", name="Alice")
        )

    def test_too_few_connections(self) -> None:
        """A pool of fewer than two connections is refused."""
        self.assertRaises(ValueError, PostgresStore, self.url, _reactor(), 1)


class UnreachablePostgresTests(TestCase):
    """A server that does not answer is reported by the first call."""

    @deferred_test
    async def test_unreachable(self) -> None:
        """Migrating a store whose server refuses connections fails its Deferred."""
        # Port 1 on loopback: nothing listens there, so the refusal is immediate.
        store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", _reactor())
        self.addCleanup(store.close)
        with self.assertRaises(psycopg2.OperationalError):
            await store.migrate()
