"""
:class:`pbx.interfaces.IStore` on SQLite, through Twisted's ``adbapi`` pool.

:mod:`sqlite3` blocks, so every call runs in the pool's threads.  Connections
are in autocommit mode (``isolation_level=None``): a lone statement is its own
transaction, and :meth:`SQLiteStore._run_interaction` opens one explicitly with
``BEGIN IMMEDIATE`` (it takes the write lock at once, so two writers wait on
``busy_timeout`` instead of failing to upgrade a read lock).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from attrs import define, field

from zope.interface import implementer

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorCore

from pbx.interfaces import IStore
from pbx.store import schema
from pbx.store.sql import Params, Row, SQLStore, Statement

#: How long a connection waits for another's write lock before failing.
BUSY_TIMEOUT_MS = 5000

MEMORY = ":memory:"


def _configure(connection: sqlite3.Connection, memory: bool) -> None:
    """Set up one new connection; runs in a pool thread."""
    if not memory:
        # Readers do not block the writer nor the writer the readers.
        connection.execute("PRAGMA journal_mode=WAL")
        # A commit returns once the WAL is flushed to disk: what pbx
        # acknowledged survives a power cut too.  Writes that come together
        # share a commit (pbx.store.group_commit), so this costs one flush
        # per batch, not per registration.
        connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


class _Pool(adbapi.ConnectionPool):
    """An adbapi pool that makes the database's directory before connecting."""

    def __init__(self, path: str, reactor: IReactorCore, connections: int) -> None:
        memory = path == MEMORY
        self._directory = "" if memory else os.path.dirname(os.path.abspath(path))
        super().__init__(
            "sqlite3",
            path,
            check_same_thread=False,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
            cp_min=1,
            cp_max=connections,
            cp_openfun=lambda connection: _configure(connection, memory),
            cp_reactor=reactor,
        )

    def connect(self) -> Any:
        # Runs in a pool thread, like everything else that touches the disk.
        if self._directory:
            os.makedirs(self._directory, exist_ok=True)
            self._directory = ""  # once is enough; connect() runs per interaction
        return super().connect()


def _query(cursor: Any, sql: str, params: Params) -> list[Row]:
    cursor.execute(sql, tuple(params))
    return [tuple(row) for row in cursor.fetchall()]


def _operation(cursor: Any, sql: str, params: Params) -> None:
    cursor.execute(sql, tuple(params))


def _transaction(cursor: Any, statements: Sequence[Statement]) -> list[int]:
    # adbapi commits when this returns and rolls back if it raises.
    cursor.execute("BEGIN IMMEDIATE")
    results = []
    for sql, params in statements:
        cursor.execute(sql, tuple(params))
        if cursor.description is not None:  # INSERT ... RETURNING id
            results.append(int(cursor.fetchall()[0][0]))
        else:
            results.append(cursor.rowcount)
    return results


def _insert(cursor: Any, sql: str, params: Params) -> int:
    cursor.execute(sql, tuple(params))
    return int(cursor.lastrowid)


@implementer(IStore)
@define(eq=False)
class SQLiteStore(SQLStore):
    """
    A store in one SQLite database file (or in memory, for tests).

    :param path: the database file, created with its directory if missing;
        or ``":memory:"`` for a database that lives as long as the store.
    :param reactor: the reactor the pool reports results to.
    :param connections: the most connections (threads) for a file database.
        An in-memory database always uses exactly one: each connection would
        otherwise see a database of its own.
    """

    _dialect = schema.SQLITE

    _path: str
    _reactor: IReactorCore
    _connections: int = 4
    _pool: _Pool = field(init=False)
    _closed: bool = field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        connections = 1 if self._path == MEMORY else self._connections
        self._pool = _Pool(self._path, self._reactor, connections)

    @property
    def path(self) -> str:
        """The database file, or ``":memory:"``."""
        return self._path

    def close(self) -> Deferred[None]:
        """Close every connection and stop the pool's threads; idempotent."""
        if not self._closed:
            self._closed = True
            self._pool.close()
        return succeed(None)

    def _run_query(self, sql: str, params: Params = ()) -> Deferred[list[Row]]:
        d: Deferred[list[Row]] = self._pool.runInteraction(_query, sql, params)
        return d

    def _run_operation(self, sql: str, params: Params = ()) -> Deferred[None]:
        d: Deferred[None] = self._pool.runInteraction(_operation, sql, params)
        return d

    def _run_interaction(self, statements: Sequence[Statement]) -> Deferred[list[int]]:
        d: Deferred[list[int]] = self._pool.runInteraction(_transaction, statements)
        return d

    def _run_insert(self, sql: str, params: Params) -> Deferred[int]:
        d: Deferred[int] = self._pool.runInteraction(_insert, sql, params)
        return d
