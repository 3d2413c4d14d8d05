"""
:class:`pbx.interfaces.IStore` on PostgreSQL, through txpostgres.

txpostgres drives psycopg2's asynchronous connections from the reactor, so no
thread is needed.  Its connections are in autocommit mode: a lone statement is
its own transaction and ``runInteraction`` wraps several in BEGIN/COMMIT.

The pool connects on first use (the store's constructor does no I/O), so the
first call, normally :meth:`~pbx.interfaces.IStore.migrate`, reports a server
that cannot be reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attrs import define, field

from zope.interface import implementer

from twisted.internet.defer import Deferred, DeferredLock, FirstError, succeed
from twisted.internet.interfaces import IReactorFDSet
from txpostgres import txpostgres

from pbx.interfaces import IStore
from pbx.store import schema
from pbx.store.sql import Params, Row, SQLStore, Statement


class _Pool(txpostgres.ConnectionPool):  # type: ignore[misc]
    """A txpostgres pool on the given reactor rather than the global one."""

    def __init__(self, reactor: IReactorFDSet, dsn: str, connections: int) -> None:
        self.reactor = reactor
        super().__init__(None, dsn, min=connections)

    def close_opened(self) -> None:
        """Close the connections that opened, after :meth:`start` failed."""
        for connection in self.connections:
            # pollable() is the psycopg2 connection, None if connect() raised.
            if connection.pollable() is not None:
                connection.close()


async def _transaction(cursor: Any, statements: Sequence[Statement]) -> list[int]:
    # txpostgres has sent BEGIN; it commits when this returns, or rolls back.
    results = []
    for sql, params in statements:
        await cursor.execute(sql, tuple(params))
        if cursor.description is not None:  # INSERT ... RETURNING id
            results.append(int(cursor.fetchall()[0][0]))
        else:
            results.append(cursor.rowcount)
    return results


@implementer(IStore)
@define(eq=False)
class PostgresStore(SQLStore):
    """
    A store in a PostgreSQL database.

    :param dsn: a libpq connection string or URL
        (``postgresql://user@host:port/dbname``); it may carry a password, so
        it is never logged.
    :param reactor: the reactor that watches the connections' sockets.
    :param connections: how many connections to keep open (at least 2, so a
        long transaction does not hold up every other query).
    """

    _dialect = schema.POSTGRES

    _dsn: str
    _reactor: IReactorFDSet
    _connections: int = field(default=2)
    _pool: _Pool | None = field(init=False, default=None)
    _starting: DeferredLock = field(init=False, factory=DeferredLock)

    @_connections.validator
    def _check_connections(self, attribute: object, value: int) -> None:
        if value < 2:
            raise ValueError(
                f"a PostgreSQL store needs at least 2 connections, not {value}"
            )

    async def _ready(self) -> _Pool:
        """The pool, connected; the first caller connects it."""
        async with self._starting:
            if self._pool is None:
                pool = _Pool(self._reactor, self._dsn, self._connections)
                try:
                    await pool.start()
                except BaseException as e:
                    # Drop the connections that did open; the next call retries.
                    pool.close_opened()
                    if isinstance(e, FirstError):
                        # The first connection's own error, not the wrapper.
                        e.subFailure.raiseException()
                    raise
                self._pool = pool
        return self._pool

    def close(self) -> Deferred[None]:
        """Close every connection; the next call would reconnect."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        return succeed(None)

    def _run_query(self, sql: str, params: Params = ()) -> Deferred[list[Row]]:
        async def run() -> list[Row]:
            pool = await self._ready()
            rows = await pool.runQuery(sql, tuple(params))
            return [tuple(row) for row in rows]

        return Deferred.fromCoroutine(run())

    def _run_operation(self, sql: str, params: Params = ()) -> Deferred[None]:
        async def run() -> None:
            pool = await self._ready()
            await pool.runOperation(sql, tuple(params))

        return Deferred.fromCoroutine(run())

    def _run_interaction(self, statements: Sequence[Statement]) -> Deferred[list[int]]:
        async def run() -> list[int]:
            pool = await self._ready()
            counts: list[int] = await pool.runInteraction(
                lambda cursor: Deferred.fromCoroutine(_transaction(cursor, statements))
            )
            return counts

        return Deferred.fromCoroutine(run())

    def _run_insert(self, sql: str, params: Params) -> Deferred[int]:
        async def run() -> int:
            pool = await self._ready()
            ((new_id,),) = await pool.runQuery(sql + " RETURNING id", tuple(params))
            return int(new_id)

        return Deferred.fromCoroutine(run())
