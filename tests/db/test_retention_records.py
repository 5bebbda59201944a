"""The retention worker's SQL on both backends: a room's removal from due date to pruned rows,
a manual hold that stops it under the announcement's lock, and old webhooks deleted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mautrix.util.async_db import Database

from bridge.market.records.holds import ALL, holds_where, place_hold, release_hold
from bridge.market.records.purges import schedule_purge
from bridge.retention.records import PurgeRecords
from bridge.retention.worker import RetentionSettings, RetentionWorker
from bridge.runtime.workers import Wakeup
from bridge.storage.transcripts import DirectoryStore
from policy.ids import RoomId, TransactionId
from policy.retention import DAY_MS, Periods
from tests.unit.logic.fakes import FakeClock

PERIODS = Periods(transaction={"completed": 1}, dispute=1, hold_after_resolution=2)


class Transcripts:
    """What the worker asks of the transcripts: a document per object."""

    async def of_transaction(self, transaction_id: str, actor: str) -> dict[str, Any]:
        return {"final_hash": f"hash-{transaction_id}", "entry_count": 3}

    async def of_dispute(self, dispute_id: str, actor: str) -> dict[str, Any]:
        return {"final_hash": f"hash-{dispute_id}", "entry_count": 2}


async def closed_transaction(db: Database, tid: str, room: str, closed_at: int) -> None:
    for user in ("b", "s"):
        await db.execute(
            "INSERT INTO marketplace_users (user_id, matrix_id, created_at) VALUES ($1, $2, 0)"
            " ON CONFLICT DO NOTHING",
            user,
            f"@{user}:localhost",
        )
    await db.execute(
        "INSERT INTO transactions (transaction_id, title, buyer_id, seller_id, state, outcome,"
        " room_id, room_version, created_at, closed_at) VALUES ($1, 'x', 'b', 's', 'closed',"
        " 'completed', $2, '12', 0, $3)",
        tid,
        room,
        closed_at,
    )
    async with db.acquire() as conn:
        await schedule_purge(
            conn,
            PERIODS,
            RoomId(room),
            "transaction",
            tid,
            TransactionId(tid),
            "completed",
            closed_at,
        )
    await db.execute(
        "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
        " event_json, status, txn_id, received_at) VALUES ($1, $2, 'm.room.message', '@b:x',"
        " 0, '{}', 'done', 't', 0)",
        f"$in-{room}",
        room,
    )


async def test_a_room_goes_through_every_step_and_a_held_one_waits(
    db: Database, tmp_path: Path
) -> None:
    clock = FakeClock()
    removed: list[str] = []

    async def remove_room(room_id: RoomId) -> None:
        removed.append(room_id)

    settings = RetentionSettings(PERIODS, 30, 5, 3_600_000)
    worker = RetentionWorker(
        db,
        settings,
        Transcripts(),
        DirectoryStore(tmp_path),
        remove_room,  # type: ignore[arg-type]
        "@bot:localhost",
        clock,
        Wakeup(),
        asyncio.Event(),
    )
    now = clock.now_ms()
    await closed_transaction(db, "t-free", "!free", now)
    await closed_transaction(db, "t-held", "!held", now)
    async with db.acquire() as conn:
        assert await place_hold(conn, TransactionId("t-held"), "claim", "marketplace", now)
        assert not await place_hold(conn, TransactionId("t-held"), "again", "marketplace", now)
    assert await worker.drain() == 0
    clock.advance(DAY_MS / 1000)
    assert await worker.drain() == 1 and removed == ["!free"]
    purge = await PurgeRecords(db).get(RoomId("!free"))
    assert purge is not None and purge.status.value == "done"
    assert purge.transcript_hash == "hash-t-free"
    assert (tmp_path / str(purge.transcript_location)).exists()
    row = await db.fetchrow(
        "SELECT purged_at, transcript_hash FROM transactions WHERE transaction_id = 't-free'"
    )
    assert row["purged_at"] == clock.now_ms() and row["transcript_hash"] == "hash-t-free"
    assert await db.fetchval("SELECT COUNT(*) FROM inbox_events WHERE room_id = '!free'") == 0
    assert await db.fetchval("SELECT COUNT(*) FROM outbox WHERE type = 'room.purged'") == 1
    holds = await holds_where(db, ALL, PERIODS.hold_after_ms, clock.now_ms())
    assert [(h.transaction_id, h.kind) for h in holds] == [("t-held", "manual")]
    async with db.acquire() as conn:
        assert await release_hold(conn, TransactionId("t-held"))
    assert await worker.drain() == 1 and removed == ["!free", "!held"]
    # Changed periods recompute what still waits; webhooks past their days go.
    assert await PurgeRecords(db).reschedule(Periods({}, None, 0)) == 0
    clock.advance(31 * DAY_MS / 1000)
    await db.execute("UPDATE outbox SET status = 'delivered', delivered_at = $1", now)
    await worker.drain()
    assert await db.fetchval("SELECT COUNT(*) FROM outbox") == 0
