"""The inbox worker's first read of a room (bridge.homeserver.inbox.lock_pending), on both
backends: the room's lock, its oldest pending events and whose room it is, in one query."""

from __future__ import annotations

import pytest
from mautrix.util.async_db import Database

from bridge.homeserver.inbox import lock_pending
from bridge.market.records.rooms import OWNER_OF_ROOM, owner_of
from bridge.storage.database import synced_commit
from policy.ids import RoomId
from tests.db.conftest import deal_with_dispute


async def seed(db: Database) -> None:
    await deal_with_dispute(db)
    for n, (room, status) in enumerate(
        [("!deal", "done"), ("!deal", "pending"), ("!dispute", "pending"), ("!deal", "pending")]
        + [("!deal", "pending")] * 2
    ):
        await db.execute(
            "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
            " event_json, status, txn_id, received_at) VALUES ($1, $2, 'm.room.message',"
            " '@b:localhost', $3, '{}', $4, 't', 0)",
            f"$e{n}",
            room,
            n,
            status,
        )


async def test_the_oldest_pending_events_come_with_whose_room_it_is(db: Database) -> None:
    await seed(db)
    async with db.acquire() as conn, conn.transaction():
        held = await lock_pending(conn, RoomId("!deal"), 2, about=OWNER_OF_ROOM)
        assert held is not None
        assert [e.event_id for e in held.events] == ["$e1", "$e3"]
        assert held.more  # $e4 and $e5 wait behind them
        owner = owner_of(held.about)
        assert owner is not None and owner[0].transaction_id == "t1" and owner[1] is None
    async with db.acquire() as conn, conn.transaction():
        held = await lock_pending(conn, RoomId("!dispute"), 5, about=OWNER_OF_ROOM)
        assert held is not None and [e.event_id for e in held.events] == ["$e2"]
        assert not held.more
        owner = owner_of(held.about)
        assert owner is not None
        transaction, dispute = owner
        assert transaction.transaction_id == "t1" and transaction.open_dispute == "d1"
        assert dispute is not None and dispute.dispute_id == "d1"


async def test_a_room_of_no_one_with_no_events_reads_as_such(db: Database) -> None:
    await seed(db)
    async with db.acquire() as conn, conn.transaction():
        held = await lock_pending(conn, RoomId("!elsewhere"), 5, about=OWNER_OF_ROOM)
        assert held is not None and held.events == [] and not held.more
        assert owner_of(held.about) is None


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_another_process_finds_the_room_held(db: Database) -> None:
    await seed(db)
    async with db.acquire() as first, first.transaction():
        assert await lock_pending(first, RoomId("!deal"), 5, about=OWNER_OF_ROOM) is not None
        # Another connection (acquire would hand this task the same one back).
        async with db.acquire_direct() as second, second.transaction():
            assert await lock_pending(second, RoomId("!deal"), 5, about=OWNER_OF_ROOM) is None
            # Another room is free.
            other = await lock_pending(second, RoomId("!dispute"), 5, about=OWNER_OF_ROOM)
            assert other is not None


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_the_transaction_commits_without_waiting_unless_told_to(db: Database) -> None:
    async with db.acquire() as conn:
        async with conn.transaction():
            await lock_pending(conn, RoomId("!deal"), 5, about=OWNER_OF_ROOM)
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
            await synced_commit(conn)
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
        # Only that transaction: the next waits for the disk again.
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
