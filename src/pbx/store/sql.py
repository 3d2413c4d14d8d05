"""
What the SQL backends share: every query and the mapping of rows to records.

:class:`SQLStore` implements all of :class:`pbx.interfaces.IStore` on top of
four primitives that a backend provides (run a query, run a statement, run a
transaction, insert a row and get its id).  Query text is written once, with
``{p}`` for each parameter; the backend's :class:`~pbx.store.schema.Dialect`
turns it into ``?`` or ``%s``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred

from pbx.records import AdminRecord, AuditEvent, Binding, CallRecord, ExtensionRecord
from pbx.store import schema

Row = tuple[Any, ...]
Params = Sequence[object]
#: One statement of a transaction: SQL text (markers filled) and parameters.
Statement = tuple[str, Params]


def _columns(names: Sequence[str]) -> str:
    # Quoted: "end" is a reserved word in both databases.
    return ", ".join(f'"{name}"' for name in names)


def _upsert(table: str, names: Sequence[str], key: Sequence[str]) -> str:
    """
    An insert that replaces the row with the same ``key`` in place.

    ``ON CONFLICT ... DO UPDATE`` rather than ``INSERT OR REPLACE``: the row is
    updated, not deleted and inserted again.
    """
    updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names if n not in key)
    values = ", ".join("{p}" for _ in names)
    return (
        f"INSERT INTO {table} ({_columns(names)}) VALUES ({values}) "
        f"ON CONFLICT ({_columns(key)}) DO UPDATE SET {updates}"
    )


def _insert(table: str, names: Sequence[str]) -> str:
    values = ", ".join("{p}" for _ in names)
    return f"INSERT INTO {table} ({_columns(names)}) VALUES ({values})"


_EXTENSION = (
    "number", "name", "email", "realm", "ha1_md5", "ha1_sha256",
    "voicemail_pin_hash", "enabled", "source",
)  # fmt: skip
_BINDING = (
    "aor", "contact", "expires_at", "transport", "source", "user_agent",
    "call_id", "cseq", "q", "registered_at",
)  # fmt: skip
_CALL = (
    "call_id", "caller", "callee", "start", "end", "answer", "disposition",
    "hangup_side", "hangup_cause", "codecs", "leg",
)  # fmt: skip
_AUDIT = ("time", "kind", "subject", "source", "detail")

_SELECT_EXTENSIONS = f"SELECT {_columns(_EXTENSION)} FROM extensions"
_SELECT_BINDINGS = f"SELECT {_columns(_BINDING)} FROM bindings"
_SELECT_CALLS = f"SELECT {_columns(('id', *_CALL))} FROM call_records"
_SELECT_AUDIT = f"SELECT {_columns(('id', *_AUDIT))} FROM audit"

_PUT_EXTENSION = _upsert("extensions", _EXTENSION, ("number",))
_PUT_BINDING = _upsert("bindings", _BINDING, ("aor", "contact"))
_PUT_ADMIN = _upsert("admins", ("username", "password_hash"), ("username",))
_PUT_SETTING = _upsert("settings", ("key", "value"), ("key",))
_ADD_CALL = _insert("call_records", _CALL)
_ADD_AUDIT = _insert("audit", _AUDIT)


def _extension_row(record: ExtensionRecord) -> Row:
    return (
        record.number, record.name, record.email, record.realm, record.ha1_md5,
        record.ha1_sha256, record.voicemail_pin_hash, int(record.enabled),
        record.source,
    )  # fmt: skip


def _extension(row: Row) -> ExtensionRecord:
    number, name, email, realm, md5, sha256, pin, enabled, source = row
    return ExtensionRecord(
        number=number, name=name, email=email, realm=realm, ha1_md5=md5,
        ha1_sha256=sha256, voicemail_pin_hash=pin, enabled=bool(enabled),
        source=source,
    )  # fmt: skip


def _binding_row(binding: Binding) -> Row:
    return (
        binding.aor, binding.contact, float(binding.expires_at), binding.transport,
        binding.source, binding.user_agent, binding.call_id, int(binding.cseq),
        float(binding.q), float(binding.registered_at),
    )  # fmt: skip


def _binding(row: Row) -> Binding:
    aor, contact, expires, transport, source, agent, call_id, cseq, q, at = row
    return Binding(
        aor=aor, contact=contact, expires_at=float(expires), transport=transport,
        source=source, user_agent=agent, call_id=call_id, cseq=int(cseq),
        q=float(q), registered_at=float(at),
    )  # fmt: skip


def _call_row(record: CallRecord) -> Row:
    answer = None if record.answer is None else float(record.answer)
    return (
        record.call_id, record.caller, record.callee, float(record.start),
        float(record.end), answer, record.disposition, record.hangup_side,
        record.hangup_cause, record.codecs, record.leg,
    )  # fmt: skip


def _call(row: Row) -> CallRecord:
    id_, call_id, caller, callee, start, end, answer, *rest = row
    disposition, side, cause, codecs, leg = rest
    return CallRecord(
        id=int(id_), call_id=call_id, caller=caller, callee=callee,
        start=float(start), end=float(end),
        answer=None if answer is None else float(answer),
        disposition=disposition, hangup_side=side, hangup_cause=cause,
        codecs=codecs, leg=leg,
    )  # fmt: skip


def _audit(row: Row) -> AuditEvent:
    id_, time, kind, subject, source, detail = row
    return AuditEvent(
        id=int(id_), time=float(time), kind=kind, subject=subject, source=source,
        detail=detail,
    )  # fmt: skip


class SQLStore(ABC):
    """
    :class:`pbx.interfaces.IStore` over SQL; subclasses supply the connection.

    A subclass sets :attr:`_dialect` and implements the four ``_run_*``
    primitives.  Each returns a Deferred and runs without blocking the
    reactor.  Their SQL text has its markers already filled in.
    """

    _dialect: schema.Dialect

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

        :returns: Deferred firing with the row count of each statement.
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
        rows = await self._query(_SELECT_EXTENSIONS + " WHERE number = {p}", number)
        return _extension(rows[0]) if rows else None

    def list_extensions(self) -> Deferred[list[ExtensionRecord]]:
        """Deferred firing with every extension, ordered by number."""
        return Deferred.fromCoroutine(self._list_extensions())

    async def _list_extensions(self) -> list[ExtensionRecord]:
        rows = await self._query(_SELECT_EXTENSIONS + " ORDER BY number")
        return [_extension(row) for row in rows]

    def put_extension(self, record: ExtensionRecord) -> Deferred[None]:
        """Insert or replace one extension."""
        return Deferred.fromCoroutine(
            self._operation(_PUT_EXTENSION, *_extension_row(record))
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
            self._operation(_PUT_BINDING, *_binding_row(binding))
        )

    def delete_binding(self, aor: str, contact: str) -> Deferred[bool]:
        """Remove one binding; Deferred firing True if it existed."""
        return Deferred.fromCoroutine(self._delete_binding(aor, contact))

    async def _delete_binding(self, aor: str, contact: str) -> bool:
        sql = "DELETE FROM bindings WHERE aor = {p} AND contact = {p}"
        return await self._count(sql, aor, contact) > 0

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
            rows = await self._query(_SELECT_BINDINGS + order)
        else:
            rows = await self._query(_SELECT_BINDINGS + " WHERE aor = {p}" + order, aor)
        return [_binding(row) for row in rows]

    def expire_bindings(self, now: float) -> Deferred[int]:
        """Delete bindings whose ``expires_at <= now``; Deferred firing with the count."""
        return Deferred.fromCoroutine(
            self._count("DELETE FROM bindings WHERE expires_at <= {p}", float(now))
        )

    # Call detail records

    def add_call_record(self, record: CallRecord) -> Deferred[int]:
        """Store one call record (its ``id`` is ignored); Deferred firing with the new id."""
        return self._run_insert(self._sql(_ADD_CALL), _call_row(record))

    def list_call_records(
        self,
        offset: int = 0,
        limit: int = 100,
        caller: str | None = None,
        callee: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Deferred[tuple[int, list[CallRecord]]]:
        """
        One page of call records, newest first.

        :param offset: how many matching records to skip.
        :param limit: the most records to return.
        :param caller: only records with exactly this caller.
        :param callee: only records with exactly this callee.
        :param since: only records that started at or after this time.
        :param until: only records that started before this time.
        :returns: Deferred firing with ``(total, records)``: ``total`` counts
            every matching record, not only this page.
        :raises ValueError: (in the Deferred) if ``offset`` or ``limit`` is
            negative.
        """
        return Deferred.fromCoroutine(
            self._list_call_records(offset, limit, caller, callee, since, until)
        )

    async def _list_call_records(
        self,
        offset: int,
        limit: int,
        caller: str | None,
        callee: str | None,
        since: float | None,
        until: float | None,
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
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
        ((total,),) = await self._query("SELECT COUNT(*) FROM call_records" + where, *params)
        page = " ORDER BY start DESC, id DESC LIMIT {p} OFFSET {p}"
        rows = await self._query(
            _SELECT_CALLS + where + page, *params, int(limit), int(offset)
        )
        return int(total), [_call(row) for row in rows]

    # Audit trail

    def add_audit(self, event: AuditEvent) -> Deferred[int]:
        """Store one audit event (its ``id`` is ignored); Deferred firing with the new id."""
        row = (float(event.time), event.kind, event.subject, event.source, event.detail)
        return self._run_insert(self._sql(_ADD_AUDIT), row)

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
            rows = await self._query(_SELECT_AUDIT + page, int(limit))
        else:
            where = " WHERE kind = {p}"
            rows = await self._query(_SELECT_AUDIT + where + page, kind, int(limit))
        return [_audit(row) for row in rows]

    # API administrators

    def get_admin(self, username: str) -> Deferred[AdminRecord | None]:
        """Deferred firing with the administrator ``username``, or None."""
        return Deferred.fromCoroutine(self._get_admin(username))

    async def _get_admin(self, username: str) -> AdminRecord | None:
        sql = "SELECT username, password_hash FROM admins WHERE username = {p}"
        rows = await self._query(sql, username)
        return AdminRecord(*rows[0]) if rows else None

    def put_admin(self, record: AdminRecord) -> Deferred[None]:
        """Insert or replace one administrator."""
        return Deferred.fromCoroutine(
            self._operation(_PUT_ADMIN, record.username, record.password_hash)
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
