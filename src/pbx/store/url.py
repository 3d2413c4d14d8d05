"""
Database URLs: which backend of :class:`pbx.interfaces.IStore` a URL names,
and the store it opens.

``sqlite:///var/lib/pbx/pbx.db``
    an SQLite file at an absolute path (three slashes);
``sqlite://state/pbx.db``
    an SQLite file at a relative path (in a configuration file, taken from
    the file's directory by :mod:`pbx.config`);
``sqlite://:memory:``
    an SQLite database in memory, gone when the store closes (tests);
``postgresql://user@host:port/dbname`` (or ``postgres://``)
    a PostgreSQL database; the URL goes to libpq as it is, so anything libpq
    accepts there works (a password, ``?sslmode=require``, ...).

The backends are imported only when a URL asks for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attrs import frozen

if TYPE_CHECKING:
    from pbx.interfaces import IStore

__all__ = ["StoreURL", "StoreURLError", "open_store", "parse_store_url"]

_FORMS = (
    "sqlite:///absolute/path.db, sqlite://relative/path.db, sqlite://:memory: "
    "or postgresql://user@host:port/dbname"
)


class StoreURLError(ValueError):
    """
    A database URL that names no backend or that the backend cannot use.

    The message never repeats a password; the config layer reports it as
    ``database: <message>``.
    """


@frozen
class StoreURL:
    """A database URL, checked and split into the backend and its target."""

    #: ``"sqlite"`` or ``"postgresql"``.
    backend: str
    #: The SQLite file path or ``":memory:"``; the libpq URL for PostgreSQL.
    target: str


def _password(url: str) -> str:
    """The password in a URL's user info, found without a full parse."""
    authority = url.partition("://")[2].split("/", 1)[0]
    userinfo = authority.rpartition("@")[0]
    return userinfo.partition(":")[2]


def _postgres_problem(url: str) -> str | None:
    import psycopg2.extensions  # only when a PostgreSQL URL is given

    try:
        psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError as e:
        problem = str(e).strip().removeprefix("invalid dsn: ") or "not understood"
        password = _password(url)
        # libpq may quote the URL, or the part it choked on.
        return problem.replace(password, "***") if password else problem
    return None


def parse_store_url(url: str) -> StoreURL:
    """
    Check a database URL without connecting to anything.

    :param url: the ``database:`` setting.
    :returns: the backend and what to open with it.
    :raises StoreURLError: naming the problem.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or not scheme.replace("+", "").isalnum():
        raise StoreURLError(f"not a database URL; use {_FORMS}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest:
            raise StoreURLError(f"{url!r} names no database file; use {_FORMS}")
        return StoreURL("sqlite", rest)
    if scheme in ("postgresql", "postgres"):
        problem = _postgres_problem(url)
        if problem is not None:
            raise StoreURLError(f"invalid PostgreSQL URL: {problem}")
        return StoreURL("postgresql", url)
    raise StoreURLError(f"unsupported database type {scheme!r}; use {_FORMS}")


def open_store(url: str, reactor: Any) -> IStore:
    """
    Make the store a database URL names; nothing is read or written yet.

    Call :meth:`~pbx.interfaces.IStore.migrate` on the result before use.

    :param url: the ``database:`` setting (see the module docstring).
    :param reactor: the reactor the store runs on.
    :returns: a :class:`~pbx.store.sqlite.SQLiteStore` or a
        :class:`~pbx.store.postgres.PostgresStore`.
    :raises StoreURLError: if the URL is not one of the supported forms.
    """
    parsed = parse_store_url(url)
    if parsed.backend == "sqlite":
        from pbx.store.sqlite import SQLiteStore

        return SQLiteStore(parsed.target, reactor)
    from pbx.store.postgres import PostgresStore

    return PostgresStore(parsed.target, reactor)
