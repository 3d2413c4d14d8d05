"""
The database schema, as an ordered list of versioned migrations.

Every statement is written in the SQL subset that SQLite and PostgreSQL both
accept.  The few places where they differ are named markers filled in from a
:class:`Dialect`:

``{serial}``
    an auto-incrementing integer primary key;
``{real}``
    a double-precision float (POSIX times, ``q`` values);
``{key}``
    a text column that is compared and sorted byte by byte, so that both
    backends order extensions, AORs and contacts the same way whatever the
    PostgreSQL server's default collation is;
``{find}``
    the function giving the position of a substring (``instr``/``strpos``).

The same :class:`Dialect` turns the ``{p}`` marker of a query into the
backend's parameter placeholder (``?`` for :mod:`sqlite3`, ``%s`` for
psycopg2).  Query text must therefore contain no other braces, and no ``%``
(psycopg2 would read it as a placeholder).

A migration is applied at most once: the ``schema_version`` table holds the
version of every migration already applied.  Add new migrations at the end of
:data:`MIGRATIONS` with the next version number; never edit one that has been
released.
"""

from __future__ import annotations

from attrs import frozen


class SchemaVersionError(Exception):
    """The database holds a schema newer than this program knows."""


@frozen
class Dialect:
    """How one database spells the few things the two backends disagree on."""

    name: str
    placeholder: str
    serial: str
    real: str
    key: str
    #: position of a substring: instr(haystack, needle) / strpos(haystack, needle)
    find: str

    def sql(self, template: str) -> str:
        """
        Fill the dialect markers of one statement or query.

        :param template: SQL text with ``{p}``, ``{serial}``, ``{real}`` or
            ``{key}`` markers.
        :returns: SQL text for this database.
        """
        return template.format(
            p=self.placeholder, serial=self.serial, real=self.real, key=self.key, find=self.find
        )


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    serial="INTEGER PRIMARY KEY AUTOINCREMENT",
    real="REAL",
    # SQLite's default BINARY collation already compares UTF-8 bytes.
    key="TEXT",
    find="instr",
)

POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    serial="BIGSERIAL PRIMARY KEY",
    real="DOUBLE PRECISION",
    key='TEXT COLLATE "C"',
    find="strpos",
)


@frozen
class Migration:
    """One step of the schema: applied in a single transaction."""

    version: int
    description: str
    statements: tuple[str, ...]

    def render(self, dialect: Dialect) -> list[str]:
        """
        The statements of this migration for one database.

        :param dialect: the database to write for.
        :returns: SQL statements, in order.
        """
        return [dialect.sql(statement) for statement in self.statements]


#: Created before anything else; not itself a migration.
VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "extensions, bindings, call records, audit trail, admins, settings",
        (
            """
            CREATE TABLE extensions (
                number {key} PRIMARY KEY,
                name TEXT NOT NULL,
                email TEXT NOT NULL,
                realm TEXT NOT NULL,
                ha1_md5 TEXT NOT NULL,
                ha1_sha256 TEXT NOT NULL,
                voicemail_pin_hash TEXT NOT NULL,
                enabled INTEGER NOT NULL,
                source TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE bindings (
                aor {key} NOT NULL,
                contact {key} NOT NULL,
                expires_at {real} NOT NULL,
                transport TEXT NOT NULL,
                source TEXT NOT NULL,
                user_agent TEXT NOT NULL,
                call_id TEXT NOT NULL,
                cseq INTEGER NOT NULL,
                q {real} NOT NULL,
                registered_at {real} NOT NULL,
                PRIMARY KEY (aor, contact)
            )
            """,
            "CREATE INDEX bindings_expires_at ON bindings (expires_at)",
            """
            CREATE TABLE call_records (
                id {serial},
                call_id TEXT NOT NULL,
                caller TEXT NOT NULL,
                callee TEXT NOT NULL,
                start {real} NOT NULL,
                "end" {real} NOT NULL,
                answer {real},
                disposition TEXT NOT NULL,
                hangup_side TEXT NOT NULL,
                hangup_cause TEXT NOT NULL,
                codecs TEXT NOT NULL,
                leg TEXT NOT NULL
            )
            """,
            "CREATE INDEX call_records_start ON call_records (start)",
            "CREATE INDEX call_records_caller ON call_records (caller)",
            "CREATE INDEX call_records_callee ON call_records (callee)",
            """
            CREATE TABLE audit (
                id {serial},
                time {real} NOT NULL,
                kind TEXT NOT NULL,
                subject TEXT NOT NULL,
                source TEXT NOT NULL,
                detail TEXT NOT NULL
            )
            """,
            "CREATE INDEX audit_time ON audit (time)",
            "CREATE INDEX audit_kind ON audit (kind)",
            """
            CREATE TABLE admins (
                username {key} PRIMARY KEY,
                password_hash TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE settings (
                key {key} PRIMARY KEY,
                value TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        2,
        "per-extension call forwarding, do-not-disturb and caller ID",
        (
            "ALTER TABLE extensions ADD COLUMN dnd INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE extensions ADD COLUMN forward_always TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE extensions ADD COLUMN forward_busy TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE extensions ADD COLUMN forward_no_answer TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE extensions ADD COLUMN caller_id TEXT NOT NULL DEFAULT ''",
        ),
    ),
    Migration(
        3,
        "feature documents (voicemail messages, attendant menus, ...)",
        (
            """
            CREATE TABLE items (
                kind {key} NOT NULL,
                owner {key} NOT NULL,
                item_key {key} NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (kind, owner, item_key)
            )
            """,
        ),
    ),
    Migration(
        4,
        "the extension PIN is a core credential: voicemail_pin_hash becomes pin_hash",
        # SQLite has RENAME COLUMN since 3.25; PostgreSQL always had it.
        ("ALTER TABLE extensions RENAME COLUMN voicemail_pin_hash TO pin_hash",),
    ),
    Migration(
        5,
        "call records name the application that answered the call",
        ("ALTER TABLE call_records ADD COLUMN application TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        6,
        "journal of live calls: the calls a crash interrupts still get their records",
        (
            """
            CREATE TABLE live_calls (
                node {key} NOT NULL,
                "call" {key} NOT NULL,
                leg {key} NOT NULL,
                call_id TEXT NOT NULL,
                caller TEXT NOT NULL,
                callee TEXT NOT NULL,
                start {real} NOT NULL,
                answer {real} NOT NULL,
                codecs TEXT NOT NULL,
                application TEXT NOT NULL,
                touched {real} NOT NULL,
                PRIMARY KEY (node, "call", leg)
            )
            """,
        ),
    ),
    Migration(
        7,
        "call records of calls through trunks: the trunk, the dialled and sent numbers, the cost",
        (
            "ALTER TABLE call_records ADD COLUMN trunk TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE call_records ADD COLUMN dialled TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE call_records ADD COLUMN sent TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE call_records ADD COLUMN cost {real} NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        8,
        "call records of calls from trunks: what STIR/SHAKEN verification said of the caller (verstat)",
        ("ALTER TABLE call_records ADD COLUMN verstat TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        9,
        "call records share the linked id of their conversation (the legs of transferred calls)",
        (
            "ALTER TABLE call_records ADD COLUMN linked_id TEXT NOT NULL DEFAULT ''",
            # Older records cannot be joined any more: each is its own conversation.
            "UPDATE call_records SET linked_id = call_id",
            "CREATE INDEX call_records_linked_id ON call_records (linked_id)",
            "ALTER TABLE live_calls ADD COLUMN linked_id TEXT NOT NULL DEFAULT ''",
            'UPDATE live_calls SET linked_id = "call"',
        ),
    ),
    Migration(
        10,
        "SRTP: each extension's policy, and the suite each call leg was encrypted with",
        (
            "ALTER TABLE extensions ADD COLUMN srtp TEXT NOT NULL DEFAULT 'offered'",
            "ALTER TABLE call_records ADD COLUMN srtp TEXT NOT NULL DEFAULT ''",
        ),
    ),
)

#: The version :meth:`pbx.interfaces.IStore.migrate` brings a database to.
LATEST_VERSION = MIGRATIONS[-1].version


def pending(applied: set[int]) -> list[Migration]:
    """
    The migrations still to apply, oldest first.

    :param applied: the versions found in ``schema_version``.
    :returns: every migration whose version is not in ``applied``.
    :raises SchemaVersionError: if ``applied`` holds a version newer than
        :data:`LATEST_VERSION` (the database was migrated by a newer pbx).
    """
    newer = {version for version in applied if version > LATEST_VERSION}
    if newer:
        raise SchemaVersionError(
            f"database schema version {max(newer)} is newer than the "
            f"{LATEST_VERSION} this pbx knows; upgrade pbx"
        )
    return [m for m in MIGRATIONS if m.version not in applied]
