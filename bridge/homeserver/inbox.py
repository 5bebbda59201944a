"""The inbox table: every room event the homeserver sent us, stored before we acknowledge it.

A transaction's events and receipts are written in one database transaction. Events are unique
by event id (Synapse's txn ids restart with a fresh homeserver database, so they are only log
keys); each gets an arrival ``seq`` and the status ``pending`` for the inbox worker, or ``dead``
when it was malformed. Receipts move each user's read position forward, never back; a move is
also queued in the inbox (type ``m.receipt``) so it is notified in order with the messages.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Connection, Database, Scheme

from appservice.transactions import MalformedEvent, Receipt, RoomEvent, Transaction
from bridge.runtime.clock import Clock
from bridge.storage.writes import Rows, Writes
from policy.ids import EventId, RoomId, UserId

# Inbox items for moved read positions carry this type (no room event has it).
RECEIPT_EVENT_TYPE = "m.receipt"

_EVENT_FIELDS = (
    "seq",
    "event_id",
    "room_id",
    "event_type",
    "sender",
    "origin_server_ts",
    "event_json",
    "status",
    "error",
)
_PREFIXED_EVENT_FIELDS = ", ".join(f"e.{name} AS e_{name}" for name in _EVENT_FIELDS)
_SELECT_EVENTS = f"SELECT {', '.join(_EVENT_FIELDS)} FROM inbox_events"  # noqa: S608 (constants)

_INSERT_EVENT = """
    INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,
                              event_json, status, error, txn_id, received_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (event_id) DO NOTHING
"""

# Synapse sends at most 100 events a transaction; 1,000 parameters, far below the limits.
ROWS_PER_INSERT = 100


def _insert_events(rows: list[tuple]) -> tuple:
    """One INSERT of many rows, with its arguments: one round trip."""
    width = len(rows[0])
    values = ", ".join(
        "(" + ", ".join(f"${n * width + i + 1}" for i in range(width)) + ")"
        for n in range(len(rows))
    )
    sql = _INSERT_EVENT.replace("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", values)
    return sql, *(value for row in rows for value in row)


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
    event_id: EventId
    room_id: RoomId
    event_type: str
    sender: UserId
    origin_server_ts: int
    event_json: str
    status: str
    error: str | None


@dataclass(frozen=True, slots=True)
class ReadPosition:
    room_id: RoomId
    user_id: UserId
    event_id: EventId
    ts: int


class InboxStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def store_transaction(
        self, txn: Transaction, along: ReadAlong | None = None
    ) -> Pending | None:
        """Store the transaction. With ``along``, on PostgreSQL, a transaction of one event
        is read back as the inbox worker would (`read_pending`), by the INSERT itself, and
        returned when nothing of its room was pending before it (else None)."""
        now = self._clock.now_ms()
        events = [_event_row(event, txn.txn_id, now) for event in txn.events]
        if not events and not txn.receipts:
            return None
        if not txn.receipts and len(events) <= ROWS_PER_INSERT:
            lone = len(events) == 1 and events[0][6] == "pending"
            if along and lone and self._db.scheme != Scheme.SQLITE:
                return await self._store_reading(events[0], along)
            await self._db.execute(*_insert_events(events))  # atomic alone: no BEGIN, COMMIT
            return None
        async with self._db.acquire() as conn, conn.transaction():
            for start in range(0, len(events), ROWS_PER_INSERT):
                await conn.execute(*_insert_events(events[start : start + ROWS_PER_INSERT]))
            for r in txn.receipts:
                if await conn.fetchval(
                    _UPSERT_READ_POSITION, r.room_id, r.user_id, r.event_id, r.ts, now
                ):
                    # A moved read position becomes an inbox item, in order with the messages.
                    await conn.execute(_INSERT_EVENT, *_receipt_row(r, txn.txn_id, now))
        return None

    async def _store_reading(self, row: tuple, along: ReadAlong) -> Pending | None:
        read = await self._db.fetchrow(_insert_reading(along), *row)
        if read is None or read["behind"]:
            return None  # a duplicate, or behind pending events: read as it comes
        event = StoredEvent(read["stored_seq"], *row[:8])
        return Pending([event], False, read, read)

    async def get_event(self, room_id: RoomId, event_id: EventId) -> StoredEvent | None:
        """One stored event, looked up within its room (an id from elsewhere finds nothing)."""
        row = await self._db.fetchrow(
            _SELECT_EVENTS + " WHERE room_id = $1 AND event_id = $2",
            room_id,
            event_id,
        )
        return StoredEvent(**dict(row)) if row else None

    async def known_since(self, room_id: RoomId, since_ts: int) -> set[EventId]:
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

    async def room_events(self, room_id: RoomId) -> list[dict[str, Any]]:
        """The room's events as received, in arrival order (read positions left out)."""
        rows = await self._db.fetch(
            "SELECT event_json FROM inbox_events WHERE room_id = $1 AND event_type <> $2"
            " ORDER BY seq",
            room_id,
            RECEIPT_EVENT_TYPE,
        )
        return [json.loads(row["event_json"]) for row in rows]

    async def read_position(self, room_id: RoomId, user_id: UserId) -> ReadPosition | None:
        row = await self._db.fetchrow(
            "SELECT room_id, user_id, event_id, ts FROM read_positions"
            " WHERE room_id = $1 AND user_id = $2",
            room_id,
            user_id,
        )
        return ReadPosition(**dict(row)) if row else None


@dataclass(frozen=True, slots=True)
class ReadAlong:
    """What the INSERT of a lone event reads with it (PostgreSQL), so that the inbox worker
    need not read the event back: `read_pending`'s ``about`` (its $1 the room) and its
    ``first``, written over ``f``, the stored event's row (room_id, sender,
    origin_server_ts, event_id, event_type), which the statement cannot see in the table."""

    about: str
    first: str


@functools.cache
def _insert_reading(along: ReadAlong) -> str:
    """One event's INSERT ($1 to $10 as in _INSERT_EVENT, $2 the room) with, if it was
    stored, whether events of its room were pending before it and ``along``'s rows (with
    ``about_print``, the MD5 of the ``about`` row's text: `bridge.homeserver.arrivals`).
    The reads see what was committed before the statement, as `read_pending` after it
    would, but for the event itself."""
    about = re.sub(r"\$1(?!\d)", "$2", along.about)
    return (
        f"WITH f AS ({_INSERT_EVENT} RETURNING seq, room_id, sender, origin_server_ts,"  # noqa: S608 (ours)
        " event_id, event_type)"
        " SELECT f.seq AS stored_seq, EXISTS (SELECT 1 FROM inbox_events WHERE room_id = $2"
        " AND status = 'pending') AS behind, about.*, md5(about::text) AS about_print, first.*"
        f" FROM f LEFT JOIN LATERAL ({about}) about ON true"
        f" LEFT JOIN LATERAL ({along.first}) first ON true"
    )


def store_done(
    writes: Writes, event: RoomEvent, txn_id: str, now: int, then: Callable[[Rows], None]
) -> None:
    """The event stored as done, among the writes of its working out (``then`` given its
    row: its seq). Required: if it was stored before (a transaction sent again), nothing
    gathered with it is kept."""
    row = _event_row(event, txn_id, now)
    done = (*row[:6], "done", *row[7:])
    writes.add(_INSERT_EVENT + " RETURNING seq", *done, then=then, required=True)


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


# For the inbox worker, inside its per-event database transaction.


async def pending_rooms(db: Database) -> list[RoomId]:
    """Every room with pending events."""
    rows = await db.fetch("SELECT DISTINCT room_id FROM inbox_events WHERE status = 'pending'")
    return [row["room_id"] for row in rows]


@dataclass(frozen=True, slots=True)
class Pending:
    """A room's oldest pending events."""

    events: list[StoredEvent]
    more: bool  # whether more wait behind them
    about: Any  # the row the caller's ``about`` query found, read by name (None: no row)
    first: Any = None  # the row of the caller's ``first`` query (PostgreSQL; else None)


async def read_pending(
    conn: Connection, room_id: RoomId, limit: int, about: str, first: str | None = None
) -> Pending:
    """The room's oldest pending events, at most ``limit``, with the row of ``about`` (a
    query of at most one row whose one parameter, $1, is the room id), in one round trip. On
    PostgreSQL, the row of ``first`` too (such a query, about the room's first pending event,
    with column names of its own): a read its handling needs, saved a round trip. SQLite, in
    process, has no round trip to save, and skips it.

    No lock keeps another process off the room: two that read the same events both work
    them out, and the first to mark one done keeps its writes (`mark_done`)."""
    if conn.scheme == Scheme.SQLITE:
        # SQLite, without statistics, would walk the room's whole history by
        # inbox_events_by_room: name the index.
        rows = await conn.fetch(
            _SELECT_EVENTS.replace(
                "FROM inbox_events", "FROM inbox_events INDEXED BY inbox_events_pending"
            )
            + " WHERE room_id = $1 AND status = 'pending' ORDER BY seq LIMIT $2",
            room_id,
            limit + 1,
        )
        events = [StoredEvent(**dict(row)) for row in rows]
        return Pending(events[:limit], len(events) > limit, await conn.fetchrow(about, room_id))
    # A row for each event (the rows of ``about`` and ``first`` beside each), or one of
    # NULLs for none. (The events' columns prefixed, so that the others keep their names.)
    rows = await conn.fetch(
        f"SELECT {_PREFIXED_EVENT_FIELDS}, about.*, first.*"  # noqa: S608 (ours)
        f" FROM (SELECT) room LEFT JOIN LATERAL ({_SELECT_EVENTS}"
        " WHERE room_id = $1 AND status = 'pending' ORDER BY seq LIMIT $2) e ON true"
        f" LEFT JOIN LATERAL ({about}) about ON true"
        f" LEFT JOIN LATERAL ({first or 'SELECT'}) first ON true",
        room_id,
        limit + 1,
    )
    events = [
        StoredEvent(**{name: row[f"e_{name}"] for name in _EVENT_FIELDS})
        for row in rows
        if row["e_seq"] is not None
    ]
    return Pending(events[:limit], len(events) > limit, rows[0], rows[0] if first else None)


class ProcessedElsewhere(Exception):
    """An event read as pending was finished by another process meanwhile."""


def mark_done(writes: Writes, seq: int) -> None:
    """The event marked done, among its other writes, which are kept only with the mark. If
    the event is no longer pending, another process finished (or parked) it after it was read:
    `ProcessedElsewhere` is raised, and none of the writes is kept (PostgreSQL: their one
    query fails; SQLite: the caller's transaction is rolled back)."""

    def still_pending(rows: Rows) -> None:
        if not rows:
            raise ProcessedElsewhere(seq)

    writes.add(
        "UPDATE inbox_events SET status = 'done' WHERE seq = $1 AND status = 'pending'"
        " RETURNING seq",
        seq,
        then=still_pending,
        required=True,
    )


async def forget(conn: Connection, seq: int) -> None:
    """Delete an event of a room removed for retention (what the homeserver's removal itself
    sends: every member's leave), so no row of the room outlives the purge."""
    await conn.execute("DELETE FROM inbox_events WHERE seq = $1", seq)


async def mark_dead(conn: Connection, seq: int, error: str) -> None:
    await conn.execute(
        "UPDATE inbox_events SET status = 'dead', error = $2 WHERE seq = $1"
        " AND status = 'pending'",  # finished elsewhere: left as it is
        seq,
        error[:500],
    )


async def sender_of(conn: Connection, room_id: RoomId, event_id: EventId) -> UserId | None:
    """Who sent an event of this room (an event id from another room finds nothing)."""
    return await conn.fetchval(
        "SELECT sender FROM inbox_events WHERE room_id = $1 AND event_id = $2",
        room_id,
        event_id,
    )
