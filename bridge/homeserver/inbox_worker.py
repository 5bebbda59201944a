"""The inbox worker: stored room events -> marketplace notifications, per room, in order.

    woken by the homeserver route (and every second) -> rooms with pending events
      -> per room, one event at a time in seq order, each in ONE database transaction:
           room lock (PostgreSQL advisory lock; SQLite has one connection)
           -> the room's context (transaction, parties, admins)
           -> policy.notifications decides what to notify; the enforcer (policy.rules,
              policy.membership) what the policy bot must do
           -> outbox rows, the chat list's message record, audit entries, a mute, planned
              bot actions, and the event marked done
      -> wake the outbox and action workers; admin commands run last

An event the policy code cannot handle is parked as dead (with the error) so it never stalls
its room; a database failure rolls the event back, to be processed again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mautrix.util.async_db import Connection, Database

from bridge.delivery.outbox import add_notifications
from bridge.homeserver.inbox import RECEIPT_EVENT_TYPE
from bridge.market.audit import write_audit
from bridge.market.records.transactions import (
    dispute_in_room,
    room_context,
    transaction_in_room,
    unread_count,
)
from bridge.policybot.actions import plan_actions
from bridge.policybot.enforcer import NOTHING, Enforcement, Enforcer
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import drain_when_woken
from bridge.storage.database import try_lock_room
from policy.notifications import (
    MessageRecord,
    Notification,
    message_notifications,
    read_notification,
    related_event_id,
)
from policy.rooms import RoomKind

POLL_SECONDS = 1.0
ROOM_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Decision:
    notifications: list[Notification] = field(default_factory=list)
    record: MessageRecord | None = None  # for the chat list
    kind: str | None = None  # the room's kind; None: a room we do not manage
    enforcement: Enforcement = NOTHING


class InboxWorker:
    def __init__(
        self,
        db: Database,
        bot: str,
        admins: list[str],
        retry_for_ms: int,
        metrics: Metrics,
        enforcer: Enforcer,
        management_room: Callable[[], str | None],
        on_queued: Callable[[], None],
        on_planned: Callable[[], None],
        on_message: Callable[[str, str | None, dict], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._bot = bot
        self._admins = admins
        self._retry_for_ms = retry_for_ms
        self._metrics = metrics
        self._enforcer = enforcer
        self._management_room = management_room
        self._on_queued = on_queued
        self._on_planned = on_planned
        self._on_message = on_message
        self._wake = asyncio.Event()
        self._log = logging.getLogger("bridge.inbox")

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await drain_when_woken(
            self.drain, self._wake, self._log, "process the inbox", POLL_SECONDS
        )

    async def drain(self) -> None:
        """Process every pending event of every room."""
        rows = await self._db.fetch(
            "SELECT room_id, MIN(received_at) AS oldest FROM inbox_events"
            " WHERE status = 'pending' GROUP BY room_id"
        )
        oldest = min((row["oldest"] for row in rows), default=None)
        self._metrics.inbox_lag.set(0 if oldest is None else time.time() - oldest / 1000)
        limit = asyncio.Semaphore(ROOM_CONCURRENCY)

        async def drain_room(room_id: str) -> None:
            async with limit:
                while await self._process_next(room_id):
                    pass

        await asyncio.gather(*(drain_room(row["room_id"]) for row in rows))

    async def _process_next(self, room_id: str) -> bool:
        """Process the room's oldest pending event; whether another one waits behind it
        (False too when there is none, or another process holds the room)."""
        async with self._db.acquire() as conn, conn.transaction():
            if not await try_lock_room(conn, room_id):
                return False
            # Two rows: the second says whether to come back, without an empty round.
            rows = await conn.fetch(
                "SELECT seq, event_type, sender, origin_server_ts, event_json FROM inbox_events"
                " WHERE room_id = $1 AND status = 'pending' ORDER BY seq LIMIT 2",
                room_id,
            )
            if not rows:
                return False
            row, more = rows[0], len(rows) > 1
            now = int(time.time() * 1000)
            try:
                decision = await self._decide(conn, room_id, dict(row), now)
            except Exception as e:  # a bug in deciding: park the event, keep the room moving
                self._log.exception("Parking event %s of %s as dead", row["seq"], room_id)
                await conn.execute(
                    "UPDATE inbox_events SET status = 'dead', error = $2 WHERE seq = $1",
                    row["seq"],
                    f"{type(e).__name__}: {e}"[:500],
                )
                return more
            enforcement = decision.enforcement
            queued = await add_notifications(
                conn,
                room_id,
                decision.notifications + enforcement.notifications,
                self._retry_for_ms,
            )
            if decision.record is not None:
                await _record_message(conn, room_id, decision.record)
            await _apply_enforcement(conn, room_id, enforcement, now)
            await conn.execute(
                "UPDATE inbox_events SET status = 'done' WHERE seq = $1", row["seq"]
            )
        if queued:
            self._metrics.webhooks_queued.inc(queued)
            self._on_queued()
        for rule in enforcement.broken_rules:
            self._metrics.policy_violations.labels(rule).inc()
        if enforcement.actions:
            self._on_planned()
        if (
            self._on_message
            and row["event_type"] == "m.room.message"
            and row["sender"] != self._bot
            and not enforcement.withhold
        ):
            try:  # admin commands run after the event is stored as done: at most once
                await self._on_message(room_id, decision.kind, json.loads(row["event_json"]))
            except Exception:
                self._log.exception("Handling a message of %s failed", room_id)
        return more

    async def _decide(self, conn: Connection, room_id: str, row: dict, now: int) -> Decision:
        """What the event means: notifications, chat list record, the policy bot's actions."""
        event = json.loads(row["event_json"])
        dispute = None
        record = await transaction_in_room(conn, room_id)
        if record is None and (found := await dispute_in_room(conn, room_id)) is not None:
            dispute, record = found
        if record is None:
            if room_id != self._management_room() or row["event_type"] == RECEIPT_EVENT_TYPE:
                return Decision()  # not a room we manage
            kind = RoomKind.MANAGEMENT
            enforcement = await self._enforcer.judge(conn, event, kind, None, None, None, now)
            return Decision(kind=kind.value, enforcement=enforcement)
        context = room_context(record, self._bot, self._admins, dispute)
        if row["event_type"] == RECEIPT_EVENT_TYPE:
            unread = await unread_count(conn, room_id, row["sender"], row["origin_server_ts"])
            notification = read_notification(
                context, row["sender"], event["event_id"], row["origin_server_ts"], unread
            )
            return Decision([notification] if notification else [], None, context.kind)
        related = related_event_id(event)
        related_sender = None
        if related is not None:
            related_sender = await conn.fetchval(
                "SELECT sender FROM inbox_events WHERE room_id = $1 AND event_id = $2",
                room_id,
                related,
            )
        notifications, record_of_message = message_notifications(event, context, related_sender)
        kind = RoomKind.DISPUTE if dispute else RoomKind.TRANSACTION
        enforcement = await self._enforcer.judge(conn, event, kind, record, dispute, context, now)
        if enforcement.withhold:  # redacted as a violation: it never counts as a message
            notifications = [n for n in notifications if n.type != "message.created"]
            record_of_message = None
        return Decision(notifications, record_of_message, context.kind, enforcement)


async def _apply_enforcement(
    conn: Connection, room_id: str, enforcement: Enforcement, now: int
) -> None:
    if enforcement.mute is not None:
        user_id, until = enforcement.mute
        await conn.execute(
            "INSERT INTO mutes (room_id, user_id, until) VALUES ($1, $2, $3)"
            " ON CONFLICT (room_id, user_id) DO UPDATE SET until = excluded.until"
            " WHERE excluded.until > mutes.until",
            room_id,
            user_id,
            until,
        )
    for entry in enforcement.audits:
        await write_audit(conn, entry, now)
    await plan_actions(conn, enforcement.actions, now)


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
