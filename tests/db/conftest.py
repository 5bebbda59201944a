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
