"""Storage on both backends: migrations from empty, durable SQLite, idempotent event storage."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from mautrix.util.async_db import Database

from appservice.transactions import MalformedEvent, Receipt, RoomEvent, Transaction
from bridge.config import DatabaseConfig
from bridge.homeserver.inbox import InboxStore
from bridge.runtime.clock import SystemClock
from bridge.storage.database import create_database, database_failed, start_database
from bridge.storage.migrations import bridge_upgrade_table
from tests.harness import fresh_postgres_database


def event(n: int, room: str = "!room:localhost") -> RoomEvent:
    return RoomEvent(f"$e{n}", room, "m.room.message", "@buyer:localhost", 1000 + n, "{}")


def txn(txn_id: str, *events: RoomEvent, receipts: tuple[Receipt, ...] = ()) -> Transaction:
    return Transaction(txn_id, list(events), list(receipts))


async def test_migrations_from_empty_create_the_schema(db: Database) -> None:
    version = await db.fetchval("SELECT version FROM bridge_version")
    assert version == len(bridge_upgrade_table().upgrades)
    for table in ("inbox_events", "read_positions", "transactions", "bot_actions"):
        assert await db.table_exists(table), table


async def test_migrating_again_changes_nothing(database_url: str) -> None:
    config = DatabaseConfig(url=database_url, max_connections=3)
    for _ in range(2):
        database = create_database(config)
        await start_database(database)
        await InboxStore(database, SystemClock()).store_transaction(txn("1", event(1)))
        assert await database.fetchval("SELECT COUNT(*) FROM inbox_events") == 1
        await database.stop()


async def test_replicas_started_together_on_an_empty_database_all_start() -> None:
    """Several bridge processes started at once (a scale-out deploy) upgrade one at a time."""
    async with fresh_postgres_database() as url:
        databases = [create_database(DatabaseConfig(url=url, max_connections=2)) for _ in "abc"]
        try:
            await asyncio.gather(*(start_database(database) for database in databases))
            for database in databases:
                assert await database.table_exists("inbox_events")
        finally:
            for database in databases:
                await database.stop()


async def test_sqlite_is_durable(tmp_path: Path) -> None:
    database = create_database(
        DatabaseConfig(url=f"sqlite://{tmp_path / 'b.db'}", max_connections=1)
    )
    await start_database(database)
    try:
        assert await database.fetchval("PRAGMA journal_mode") == "wal"
        assert await database.fetchval("PRAGMA synchronous") == 2  # FULL
    finally:
        await database.stop()


async def test_postgres_commits_are_durable_whatever_the_server_default() -> None:
    async with fresh_postgres_database() as url:
        # A server (or database) set to acknowledge commits before they reach the disk.
        admin = await asyncpg.connect(url)
        try:
            name = await admin.fetchval("SELECT current_database()")
            await admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        finally:
            await admin.close()
        database = create_database(DatabaseConfig(url=url, max_connections=2))
        await start_database(database)
        try:
            assert await database.fetchval("SHOW synchronous_commit") == "on"
        finally:
            await database.stop()


async def test_the_same_event_is_stored_once(db: Database) -> None:
    store = InboxStore(db, SystemClock())
    await store.store_transaction(txn("1", event(1), event(2)))
    await store.store_transaction(txn("1", event(1), event(2)))  # Synapse's retry
    await store.store_transaction(txn("7", event(2), event(3)))  # another txn id, one repeat
    rows = await db.fetch("SELECT event_id FROM inbox_events ORDER BY seq")
    assert [row["event_id"] for row in rows] == ["$e1", "$e2", "$e3"]


async def test_arrival_order_is_kept_in_seq(db: Database) -> None:
    store = InboxStore(db, SystemClock())
    await store.store_transaction(txn("1", event(3), event(1)))
    await store.store_transaction(txn("2", event(2)))
    seqs = [(await store.get_event("!room:localhost", f"$e{n}")).seq for n in (3, 1, 2)]
    assert seqs == sorted(seqs)


async def test_lookup_is_scoped_by_room(db: Database) -> None:
    store = InboxStore(db, SystemClock())
    await store.store_transaction(txn("1", event(1, room="!a:localhost")))
    assert (await store.get_event("!a:localhost", "$e1")).status == "pending"
    assert await store.get_event("!b:localhost", "$e1") is None


async def test_malformed_events_are_parked_as_dead(db: Database) -> None:
    store = InboxStore(db, SystemClock())
    bad = MalformedEvent("malformed:abc", "", "the event is not a JSON object", "[]")
    await store.store_transaction(Transaction("1", [event(1), bad], []))
    await store.store_transaction(Transaction("1", [event(1), bad], []))
    dead = await store.get_dead()
    assert [(d.event_id, d.status, d.error) for d in dead] == [
        ("malformed:abc", "dead", "the event is not a JSON object")
    ]


async def test_read_positions_only_move_forward(db: Database) -> None:
    store = InboxStore(db, SystemClock())
    room, user = "!room:localhost", "@buyer:localhost"
    await store.store_transaction(txn("1", receipts=(Receipt(room, user, "$e5", 500),)))
    await store.store_transaction(txn("2", receipts=(Receipt(room, user, "$e3", 300),)))
    assert (await store.read_position(room, user)).event_id == "$e5"
    await store.store_transaction(txn("3", receipts=(Receipt(room, user, "$e9", 900),)))
    position = await store.read_position(room, user)
    assert (position.event_id, position.ts) == ("$e9", 900)
    count = await db.fetchval("SELECT COUNT(*) FROM read_positions")
    assert count == 1


async def test_a_failed_transaction_stores_nothing(db: Database) -> None:
    store = InboxStore(db, SystemClock())
    # The receipts' table is gone, so the transaction fails after its events were inserted:
    # those inserts must be rolled back with it.
    await db.execute("ALTER TABLE read_positions RENAME TO read_positions_away")
    with pytest.raises(Exception):  # noqa: B017 (either driver's error)
        await store.store_transaction(
            txn("2", event(2), receipts=(Receipt("!room:localhost", "@b:localhost", "$e2", 1),))
        )
    await db.execute("ALTER TABLE read_positions_away RENAME TO read_positions")
    assert await store.get_event("!room:localhost", "$e2") is None


async def test_a_transaction_cut_off_by_a_cancellation_is_rolled_back_and_later_writes_kept(
    db: Database, database_url: str
) -> None:
    """mautrix rolls back on an exception only: on SQLite's one connection the cancelled
    transaction used to stay open, so every later write joined it and none was committed."""
    store = InboxStore(db, SystemClock())
    inside = asyncio.Event()

    async def cut_off() -> None:
        async with db.acquire() as conn, conn.transaction():
            await store.store_transaction(txn("1", event(1)))
            inside.set()
            await asyncio.sleep(3600)  # cancelled here

    task = asyncio.create_task(cut_off())
    await inside.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await store.store_transaction(txn("2", event(2)))  # on its own
    async with db.acquire() as conn, conn.transaction():  # a new transaction can begin
        await InboxStore(db, SystemClock()).store_transaction(txn("3", event(3)))
    other = create_database(DatabaseConfig(url=database_url, max_connections=1))
    await start_database(other)
    try:
        seen = await other.fetch("SELECT event_id FROM inbox_events ORDER BY event_id")
    finally:
        await other.stop()
    assert [row["event_id"] for row in seen] == ["$e2", "$e3"]


@pytest.mark.parametrize(
    ("error", "failed"),
    [
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.InterfaceError("cannot perform operation: connection is closed"), True),
        (asyncpg.SerializationError("could not serialize access"), True),
        (asyncpg.InternalClientError("cannot switch to state 12"), True),  # a backend ended
        (sqlite3.OperationalError("database is locked"), True),
        (ConnectionResetError("reset by peer"), True),
        # The input's own: it would fail again.
        (asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding"), False),
        (RuntimeError("a bug"), False),
        (KeyError("content"), False),
    ],
)
def test_a_failure_of_the_database_is_told_from_the_inputs_own(
    error: BaseException, failed: bool
) -> None:
    assert database_failed(error) == failed
