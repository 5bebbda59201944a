"""Opening the database: SQLite (embedded default) or PostgreSQL behind one `Database` API."""

from __future__ import annotations

from pathlib import Path

from mautrix.util.async_db import Database
from yarl import URL

from .config import DatabaseConfig
from .migrations import bridge_upgrade_table

# WAL lets readers run beside the writer; synchronous=FULL makes every acknowledged
# transaction survive power loss (mautrix's default, NORMAL, does not).
SQLITE_INIT_COMMANDS = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
]


def is_sqlite(url: str) -> bool:
    return URL(url).scheme in ("sqlite", "sqlite3")


def create_database(config: DatabaseConfig) -> Database:
    if is_sqlite(config.url):
        Path(URL(config.url).path).parent.mkdir(parents=True, exist_ok=True)
        db_args: dict = {"init_commands": list(SQLITE_INIT_COMMANDS)}
    else:
        db_args = {"min_size": 1, "max_size": config.max_connections}
    return Database.create(config.url, upgrade_table=bridge_upgrade_table(), db_args=db_args)


async def start_database(db: Database) -> None:
    """Connect and bring the schema up to date."""
    await db.start()
