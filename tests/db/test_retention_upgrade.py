"""Migration 13 on a database with history: rooms closed or resolved before retention existed
start their clocks from those times, and their due dates follow the settings."""

from __future__ import annotations

from bridge.config import DatabaseConfig
from bridge.retention.records import PurgeRecords
from bridge.storage.database import create_database, start_database
from policy.retention import DAY_MS, Periods

CLOSED_AT, RESOLVED_AT = 1_700_000_000_000, 1_700_000_500_000


async def test_rooms_ended_before_retention_start_their_clocks(database_url: str) -> None:
    database = create_database(DatabaseConfig(url=database_url, max_connections=2))
    everything = database.upgrade_table.upgrades
    database.upgrade_table.upgrades = everything[:12]  # the schema before retention
    await start_database(database)
    try:
        for user in ("b", "s"):
            await database.execute(
                "INSERT INTO marketplace_users (user_id, matrix_id, created_at)"
                " VALUES ($1, $2, 0)",
                user,
                f"@{user}:localhost",
            )
        for tid, state, outcome, room, closed in (
            ("t-closed", "closed", "completed", "!closed", CLOSED_AT),
            ("t-open", "paid", None, "!open", None),
            ("t-roomless", "closed", "cancelled", None, CLOSED_AT),
        ):
            await database.execute(
                "INSERT INTO transactions (transaction_id, title, buyer_id, seller_id, state,"
                " outcome, room_id, room_version, created_at, closed_at)"
                " VALUES ($1, 'x', 'b', 's', $2, $3, $4, '12', 0, $5)",
                tid,
                state,
                outcome,
                room,
                closed,
            )
        await database.execute(
            "INSERT INTO disputes (dispute_id, transaction_id, reason, opened_by, state,"
            " room_id, room_version, created_at, resolved_at)"
            " VALUES ('d-1', 't-open', 'late', 'buyer', 'resolved', '!dispute', '12', 0, $1)",
            RESOLVED_AT,
        )
        database.upgrade_table.upgrades = everything
        await database.upgrade_table.upgrade(database)
        purges = PurgeRecords(database)
        closed, dispute = await purges.get("!closed"), await purges.get("!dispute")
        assert closed is not None and closed.ended_at == CLOSED_AT and closed.due_at is None
        assert dispute is not None and dispute.ended_at == RESOLVED_AT
        assert dispute.kind == "dispute" and dispute.object_id == "d-1"
        assert await purges.get("!open") is None
        assert await database.fetchval("SELECT COUNT(*) FROM purges") == 2
        periods = Periods(transaction={"completed": 10}, dispute=None, hold_after_resolution=0)
        assert await purges.reschedule(periods) == 2
        closed = await purges.get("!closed")
        assert closed is not None and closed.due_at == CLOSED_AT + 10 * DAY_MS
        dispute = await purges.get("!dispute")
        assert dispute is not None and dispute.due_at is None
    finally:
        await database.stop()
