"""The inbox table: every room event the homeserver sent us, stored before we acknowledge it.

A transaction's events and receipts are written in one database transaction. Events are unique
by event id (Synapse's txn ids restart with a fresh homeserver database, so they are only log
keys); each gets an arrival ``seq`` and the status ``pending`` for the inbox worker, or ``dead``
when it was malformed. Receipts move each user's read position forward, never back; a move is
also queued in the inbox (type ``m.receipt``) so it is notified in order with the messages.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from mautrix.util.async_db import Database

from appservice.transactions import MalformedEvent, Receipt, RoomEvent, Transaction

# Inbox items for moved read positions carry this type (no room event has it).
RECEIPT_EVENT_TYPE = "m.receipt"

_SELECT_EVENTS = (
    "SELECT seq, event_id, room_id, event_type, sender, origin_server_ts, event_json, status,"
    " error FROM inbox_events"
)

_INSERT_EVENT = """
    INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,
                              event_json, status, error, txn_id, received_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (event_id) DO NOTHING
"""

# Answers a row only when the position was created or moved forward.
_UPSERT_READ_POSITION = """
    INSERT INTO read_positions (room_id, user_id, event_id, ts, updated_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (room_id, user_id) DO UPDATE
        SET event_id = excluded.event_id, ts = excluded.ts, updated_at = excluded.updated_at
        WHERE excluded.ts > read_positions.ts
    RETURNING room_id
"""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    event_id: str
    room_id: str
    event_type: str
    sender: str
    origin_server_ts: int
    event_json: str
    status: str
    error: str | None


@dataclass(frozen=True, slots=True)
class ReadPosition:
    room_id: str
    user_id: str
    event_id: str
    ts: int


class EventStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def store_transaction(self, txn: Transaction) -> None:
        now = int(time.time() * 1000)
        events = [_event_row(event, txn.txn_id, now) for event in txn.events]
        if not events and not txn.receipts:
            return
        async with self._db.acquire() as conn, conn.transaction():
            if events:
                await conn.executemany(_INSERT_EVENT, events)
            for r in txn.receipts:
                if await conn.fetchval(
                    _UPSERT_READ_POSITION, r.room_id, r.user_id, r.event_id, r.ts, now
                ):
                    # A moved read position becomes an inbox item, in order with the messages.
                    await conn.execute(_INSERT_EVENT, *_receipt_row(r, txn.txn_id, now))

    async def get_event(self, room_id: str, event_id: str) -> StoredEvent | None:
        """One stored event, looked up within its room (an id from elsewhere finds nothing)."""
        row = await self._db.fetchrow(
            _SELECT_EVENTS + " WHERE room_id = $1 AND event_id = $2",
            room_id,
            event_id,
        )
        return StoredEvent(**dict(row)) if row else None

    async def known_since(self, room_id: str, since_ts: int) -> set[str]:
        """Ids of the room's stored events sent at or after ``since_ts`` (homeserver time)."""
        rows = await self._db.fetch(
            "SELECT event_id FROM inbox_events WHERE room_id = $1 AND origin_server_ts >= $2",
            room_id,
            since_ts,
        )
        return {row["event_id"] for row in rows}

    async def get_dead(self) -> list[StoredEvent]:
        rows = await self._db.fetch(_SELECT_EVENTS + " WHERE status = 'dead' ORDER BY seq")
        return [StoredEvent(**dict(row)) for row in rows]

    async def read_position(self, room_id: str, user_id: str) -> ReadPosition | None:
        row = await self._db.fetchrow(
            "SELECT room_id, user_id, event_id, ts FROM read_positions"
            " WHERE room_id = $1 AND user_id = $2",
            room_id,
            user_id,
        )
        return ReadPosition(**dict(row)) if row else None


def _event_row(event: RoomEvent | MalformedEvent, txn_id: str, now: int) -> tuple:
    if isinstance(event, MalformedEvent):
        return (
            event.key,
            event.room_id,
            "",
            "",
            0,
            event.json_text,
            "dead",
            event.reason,
            txn_id,
            now,
        )
    return (
        event.event_id,
        event.room_id,
        event.type,
        event.sender,
        event.origin_server_ts,
        event.json_text,
        "pending",
        None,
        txn_id,
        now,
    )


def _receipt_row(receipt: Receipt, txn_id: str, now: int) -> tuple:
    key = f"{receipt.room_id}\x00{receipt.user_id}\x00{receipt.event_id}"
    body = {"type": RECEIPT_EVENT_TYPE, "event_id": receipt.event_id, "ts": receipt.ts}
    return (
        "receipt:" + hashlib.sha256(key.encode()).hexdigest()[:32],
        receipt.room_id,
        RECEIPT_EVENT_TYPE,
        receipt.user_id,
        receipt.ts,
        json.dumps(body),
        "pending",
        None,
        txn_id,
        now,
    )
