"""Engines, sessions, transactions and migrations of the ledger database.

Postgres in production; a SQLite file on one machine, shared by several processes.
Nothing here runs at import time: callers build engines from a URL when they need one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from embedq.jobs.constants import (
    MIGRATE_COMMAND,
    MIGRATE_LOCK_KEY,
    POSTGRES_CLIENT_KEEPALIVES,
    POSTGRES_CONNECT_TIMEOUT_SECONDS,
    POSTGRES_SESSION_LIMITS,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    VERSION_TABLE,
)
from embedq.jobs.errors import LedgerUnavailableError, SchemaOutOfDateError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
READ_ONLY = "embedq_read_only"  # execution option: begin a SQLite transaction without locking


def make_engine(url: str | URL, *, connect_args: Mapping[str, Any] | None = None) -> Engine:
    """An engine for the ledger at ``url`` (``postgresql+psycopg://...`` or ``sqlite:///path``)."""
    url = make_url(url)
    arguments = dict(connect_args or {})
    if url.get_backend_name() != "sqlite":
        arguments = postgres_arguments(url, arguments)
        return create_engine(url, pool_pre_ping=True, connect_args=arguments)
    _create_parent_folder(url)
    # how long to wait for another process's write lock (sqlite3's busy timeout)
    arguments.setdefault("timeout", SQLITE_BUSY_TIMEOUT_SECONDS)
    engine = create_engine(url, connect_args=arguments)
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def postgres_arguments(url: URL, given: Mapping[str, Any]) -> dict[str, Any]:
    """Connection settings that bound what a lost client or server costs the others:
    keepalives and timeouts on both ends, and the session limits of ``POSTGRES_SESSION_LIMITS``.

    Settings the URL or ``given`` name win; options they pass come after the limits, so
    one of theirs overrides a limit of the same name.
    """
    defaults = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS, **POSTGRES_CLIENT_KEEPALIVES}
    arguments: dict[str, Any] = {
        name: value for name, value in defaults.items() if name not in url.query
    }
    arguments.update(given)
    named = {**url.query, **given}
    limits = " ".join(f"-c {name}={value}" for name, value in POSTGRES_SESSION_LIMITS.items())
    options = named.get("options")
    arguments["options"] = f"{limits} {options}" if options else limits
    return arguments


def _create_parent_folder(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(connection: sqlite3.Connection, _record: object) -> None:
    # the driver's own transaction handling starts transactions late (at the first
    # write); switched off here so that _begin_immediate decides
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # readers never wait for the writer, so producers can poll while workers write
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    # Take the write lock when the transaction starts. A transaction that read first
    # and writes later fails at once with SQLITE_BUSY (no waiting) if another process
    # wrote in between; this also makes SQLite's file lock the ledger's job-row lock.
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory every ledger function takes; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session], *, read_only: bool = False) -> Iterator[Session]:
    """One transaction; a database that is down, busy or deadlocked raises a retryable error.

    A read-only one takes no write lock on SQLite, so it does not wait for writers.
    """
    try:
        with sessions.begin() as session:
            if read_only:
                session.connection(execution_options={READ_ONLY: True})
            yield session
    except DBAPIError as error:
        if not is_transient(error):
            raise
        raise LedgerUnavailableError(f"the ledger database is unavailable: {error.orig}") from error


def is_transient(error: DBAPIError) -> bool:
    """Whether the same statement may succeed later (lost connection, lock, deadlock)."""
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError):
        return False
    if isinstance(error.orig, sqlite3.Error):
        # SQLite also reports mistakes such as "no such table" as OperationalError
        name = getattr(error.orig, "sqlite_errorname", "")
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(error.orig)
    # Postgres: connection failures, deadlocks, serialisation failures, lock timeouts
    return True


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the migrations shipped inside this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(target: str | URL | Engine) -> None:
    """Bring the ledger's schema to the newest revision (nothing to do if it is there)."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # concurrent migrate calls (several workers starting) wait for the first
                # a migration of a large ledger may take long, and wait for the one before
                connection.execute(text("SET LOCAL statement_timeout = 0"))
                connection.execute(text("SET LOCAL lock_timeout = 0"))
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK_KEY}
                )
            command.upgrade(alembic_config(connection), "head")
    finally:
        if engine is not target:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str:
    """The newest revision this version of embedq knows."""
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


def check_schema(engine: Engine) -> None:
    """Refuse to run against a database whose schema is not at this code's revision."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        problem, advice = "has no embedq tables yet", f"run `{MIGRATE_COMMAND}`"
    elif _knows(current):
        problem = f"is at schema revision {current}, this embedq expects {head}"
        advice = f"run `{MIGRATE_COMMAND}`"
    else:
        problem = f"is at schema revision {current}, newer than this embedq knows ({head})"
        advice = "upgrade embedq"
    raise SchemaOutOfDateError(f"the ledger database {where} {problem}: {advice}")


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _knows(revision: str) -> bool:
    try:
        _scripts().get_revision(revision)
    except CommandError:
        return False
    return True


def open_ledger(url: str | URL) -> sessionmaker[Session]:
    """Sessions for the ledger at ``url``, after checking its schema is current."""
    engine = make_engine(url)
    try:
        check_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return make_sessions(engine)
