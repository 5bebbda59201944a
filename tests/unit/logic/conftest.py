"""The logic tier's fixtures: bridge parts on SQLite, a fake clock and a fake homeserver.

No Synapse and no PostgreSQL: each test gets a fresh SQLite file (migrated, as the bridge
opens it) and a `FakeMatrix`, so a test of market or policy bot logic costs milliseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mautrix.util.async_db import Database

from bridge.config import Config
from bridge.market import Market
from bridge.market.models import NewTransaction, Party
from bridge.runtime.workers import Wakeups
from bridge.storage.database import create_database, start_database
from policy.ids import MarketUserId, TransactionId, UserId
from tests.harness import make_config

from .fakes import FakeClock, FakeMatrix

ADMIN = "@admin:localhost"
BUYER = "@buyer:localhost"
SELLER = "@seller:localhost"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def matrix() -> FakeMatrix:
    fake = FakeMatrix()
    for user in (ADMIN, BUYER, SELLER):
        fake.add_user(user)
    return fake


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        database_url=f"sqlite://{tmp_path / 'bridge.db'}",
        rooms={"admins": [ADMIN]},
        policy={"flood_messages": 3, "flood_window_seconds": 10, "mute_seconds": 60},
    )


@pytest.fixture
async def db(config: Config) -> AsyncIterator[Database]:
    database = create_database(config.database)
    await start_database(database)
    yield database
    await database.stop()


@pytest.fixture
def wakeups() -> Wakeups:
    return Wakeups()


@pytest.fixture
def market(
    config: Config, db: Database, matrix: FakeMatrix, clock: FakeClock, wakeups: Wakeups
) -> Market:
    return Market.build(config, db, matrix, clock, wakeups.outbox)  # type: ignore[arg-type]


def new_transaction(
    transaction_id: str = "order-1",
    title: str = "Vintage bike",
    buyer: str = BUYER,
    seller: str = SELLER,
) -> NewTransaction:
    return NewTransaction(
        TransactionId(transaction_id),
        title,
        Party(MarketUserId(f"u-{buyer[1:].split(':')[0]}"), UserId(buyer)),
        Party(MarketUserId(f"u-{seller[1:].split(':')[0]}"), UserId(seller)),
    )


@dataclass
class Rows:
    """Reads the bridge's tables, for assertions."""

    db: Database

    async def outbox(self, type_: str | None = None) -> list[dict]:
        rows = await self.db.fetch(
            "SELECT id, stream, type, body, status FROM outbox ORDER BY seq"
        )
        return [dict(row) for row in rows if type_ is None or row["type"] == type_]

    async def audit(self, action: str | None = None) -> list[dict]:
        rows = await self.db.fetch("SELECT * FROM audit ORDER BY seq")
        return [dict(row) for row in rows if action is None or row["action"] == action]

    async def planned(self) -> list[dict]:
        rows = await self.db.fetch("SELECT * FROM planned_actions ORDER BY seq")
        return [dict(row) for row in rows]


@pytest.fixture
def rows(db: Database) -> Rows:
    return Rows(db)
