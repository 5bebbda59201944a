"""Opening the database: SQLite (embedded default) or PostgreSQL behind one `Database` API."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
from mautrix.util.async_db import Database, Scheme
from yarl import URL

from bridge.config import DatabaseConfig

from .migrations import bridge_upgrade_table
from .pool import PooledPostgresDatabase
from .sqlite import SQLiteDatabase

# WAL lets readers run beside the writer; synchronous=FULL makes every acknowledged
# transaction survive power loss (mautrix's default, NORMAL, does not).
SQLITE_INIT_COMMANDS = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
]


def rows_affected(status: Any) -> int:
    """Rows an INSERT or UPDATE changed: asyncpg answers 'UPDATE n', aiosqlite a cursor."""
    if isinstance(status, str):
        return int(status.rsplit(" ", 1)[-1])
    return status.rowcount


def database_failed(error: BaseException) -> bool:
    """Whether the database failed (the server, the connection, a timeout), rather than the
    work that met the error: such work is left to be done again, never given up. A data
    error (SQLSTATE class 22, such as a NUL character in a text parameter) is the input's
    own, and would fail again."""
    if isinstance(error, asyncpg.DataError):
        return False
    failures = (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,  # a backend the server ended (bridge.storage.pool)
        sqlite3.OperationalError,
        OSError,
    )
    return isinstance(error, failures)


# The advisory lock class of the schema's upgrade, so our key never meets another
# application's.
_SCHEMA_LOCK_CLASS = 0x4D4C


# A select-list expression that makes the rest of its transaction commit without waiting
# for its WAL record to reach the disk (PostgreSQL).
UNSYNCED_COMMIT = "set_config('synchronous_commit', 'off', true)"


def unsynced(scheme: Scheme, update: str) -> str:
    """An ``UPDATE <table> SET ... WHERE ...`` that commits without waiting for its WAL
    record to reach the disk (PostgreSQL; the pool's `synchronous_commit` stays on for
    everything else). Only for writes a crash of the database server may forget at no cost
    but a repeated delivery: leases, and marks of what was delivered. It saves the flush's
    wait, which is on the way of every webhook (0.3 against 0.09 ms a statement here)."""
    assignments, condition = update.split(" WHERE ", 1)
    setting = "1" if scheme == Scheme.SQLITE else UNSYNCED_COMMIT
    return f"WITH lax AS (SELECT {setting} AS unsynced) {assignments} FROM lax WHERE {condition}"  # noqa: S608 (our SQL)


def is_sqlite(url: str) -> bool:
    return URL(url).scheme in ("sqlite", "sqlite3")


def create_database(config: DatabaseConfig) -> Database:
    if is_sqlite(config.url):
        Path(URL(config.url).path).parent.mkdir(parents=True, exist_ok=True)
        db_args = {"init_commands": list(SQLITE_INIT_COMMANDS)}
        return SQLiteDatabase(URL(config.url), bridge_upgrade_table(), db_args)
    return PooledPostgresDatabase(
        config.url,
        bridge_upgrade_table(),
        config.max_connections,
        # Every commit waits for its WAL record on disk, whatever the server's default: an
        # acknowledged event survives a crash of the database server too.
        server_settings={"synchronous_commit": "on"},
    )


async def start_database(db: Database) -> None:
    """Connect and bring the schema up to date.

    PostgreSQL: replicas started together upgrade one at a time (the first upgrades, the
    others find it done), under a lock held on a connection of its own: two upgrades at once
    both create the version table, and one fails on its type's unique name.
    """
    if db.scheme == Scheme.SQLITE:
        await db.start()
        return
    lock = await asyncpg.connect(str(db.url))
    try:
        await lock.execute("SELECT pg_advisory_lock($1, 0)", _SCHEMA_LOCK_CLASS)
        await db.start()
    finally:
        await lock.close()  # ends the session, and with it the lock
