"""Marketplace users: each marketplace user id is bound to one Matrix ID for good."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from policy.ids import MarketUserId, UserId

from ..errors import Conflict
from ..models import Party


async def bind_user(conn: Connection, role: str, party: Party, now: int) -> None:
    """Bind the party's ids to each other, or find them bound so already; `Conflict` when
    either is bound to another."""
    await conn.execute(
        "INSERT INTO marketplace_users (user_id, matrix_id, created_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING",
        party.user_id,
        party.matrix_id,
        now,
    )
    rows = await conn.fetch(
        "SELECT user_id, matrix_id FROM marketplace_users WHERE user_id = $1 OR matrix_id = $2",
        party.user_id,
        party.matrix_id,
    )
    for row in rows:
        if (row["user_id"], row["matrix_id"]) != (party.user_id, party.matrix_id):
            raise Conflict(
                f"{role}: marketplace user {row['user_id']} is bound to {row['matrix_id']}",
                fields=[f"{role}.user_id", f"{role}.matrix_id"],
            )


async def matrix_id_of(db: Database, user_id: MarketUserId) -> UserId | None:
    return await db.fetchval("SELECT matrix_id FROM marketplace_users WHERE user_id = $1", user_id)
