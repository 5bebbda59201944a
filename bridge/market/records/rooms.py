"""Which marketplace object a room belongs to, and which rooms are active."""

from __future__ import annotations

import functools

from mautrix.util.async_db import Connection, Database

from policy.ids import RoomId

from ..models import DisputeRecord, TransactionRecord
from .disputes import DISPUTE_FIELDS, dispute_of
from .transactions import COLUMNS, FIELDS, JOINS, transaction_of

Owner = tuple[TransactionRecord, DisputeRecord | None]

# The transaction whose room $1 is, or whose dispute's room it is (with the dispute, its
# columns prefixed x_): one row, or none. By the rooms' unique indexes and the transaction's key.
OWNER_OF_ROOM = f"""
    SELECT {COLUMNS}, {", ".join(f"x.{name} AS x_{name}" for name in DISPUTE_FIELDS)}
    FROM transactions t {JOINS}
    LEFT JOIN disputes x ON x.room_id = $1
    WHERE t.transaction_id = COALESCE(
        (SELECT transaction_id FROM transactions WHERE room_id = $1),
        (SELECT transaction_id FROM disputes WHERE room_id = $1))
"""  # noqa: S608 (constants)


_OWNER_FIELDS = FIELDS + tuple(f"x_{name}" for name in DISPUTE_FIELDS)
# Owners built lately, by their rows' values: a room's messages find the same row again
# and again, and building its records costs more than looking them up (the records are
# frozen, so sharing them is safe).
_OWNERS_KEPT = 1024


def owner_of(row) -> Owner | None:
    """What `OWNER_OF_ROOM` found (None: a row of no transaction, or no row)."""
    if row is None or row["transaction_id"] is None:
        return None
    return _owner(tuple(row[name] for name in _OWNER_FIELDS))


@functools.lru_cache(maxsize=_OWNERS_KEPT)
def _owner(values: tuple) -> Owner:
    row = dict(zip(_OWNER_FIELDS, values, strict=True))
    dispute = dispute_of(row, "x_") if row["x_dispute_id"] is not None else None
    return transaction_of(row), dispute


async def object_of_room(conn: Connection, room_id: RoomId) -> Owner | None:
    """The transaction whose room this is, or whose dispute's room it is (with the dispute);
    None for a room no transaction or dispute owns. One round trip."""
    return owner_of(await conn.fetchrow(OWNER_OF_ROOM, room_id))


class ManagedRooms:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def owner(self, room_id: RoomId) -> Owner | None:
        async with self._db.acquire() as conn:
            return await object_of_room(conn, room_id)

    async def active(self) -> list[RoomId]:
        """Rooms of transactions not closed and of open disputes: the scheduled repair's."""
        rows = await self._db.fetch(
            "SELECT room_id FROM transactions WHERE state <> 'closed' AND room_id IS NOT NULL"
            " UNION SELECT room_id FROM disputes WHERE state = 'open' AND room_id IS NOT NULL"
        )
        return [row["room_id"] for row in rows]
