"""Which marketplace object a room belongs to, and which rooms are active."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from policy.ids import RoomId

from ..models import DisputeRecord, TransactionRecord
from .disputes import dispute_in_room
from .transactions import fetch_transaction, transaction_in_room


async def object_of_room(
    conn: Connection, room_id: RoomId
) -> tuple[TransactionRecord, DisputeRecord | None] | None:
    """The transaction whose room this is, or whose dispute's room it is (with the dispute);
    None for a room no transaction or dispute owns."""
    transaction = await transaction_in_room(conn, room_id)
    if transaction is not None:
        return transaction, None
    dispute = await dispute_in_room(conn, room_id)
    if dispute is None:
        return None
    transaction = await fetch_transaction(conn, dispute.transaction_id)
    assert transaction is not None
    return transaction, dispute


class ManagedRooms:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def owner(
        self, room_id: RoomId
    ) -> tuple[TransactionRecord, DisputeRecord | None] | None:
        async with self._db.acquire() as conn:
            return await object_of_room(conn, room_id)

    async def active(self) -> list[RoomId]:
        """Rooms of transactions not closed and of open disputes: the scheduled repair's."""
        rows = await self._db.fetch(
            "SELECT room_id FROM transactions WHERE state <> 'closed' AND room_id IS NOT NULL"
            " UNION SELECT room_id FROM disputes WHERE state = 'open' AND room_id IS NOT NULL"
        )
        return [row["room_id"] for row in rows]
