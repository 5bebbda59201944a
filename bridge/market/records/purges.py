"""The purges table, as the market writes it: a room's retention clock starts when its object
ends (a transaction closed, a dispute resolved), in the same database transaction.

The retention worker (bridge.retention) takes the rows from there; what it writes is in its
own records.
"""

from __future__ import annotations

from mautrix.util.async_db import Connection

from policy.ids import RoomId, TransactionId
from policy.retention import Periods


async def schedule_purge(
    conn: Connection,
    periods: Periods,
    room_id: RoomId | None,
    kind: str,
    object_id: str,
    transaction_id: TransactionId,
    outcome: str,
    ended_at: int,
) -> None:
    """Start the room's retention clock (nothing for an object that never had a room)."""
    if room_id is None:
        return
    await conn.execute(
        "INSERT INTO purges (room_id, kind, object_id, transaction_id, outcome, ended_at,"
        " due_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $6)"
        " ON CONFLICT (room_id) DO NOTHING",
        room_id,
        kind,
        object_id,
        transaction_id,
        outcome,
        ended_at,
        periods.due_at(kind, outcome, ended_at),
    )
