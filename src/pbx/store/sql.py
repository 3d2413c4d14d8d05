"""
What the SQL backends share: every query and the mapping of rows to records.

:class:`SQLStore` implements all of :class:`pbx.interfaces.IStore` on top of
four primitives that a backend provides (run a query, run a statement, run a
transaction, insert a row and get its id).  Query text is written once, with
``{p}`` for each parameter; the backend's :class:`~pbx.store.schema.Dialect`
turns it into ``?`` or ``%s``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

from attrs import AttrsInstance, define, evolve, field, fields, frozen

from twisted.internet.defer import Deferred, succeed

from pbx.records import (
    AdminRecord,
    AuditEvent,
    Binding,
    CallRecord,
    ExtensionRecord,
    LiveCallEntry,
)
from pbx.store import schema
from pbx.store.group_commit import GroupCommit, Statement

Row = tuple[Any, ...]
Params = Sequence[object]


R = TypeVar("R", bound=AttrsInstance)
T = TypeVar("T")


def _columns(names: Sequence[str]) -> str:
    # Quoted: "end" is a reserved word in both databases.
    return ", ".join(f'"{name}"' for name in names)


@frozen
class _Table(Generic[R]):
    """
    A table holding one record type: a column per attrs field, same name.

    Booleans are stored as integers 0 and 1 (PostgreSQL has no implicit cast
    from boolean to integer, SQLite no boolean type); every other value is
    stored as it is and comes back with its type from both drivers.
    """

    name: str
    record: type[R]
    #: The primary key; a table without one has an ``id {serial}`` column.
    key: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The record's fields, but ``id``, which the database assigns."""
        return tuple(f.name for f in fields(self.record) if f.name != "id")

    @property
    def select(self) -> str:
        """``SELECT`` of every column (``id`` first, if any) with no condition."""
        names = self.columns if self.key else ("id", *self.columns)
        return f"SELECT {_columns(names)} FROM {self.name}"

    @property
    def insert(self) -> str:
        """
        Insert one record; for a keyed table, replace the one with its key.

        ``ON CONFLICT ... DO UPDATE`` rather than ``INSERT OR REPLACE``: the
        row is updated in place, not deleted and inserted again.
        """
        values = ", ".join("{p}" for _ in self.columns)
        sql = f"INSERT INTO {self.name} ({_columns(self.columns)}) VALUES ({values})"
        if not self.key:
            return sql
        updates = ", ".join(
            f'"{n}" = excluded."{n}"' for n in self.columns if n not in self.key
        )
        return f"{sql} ON CONFLICT ({_columns(self.key)}) DO UPDATE SET {updates}"

    def insert_many(self, count: int) -> str:
        """
        :attr:`insert` for ``count`` records in one statement (one VALUES
        row each).  For a keyed table the records must have distinct keys:
        PostgreSQL refuses to update one row twice in one statement.
        """
        head, _, tail = self.insert.partition(" VALUES (")
        row, _, conflict = tail.partition(")")
        return f"{head} VALUES " + ", ".join([f"({row})"] * count) + conflict

    def row(self, record: R) -> Row:
        """The parameters of :attr:`insert` for ``record``."""
        values = (getattr(record, name) for name in self.columns)
        return tuple(int(v) if isinstance(v, bool) else v for v in values)

    def from_row(self, row: Row) -> R:
        """The record a row of :attr:`select` holds."""
        names = self.columns if self.key else ("id", *self.columns)
        values = dict(zip(names, row, strict=True))
        for f in fields(self.record):
            if f.type in ("bool", bool):
                values[f.name] = bool(values[f.name])
        return self.record(**values)


_EXTENSIONS = _Table("extensions", ExtensionRecord, ("number",))
_BINDINGS = _Table("bindings", Binding, ("aor", "contact"))
_CALLS = _Table("call_records", CallRecord)
_AUDIT = _Table("audit", AuditEvent)
_ADMINS = _Table("admins", AdminRecord, ("username",))
_LIVE_CALLS = _Table("live_calls", LiveCallEntry, ("node", "call", "leg"))
_PUT_SETTING = (
    'INSERT INTO settings ("key", "value") VALUES ({p}, {p}) '
    'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value"'
)


_PUT_ITEM = (
    "INSERT INTO items (kind, owner, item_key, data) VALUES ({p}, {p}, {p}, {p}) "
    "ON CONFLICT (kind, owner, item_key) DO UPDATE SET data = excluded.data"
)


#: The most rows one multi-row statement carries (10 columns each stays far
#: below SQLite's 32,766 parameters).
ROWS_PER_STATEMENT = 500


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


@define(eq=False)
class SQLStore(ABC):
    """
    :class:`pbx.interfaces.IStore` over SQL; subclasses supply the connection.

    A subclass sets :attr:`_dialect` and implements the four ``_run_*``
    primitives.  Each returns a Deferred and runs without blocking the
    reactor.  Their SQL text has its markers already filled in.

    Writes that callers wait on before they acknowledge something (audit
    events, call records, the live-call journal) go through one
    :class:`~pbx.store.group_commit.GroupCommit`: those that arrive together
    share a transaction.
    """

    _dialect: ClassVar[schema.Dialect]
    _group: GroupCommit | None = field(init=False, default=None)

    @abstractmethod
    def _run_query(self, sql: str, params: Params = ()) -> Deferred[list[Row]]:
        """
        Run one query outside any explicit transaction.

        :returns: Deferred firing with every row.
        """

    @abstractmethod
    def _run_operation(self, sql: str, params: Params = ()) -> Deferred[None]:
        """Run one statement outside any explicit transaction."""

    @abstractmethod
    def _run_interaction(self, statements: Sequence[Statement]) -> Deferred[list[int]]:
        """
        Run statements in one transaction: all take effect, or none.

        :returns: Deferred firing with the row count of each statement, or
            for an ``INSERT ... RETURNING id`` the new row's id.
        """

    @abstractmethod
    def _run_insert(self, sql: str, params: Params) -> Deferred[int]:
        """
        Insert one row into a table whose primary key is ``id {serial}``.

        :returns: Deferred firing with the new row's ``id``.
        """

    def _sql(self, template: str) -> str:
        return self._dialect.sql(template)

    async def _query(self, template: str, *params: object) -> list[Row]:
        return await self._run_query(self._sql(template), params)

    async def _operation(self, template: str, *params: object) -> None:
        await self._run_operation(self._sql(template), params)

    async def _count(self, template: str, *params: object) -> int:
        (count,) = await self._run_interaction([(self._sql(template), params)])
        return count

    def _grouped(self, statements: Sequence[Statement]) -> Deferred[list[int]]:
        """Commit ``statements`` in the next shared transaction."""
        if self._group is None:
            self._group = GroupCommit(self._run_interaction)
        return self._group.submit(statements)

    def _insert_returning_id(self, table: _Table[Any], record: Any) -> Statement:
        return (self._sql(table.insert) + " RETURNING id", table.row(record))

    # Schema

    def migrate(self) -> Deferred[int]:
        """
        Apply every migration not yet recorded in ``schema_version``.

        :returns: Deferred firing with the schema version now in place.
        :raises pbx.store.schema.SchemaVersionError: (in the Deferred) if the
            database was migrated by a newer pbx.
        """
        return Deferred.fromCoroutine(self._migrate())

    async def _migrate(self) -> int:
        await self._operation(schema.VERSION_TABLE)
        rows = await self._query("SELECT version FROM schema_version")
        applied = {int(version) for (version,) in rows}
        record = self._sql(
            "INSERT INTO schema_version (version, description) VALUES ({p}, {p})"
        )
        for migration in schema.pending(applied):
            statements: list[Statement] = [
                (sql, ()) for sql in migration.render(self._dialect)
            ]
            statements.append((record, (migration.version, migration.description)))
            await self._run_interaction(statements)
        return schema.LATEST_VERSION

    # Extensions

    def get_extension(self, number: str) -> Deferred[ExtensionRecord | None]:
        """Deferred firing with the extension ``number``, or None."""
        return Deferred.fromCoroutine(self._get_extension(number))

    async def _get_extension(self, number: str) -> ExtensionRecord | None:
        rows = await self._query(_EXTENSIONS.select + " WHERE number = {p}", number)
        return _EXTENSIONS.from_row(rows[0]) if rows else None

    def list_extensions(self) -> Deferred[list[ExtensionRecord]]:
        """Deferred firing with every extension, ordered by number."""
        return Deferred.fromCoroutine(self._list_extensions())

    async def _list_extensions(self) -> list[ExtensionRecord]:
        rows = await self._query(_EXTENSIONS.select + " ORDER BY number")
        return [_EXTENSIONS.from_row(row) for row in rows]

    def put_extension(self, record: ExtensionRecord) -> Deferred[None]:
        """Insert or replace one extension."""
        return Deferred.fromCoroutine(
            self._operation(_EXTENSIONS.insert, *_EXTENSIONS.row(record))
        )

    def delete_extension(self, number: str) -> Deferred[bool]:
        """Delete one extension and its bindings; Deferred firing True if it existed."""
        return Deferred.fromCoroutine(self._delete_extension(number))

    async def _delete_extension(self, number: str) -> bool:
        _, deleted = await self._run_interaction(
            [
                (self._sql("DELETE FROM bindings WHERE aor = {p}"), (number,)),
                (self._sql("DELETE FROM extensions WHERE number = {p}"), (number,)),
            ]
        )
        return deleted > 0

    # Registrations

    def put_binding(self, binding: Binding) -> Deferred[None]:
        """Insert or replace the binding for (aor, contact)."""
        return Deferred.fromCoroutine(
            self._operation(_BINDINGS.insert, *_BINDINGS.row(binding))
        )

    def delete_binding(self, aor: str, contact: str) -> Deferred[bool]:
        """Remove one binding; Deferred firing True if it existed."""
        return Deferred.fromCoroutine(self._delete_binding(aor, contact))

    async def _delete_binding(self, aor: str, contact: str) -> bool:
        sql = "DELETE FROM bindings WHERE aor = {p} AND contact = {p}"
        return await self._count(sql, aor, contact) > 0

    def write_bindings(
        self, puts: Sequence[Binding], deletes: Sequence[tuple[str, str]]
    ) -> Deferred[None]:
        """
        Apply many binding changes in one transaction (deletes first).

        Each (aor, contact) may appear once among ``puts``.  The changes go
        in a few statements of many rows each: SQLite's driver hands the
        interpreter lock back and forth at every statement, and a busy
        reactor thread makes each hand-over slow.
        """
        statements: list[Statement] = []
        for chunk in _chunks(deletes, ROWS_PER_STATEMENT):
            where = " OR ".join(["(aor = {p} AND contact = {p})"] * len(chunk))
            statements.append((self._sql("DELETE FROM bindings WHERE " + where),
                               [v for key in chunk for v in key]))
        for rows in _chunks(puts, ROWS_PER_STATEMENT):
            statements.append((self._sql(_BINDINGS.insert_many(len(rows))),
                               [v for b in rows for v in _BINDINGS.row(b)]))
        d = self._run_interaction(statements) if statements else succeed([])
        return d.addCallback(lambda _: None)

    def delete_bindings(self, aor: str) -> Deferred[int]:
        """Remove every binding of ``aor``; Deferred firing with the count."""
        return Deferred.fromCoroutine(
            self._count("DELETE FROM bindings WHERE aor = {p}", aor)
        )

    def list_bindings(self, aor: str | None = None) -> Deferred[list[Binding]]:
        """Deferred firing with bindings (of one AOR, or all), ordered by aor, contact."""
        return Deferred.fromCoroutine(self._list_bindings(aor))

    async def _list_bindings(self, aor: str | None) -> list[Binding]:
        order = " ORDER BY aor, contact"
        if aor is None:
            rows = await self._query(_BINDINGS.select + order)
        else:
            rows = await self._query(_BINDINGS.select + " WHERE aor = {p}" + order, aor)
        return [_BINDINGS.from_row(row) for row in rows]

    def expire_bindings(self, now: float) -> Deferred[int]:
        """Delete bindings whose ``expires_at <= now``; Deferred firing with the count."""
        return Deferred.fromCoroutine(
            self._count("DELETE FROM bindings WHERE expires_at <= {p}", float(now))
        )

    # Call detail records

    def add_call_record(self, record: CallRecord) -> Deferred[int]:
        """Store one call record (its ``id`` is ignored); Deferred firing with the new id once committed."""
        d = self._grouped([self._insert_returning_id(_CALLS, record)])
        return d.addCallback(lambda ids: ids[0])

    def list_call_records(
        self,
        offset: int = 0,
        limit: int = 100,
        caller: str | None = None,
        callee: str | None = None,
        since: float | None = None,
        until: float | None = None,
        linked_id: str | None = None,
    ) -> Deferred[tuple[int, list[CallRecord]]]:
        """
        One page of call records, newest first.

        :param offset: how many matching records to skip.
        :param limit: the most records to return.
        :param caller: only records with exactly this caller.
        :param callee: only records with exactly this callee.
        :param since: only records that started at or after this time.
        :param until: only records that started before this time.
        :param linked_id: only the records of this conversation (every leg of
            a transferred call).
        :returns: Deferred firing with ``(total, records)``: ``total`` counts
            every matching record, not only this page.
        :raises ValueError: (in the Deferred) if ``offset`` or ``limit`` is
            negative.
        """
        return Deferred.fromCoroutine(
            self._list_call_records(offset, limit, caller, callee, since, until, linked_id)
        )

    async def _list_call_records(
        self,
        offset: int,
        limit: int,
        caller: str | None,
        callee: str | None,
        since: float | None,
        until: float | None,
        linked_id: str | None = None,
    ) -> tuple[int, list[CallRecord]]:
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        conditions: list[str] = []
        params: list[object] = []
        for condition, value in (
            ("caller = {p}", caller),
            ("callee = {p}", callee),
            ("start >= {p}", None if since is None else float(since)),
            ("start < {p}", None if until is None else float(until)),
            ("linked_id = {p}", linked_id),
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
        ((total,),) = await self._query(
            "SELECT COUNT(*) FROM call_records" + where, *params
        )
        page = " ORDER BY start DESC, id DESC LIMIT {p} OFFSET {p}"
        rows = await self._query(
            _CALLS.select + where + page, *params, int(limit), int(offset)
        )
        return int(total), [_CALLS.from_row(row) for row in rows]

    # Journal of live calls

    def journal_calls(self, entries: Sequence[LiveCallEntry]) -> Deferred[None]:
        """Insert or replace journal entries (one per leg); Deferred firing once committed."""
        if not entries:
            return succeed(None)
        insert = self._sql(_LIVE_CALLS.insert_many(len(entries)))
        d = self._grouped([(insert, [v for e in entries for v in _LIVE_CALLS.row(e)])])
        return d.addCallback(lambda _: None)

    def touch_calls(self, node: str, now: float) -> Deferred[int]:
        """Set ``touched`` of every entry of ``node``; Deferred firing with the count."""
        sql = self._sql("UPDATE live_calls SET touched = {p} WHERE node = {p}")
        d = self._grouped([(sql, (float(now), node))])
        return d.addCallback(lambda counts: counts[0])

    def finish_call(
        self, node: str, call: str, records: Sequence[CallRecord], live: Sequence[LiveCallEntry] = ()
    ) -> Deferred[None]:
        """
        Store a call's records and drop its journal entries, in one
        transaction: a crash leaves one or the other, never both.

        :param live: the call goes on with these entries instead (the
            records are of parties that left it, by a transfer or a park).
        """
        statements = [self._insert_returning_id(_CALLS, r) for r in records]
        statements.append((self._sql('DELETE FROM live_calls WHERE node = {p} AND "call" = {p}'), (node, call)))
        if live:
            insert = self._sql(_LIVE_CALLS.insert_many(len(live)))
            statements.append((insert, [v for e in live for v in _LIVE_CALLS.row(e)]))
        d = self._grouped(statements)
        return d.addCallback(lambda _: None)

    def recover_calls(self, node: str) -> Deferred[list[CallRecord]]:
        """
        Turn every journal entry of ``node`` into an ``INTERRUPTED`` call
        record, in one transaction.

        :returns: Deferred firing with the records stored, oldest first.
        """
        return Deferred.fromCoroutine(self._recover_calls(node))

    async def _recover_calls(self, node: str) -> list[CallRecord]:
        rows = await self._query(_LIVE_CALLS.select + ' WHERE node = {p} ORDER BY start, "call", leg', node)
        entries = [_LIVE_CALLS.from_row(row) for row in rows]
        if not entries:
            return []
        records = [e.interrupted() for e in entries]
        statements = [self._insert_returning_id(_CALLS, r) for r in records]
        delete = self._sql('DELETE FROM live_calls WHERE node = {p} AND "call" = {p} AND leg = {p}')
        statements += [(delete, (e.node, e.call, e.leg)) for e in entries]
        ids = await self._grouped(statements)
        return [evolve(r, id=i) for r, i in zip(records, ids, strict=False)]

    # Audit trail

    def add_audit(self, event: AuditEvent) -> Deferred[int]:
        """Store one audit event (its ``id`` is ignored); Deferred firing with the new id once committed."""
        d = self._grouped([self._insert_returning_id(_AUDIT, event)])
        return d.addCallback(lambda ids: ids[0])

    def list_audit(
        self, limit: int = 100, kind: str | None = None
    ) -> Deferred[list[AuditEvent]]:
        """
        The newest audit events.

        :param limit: the most events to return.
        :param kind: only events of exactly this kind.
        :returns: Deferred firing with events, newest first.
        :raises ValueError: (in the Deferred) if ``limit`` is negative.
        """
        return Deferred.fromCoroutine(self._list_audit(limit, kind))

    async def _list_audit(self, limit: int, kind: str | None) -> list[AuditEvent]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        page = " ORDER BY time DESC, id DESC LIMIT {p}"
        if kind is None:
            rows = await self._query(_AUDIT.select + page, int(limit))
        else:
            where = " WHERE kind = {p}"
            rows = await self._query(_AUDIT.select + where + page, kind, int(limit))
        return [_AUDIT.from_row(row) for row in rows]

    # API administrators

    def get_admin(self, username: str) -> Deferred[AdminRecord | None]:
        """Deferred firing with the administrator ``username``, or None."""
        return Deferred.fromCoroutine(self._get_admin(username))

    async def _get_admin(self, username: str) -> AdminRecord | None:
        rows = await self._query(_ADMINS.select + " WHERE username = {p}", username)
        return _ADMINS.from_row(rows[0]) if rows else None

    def put_admin(self, record: AdminRecord) -> Deferred[None]:
        """Insert or replace one administrator."""
        return Deferred.fromCoroutine(
            self._operation(_ADMINS.insert, *_ADMINS.row(record))
        )

    # Settings

    def get_setting(self, key: str) -> Deferred[str | None]:
        """Deferred firing with the string stored under ``key``, or None."""
        return Deferred.fromCoroutine(self._get_setting(key))

    async def _get_setting(self, key: str) -> str | None:
        rows = await self._query("SELECT value FROM settings WHERE key = {p}", key)
        return str(rows[0][0]) if rows else None

    def put_setting(self, key: str, value: str) -> Deferred[None]:
        """Store the string ``value`` under ``key``, replacing any old value."""
        return Deferred.fromCoroutine(self._operation(_PUT_SETTING, key, value))

    # Feature documents

    def put_item(self, kind: str, owner: str, key: str, data: dict[str, Any]) -> Deferred[None]:
        """Insert or replace one feature document."""
        text = json.dumps(data, ensure_ascii=False, sort_keys=True)
        return Deferred.fromCoroutine(self._operation(_PUT_ITEM, kind, owner, key, text))

    def get_item(self, kind: str, owner: str, key: str) -> Deferred[dict[str, Any] | None]:
        """Deferred firing with one feature document, or None."""
        return Deferred.fromCoroutine(self._get_item(kind, owner, key))

    async def _get_item(self, kind: str, owner: str, key: str) -> dict[str, Any] | None:
        rows = await self._query(
            "SELECT data FROM items WHERE kind = {p} AND owner = {p} AND item_key = {p}", kind, owner, key
        )
        return dict(json.loads(rows[0][0])) if rows else None

    def list_items(self, kind: str, owner: str | None = None,
                   search: str | None = None) -> Deferred[list[tuple[str, str, dict[str, Any]]]]:
        """Deferred firing with ``(owner, key, data)`` of ``kind``, ordered by owner and key."""
        return Deferred.fromCoroutine(self._list_items(kind, owner, search))

    async def _list_items(self, kind: str, owner: str | None,
                          search: str | None) -> list[tuple[str, str, dict[str, Any]]]:
        where, params = ["kind = {p}"], [kind]
        if owner is not None:
            where.append("owner = {p}")
            params.append(owner)
        if search:
            # Case-insensitive for ASCII on both backends (SQLite's lower()).
            where.append("{find}(lower(data), lower({p})) > 0")
            params.append(search)
        rows = await self._query(
            "SELECT owner, item_key, data FROM items WHERE " + " AND ".join(where) + " ORDER BY owner, item_key",
            *params,
        )
        return [(str(o), str(k), dict(json.loads(d))) for o, k, d in rows]

    def delete_item(self, kind: str, owner: str, key: str) -> Deferred[bool]:
        """Delete one feature document; Deferred firing True if it existed."""
        return Deferred.fromCoroutine(self._delete_item(kind, owner, key))

    async def _delete_item(self, kind: str, owner: str, key: str) -> bool:
        count = await self._count(
            "DELETE FROM items WHERE kind = {p} AND owner = {p} AND item_key = {p}", kind, owner, key
        )
        return count > 0
