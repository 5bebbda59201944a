"""Suspension, erasure and export of a marketplace user.

    suspend(user)    the record marked (audited, `user.suspended` queued, in one database
                     transaction); a managed account's every session ended and the account
                     locked on the homeserver (no token nor login works, single sign-on
                     included); every room of the user repaired, which removes them (a
                     suspended party is out of every room's plan): they can neither post nor
                     read what follows
    unsuspend(user)  the same, the other way: the rooms repaired take them back
    erase(user)      refused while a hold is on one of their transactions (a legal hold, or a
                     dispute open or recently resolved: bridge.market.holds); else what
                     they sent (messages, reactions) redacted in rooms not archived, a
                     managed account deactivated
                     with erasure on the homeserver (profile removed, rooms left), what they
                     wrote replaced by tombstones in the bridge's tables (bridge.identity.
                     erasure: transcripts still verify), the record's profile dropped and the
                     user marked erased (audited, `user.erased` queued), their rooms repaired
    export(user)     everything the bridge holds about the user, as one document

Each step is idempotent, and the record is marked once the homeserver's steps are done (the
rooms' repair follows, and is redone by a retry), so a call that failed half-way (the
homeserver down: 503) is completed by its retry; an erased user stays erased. Every call on
one user holds that user's lock (`Accounts.lock`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mautrix.util.async_db import Database

from appservice.matrix import MatrixBot, txn_id
from bridge.delivery.outbox import add_notifications
from bridge.market.chat_list import Chat, ChatList
from bridge.market.errors import InvalidState
from bridge.market.holds import LegalHolds
from bridge.market.records.audit import AuditEntry, write_audit
from bridge.runtime.clock import Clock
from policy.ids import MarketUserId, RoomId
from policy.notifications import user_notification
from policy.transcript import iso_time

from .accounts import Accounts
from .erasure import erase_in_room, sent_by
from .errors import UserErased
from .records import UserRecord, set_erased, set_suspended
from .sessions import Sessions

EXPORT_FORMAT = "marketplace-user-export/1"
ERASED_REASON = "Removed at the marketplace's request."


class UserOnHold(InvalidState):
    """The user's data is held for a claim: a legal hold, or a dispute (open, or resolved
    less than retention.hold_after_resolution_days ago), on one of their transactions."""


class UserLifecycle:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        sessions: Sessions,
        bot: MatrixBot,
        chat_list: ChatList,
        holds: LegalHolds,
        repair_room: Callable[[RoomId], Awaitable[None]],
        clock: Clock,
        retry_for_ms: int,
    ) -> None:
        self._db = db
        self._accounts = accounts
        self._sessions = sessions
        self._bot = bot
        self._chat_list = chat_list
        self._holds = holds
        self._repair_room = repair_room
        self._clock = clock
        self._retry_for_ms = retry_for_ms

    async def suspend(self, user_id: MarketUserId, reason: str | None) -> UserRecord:
        async with self._accounts.lock(user_id):
            return await self._suspend(user_id, reason)

    async def unsuspend(self, user_id: MarketUserId, reason: str | None) -> UserRecord:
        async with self._accounts.lock(user_id):
            return await self._unsuspend(user_id, reason)

    async def erase(self, user_id: MarketUserId, reason: str | None) -> UserRecord:
        async with self._accounts.lock(user_id):
            return await self._erase(user_id, reason)

    async def _suspend(self, user_id: MarketUserId, reason: str | None) -> UserRecord:
        user = await self._living(user_id)
        if user.suspended_at is None:
            await self._mark(user, "user.suspended", reason, suspend=True)
        if user.managed:
            await self._bot.set_locked(user.matrix_id, True)
        await self._sessions.revoke_all(user)
        await self._repair_rooms(user_id)
        return await self._accounts.get(user_id)

    async def _unsuspend(self, user_id: MarketUserId, reason: str | None) -> UserRecord:
        user = await self._living(user_id)
        if user.suspended_at is not None:
            await self._mark(user, "user.unsuspended", reason, suspend=False)
        if user.managed:
            await self._bot.set_locked(user.matrix_id, False)
        await self._repair_rooms(user_id)
        return await self._accounts.get(user_id)

    async def _erase(self, user_id: MarketUserId, reason: str | None) -> UserRecord:
        user = await self._accounts.get(user_id)
        if user.erased_at is not None:  # done but perhaps the rooms' repair: redone
            await self._repair_rooms(user_id)
            return user
        chats = await self._chats(user_id)
        if held := await self._holds.of_user(user_id):
            raise UserOnHold(
                f"user {user_id} is held by "
                + "; ".join(hold.describe() for hold in held)
                + ": what they wrote is evidence until the hold ends"
            )
        rooms = [chat.room_id for chat in chats if chat.room_id is not None]
        for chat in chats:
            if (room_id := chat.room_id) is None or chat.archived:
                continue
            async with self._db.acquire() as conn:
                events = await sent_by(conn, room_id, user.matrix_id)
            for event_id in events:
                await self._bot.redact(
                    room_id, event_id, ERASED_REASON, txn_id("erase", f"{room_id}/{event_id}")
                )
        if user.managed:
            await self._bot.deactivate_managed(user.matrix_id)
        await self._sessions.revoke_all(user)
        await self._mark(user, "user.erased", reason, erase_rooms=rooms)
        await self._repair_rooms(user_id)
        return await self._accounts.get(user_id)

    async def export(self, user_id: MarketUserId) -> dict[str, Any]:
        user = await self._accounts.get(user_id)
        chats = await self._chats(user_id)
        messages, audit = [], []
        async with self._db.acquire() as conn:
            for chat in chats:
                if (room_id := chat.room_id) is None:
                    continue
                rows = await conn.fetch(
                    "SELECT event_json FROM inbox_events WHERE room_id = $1 AND sender = $2"
                    " ORDER BY seq",
                    room_id,
                    user.matrix_id,
                )
                messages += [json.loads(row["event_json"]) for row in rows]
            rows = await conn.fetch(
                "SELECT at, actor, action, outcome, room_id, transaction_id, dispute_id, subject,"
                " reason, detail FROM audit WHERE subject = $1 OR actor = $1 ORDER BY seq",
                user.matrix_id,
            )
            audit = [{**dict(row), "at": iso_time(row["at"])} for row in rows]
            rows = await conn.fetch(
                "SELECT event_id, room_id, content FROM masked_originals WHERE sender = $1",
                user.matrix_id,
            )
            originals = [{**dict(row), "content": json.loads(row["content"])} for row in rows]
        return {
            "format": EXPORT_FORMAT,
            "generated_at": iso_time(self._clock.now_ms()),
            "user": user,
            "rooms": chats,
            "messages": messages,
            "masked_originals": originals,
            "sessions": await self._sessions.all_of(user_id),
            "audit": audit,
        }

    async def _living(self, user_id: MarketUserId) -> UserRecord:
        user = await self._accounts.get(user_id)
        if user.erased_at is not None:
            raise UserErased(f"user {user_id} was erased")
        return user

    async def _chats(self, user_id: MarketUserId) -> list[Chat]:
        return await self._chat_list.of(user_id) or []

    async def _repair_rooms(self, user_id: MarketUserId) -> None:
        for chat in await self._chats(user_id):
            if (room_id := chat.room_id) is not None:
                await self._repair_room(room_id)

    async def _mark(
        self,
        user: UserRecord,
        action: str,
        reason: str | None,
        *,
        suspend: bool | None = None,
        erase_rooms: list[RoomId] | None = None,
    ) -> None:
        """Change the record, audit it and queue its webhook, in one database transaction."""
        now = self._clock.now_ms()
        notification = user_notification(action, user.user_id, user.matrix_id, reason, now)
        entry = AuditEntry(
            actor="marketplace",
            action=action,
            room_id="",
            subject=user.matrix_id,
            reason=reason,
            detail=f"marketplace user {user.user_id}",
        )
        async with self._db.acquire() as conn, conn.transaction():
            if suspend is not None:
                await set_suspended(conn, user.user_id, now if suspend else None)
            if erase_rooms is not None:
                for room_id in erase_rooms:
                    await erase_in_room(conn, room_id, user.matrix_id)
                await set_erased(conn, user.user_id, now)
            await write_audit(conn, entry, now)
            await add_notifications(
                conn, f"user:{user.user_id}", [notification], self._retry_for_ms, now
            )
