"""Invitations the homeserver refused because the invitee blocks them (M_INVITE_BLOCKED,
Matrix 1.18): remembered per room and user until an invitation gets through, and told to the
marketplace once (`room.invite_failed`, in the room's stream)."""

from __future__ import annotations

from mautrix.util.async_db import Database

from bridge.delivery.outbox import add_notifications
from bridge.storage.database import rows_affected
from policy.ids import RoomId, UserId
from policy.notifications import Notification, notification_id


class BlockedInvites:
    def __init__(self, db: Database, retry_for_ms: int) -> None:
        self._db = db
        self._retry_for_ms = retry_for_ms

    async def record(
        self, room_id: RoomId, user_id: UserId, about: dict[str, str], now: int
    ) -> bool:
        """Remember the refusal and queue its notification; False if it was known already."""
        async with self._db.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "INSERT INTO blocked_invites (room_id, user_id, blocked_at) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING",
                room_id,
                user_id,
                now,
            )
            if not rows_affected(status):
                return False
            market_user = await conn.fetchval(
                "SELECT user_id FROM marketplace_users WHERE matrix_id = $1", user_id
            )
            notification = Notification(
                type="room.invite_failed",
                id=notification_id("room.invite_failed", f"{room_id}\x00{user_id}\x00{now}"),
                occurred_at=now,
                data={
                    **about,
                    "room_id": room_id,
                    "user_id": market_user,
                    "matrix_id": user_id,
                    "errcode": "M_INVITE_BLOCKED",
                },
            )
            await add_notifications(conn, room_id, [notification], self._retry_for_ms, now)
            return True

    async def clear(self, room_id: RoomId, user_id: UserId) -> None:
        await self._db.execute(
            "DELETE FROM blocked_invites WHERE room_id = $1 AND user_id = $2", room_id, user_id
        )

    async def in_room(self, room_id: RoomId) -> frozenset[UserId]:
        rows = await self._db.fetch(
            "SELECT user_id FROM blocked_invites WHERE room_id = $1", room_id
        )
        return frozenset(row["user_id"] for row in rows)
