"""The storage tier's database: fresh on each backend, migrated by the bridge's own code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mautrix.util.async_db import Database

from bridge.config import DatabaseConfig
from bridge.storage.database import create_database, start_database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = create_database(DatabaseConfig(url=database_url, max_connections=3))
    await start_database(database)
    yield database
    await database.stop()


async def deal_with_dispute(db: Database) -> None:
    """Transaction t1 (room !deal, buyer b, seller s) with its open dispute d1 (room
    !dispute)."""
    for user in ("b", "s"):
        await db.execute(
            "INSERT INTO marketplace_users (user_id, matrix_id, created_at) VALUES ($1, $2, 0)",
            user,
            f"@{user}:localhost",
        )
    await db.execute(
        "INSERT INTO transactions (transaction_id, title, buyer_id, seller_id, state, room_id,"
        " room_version, created_at) VALUES ('t1', 'A lamp', 'b', 's', 'paid', '!deal', '10', 0)"
    )
    await db.execute(
        "INSERT INTO disputes (dispute_id, transaction_id, reason, opened_by, state, room_id,"
        " room_version, created_at) VALUES ('d1', 't1', 'broken', 'buyer', 'open', '!dispute',"
        " '10', 0)"
    )
