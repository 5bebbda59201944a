"""The inbox worker: stored room events -> marketplace notifications, per room, in order.

    woken by the homeserver route (and every second) -> rooms with pending events
      -> per room, one event at a time in seq order, each in ONE database transaction:
           room lock (PostgreSQL advisory lock; SQLite has one connection)
           -> the room's context (transaction, parties, admins)
           -> policy.notifications decides
           -> outbox rows + the chat list's message record + the event marked done
      -> wake the outbox worker

An event the policy code cannot handle is parked as dead (with the error) so it never stalls
its room; a database failure rolls the event back, to be processed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from mautrix.util.async_db import Connection, Database

from policy.notifications import (
    MessageRecord,
    Notification,
    message_notifications,
    read_notification,
    related_event_id,
)

from .database import try_lock_room
from .events import RECEIPT_EVENT_TYPE
from .metrics import Metrics
from .outbox import add_notifications
from .records import dispute_in_room, room_context, transaction_in_room, unread_count

POLL_SECONDS = 1.0
ROOM_CONCURRENCY = 8


class InboxWorker:
    def __init__(
        self,
        db: Database,
        bot: str,
        admins: list[str],
        retry_for_ms: int,
        metrics: Metrics,
        on_queued: Callable[[], None],
        on_message: Callable[[str, str | None, dict], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._bot = bot
        self._admins = admins
        self._retry_for_ms = retry_for_ms
        self._metrics = metrics
        self._on_queued = on_queued
        self._on_message = on_message
        self._wake = asyncio.Event()
        self._log = logging.getLogger("bridge.inbox")

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.drain()
            except Exception:
                self._log.exception("Could not process the inbox; trying again")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
            # cancellation that stops the worker, and close() would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()

    async def drain(self) -> None:
        """Process every pending event of every room."""
        oldest = await self._db.fetchval(
            "SELECT MIN(received_at) FROM inbox_events WHERE status = 'pending'"
        )
        self._metrics.inbox_lag.set(0 if oldest is None else time.time() - oldest / 1000)
        rows = await self._db.fetch(
            "SELECT DISTINCT room_id FROM inbox_events WHERE status = 'pending'"
        )
        limit = asyncio.Semaphore(ROOM_CONCURRENCY)

        async def drain_room(room_id: str) -> None:
            async with limit:
                while await self._process_next(room_id):
                    pass

        await asyncio.gather(*(drain_room(row["room_id"]) for row in rows))

    async def _process_next(self, room_id: str) -> bool:
        """Process the room's oldest pending event; False when there is none (or no lock)."""
        async with self._db.acquire() as conn, conn.transaction():
            if not await try_lock_room(conn, room_id):
                return False
            row = await conn.fetchrow(
                "SELECT seq, event_type, sender, origin_server_ts, event_json FROM inbox_events"
                " WHERE room_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1",
                room_id,
            )
            if row is None:
                return False
            try:
                notifications, record, kind = await self._decide(conn, room_id, dict(row))
            except Exception as e:  # a bug in deciding: park the event, keep the room moving
                self._log.exception("Parking event %s of %s as dead", row["seq"], room_id)
                await conn.execute(
                    "UPDATE inbox_events SET status = 'dead', error = $2 WHERE seq = $1",
                    row["seq"],
                    f"{type(e).__name__}: {e}"[:500],
                )
                return True
            queued = await add_notifications(conn, room_id, notifications, self._retry_for_ms)
            if record is not None:
                await _record_message(conn, room_id, record)
            await conn.execute(
                "UPDATE inbox_events SET status = 'done' WHERE seq = $1", row["seq"]
            )
        if queued:
            self._metrics.webhooks_queued.inc(queued)
            self._on_queued()
        if (
            self._on_message
            and row["event_type"] == "m.room.message"
            and row["sender"] != self._bot
        ):
            try:  # admin commands run after the event is stored as done: at most once
                await self._on_message(room_id, kind, json.loads(row["event_json"]))
            except Exception:
                self._log.exception("Handling a message of %s failed", room_id)
        return True

    async def _decide(
        self, conn: Connection, room_id: str, row: dict
    ) -> tuple[list[Notification], MessageRecord | None, str | None]:
        """The event's notifications, chat list record and the kind of room it is in."""
        record = await transaction_in_room(conn, room_id)
        if record is not None:
            context = room_context(record, self._bot, self._admins)
        elif (found := await dispute_in_room(conn, room_id)) is not None:
            dispute, record = found
            context = room_context(record, self._bot, self._admins, dispute)
        else:
            return [], None, None  # not a transaction or dispute room
        event = json.loads(row["event_json"])
        if row["event_type"] == RECEIPT_EVENT_TYPE:
            unread = await unread_count(conn, room_id, row["sender"], row["origin_server_ts"])
            notification = read_notification(
                context, row["sender"], event["event_id"], row["origin_server_ts"], unread
            )
            return ([notification] if notification else []), None, context.kind
        related = related_event_id(event)
        related_sender = None
        if related is not None:
            related_sender = await conn.fetchval(
                "SELECT sender FROM inbox_events WHERE room_id = $1 AND event_id = $2",
                room_id,
                related,
            )
        return (*message_notifications(event, context, related_sender), context.kind)


async def _record_message(conn: Connection, room_id: str, record: MessageRecord) -> None:
    if record.deletes is not None:
        await conn.execute(
            "UPDATE messages SET deleted = TRUE, preview = ''"
            " WHERE room_id = $1 AND event_id = $2",
            room_id,
            record.deletes,
        )
    elif record.edits is not None:
        await conn.execute(
            "UPDATE messages SET preview = $3 WHERE room_id = $1 AND event_id = $2",
            room_id,
            record.edits,
            record.preview,
        )
    else:
        await conn.execute(
            "INSERT INTO messages (room_id, event_id, sender, ts, preview)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            room_id,
            record.event_id,
            record.sender,
            record.ts,
            record.preview,
        )
