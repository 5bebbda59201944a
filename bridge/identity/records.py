"""Marketplace users as the bridge keeps them (the marketplace_users table), and the sessions
handed out to managed ones (user_sessions)."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Connection, Database

from policy.ids import MarketUserId, UserId

_SELECT = (
    "SELECT user_id, matrix_id, managed, display_name, avatar_url, avatar_mxc, email,"
    " created_at, updated_at, suspended_at, erased_at FROM marketplace_users"
)


@dataclass(frozen=True, slots=True)
class Profile:
    """What the marketplace says about a user; None fields are absent."""

    display_name: str | None = None
    avatar_url: str | None = None  # https; None: no avatar
    email: str | None = None


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: MarketUserId
    matrix_id: UserId
    managed: bool  # an account the bridge made (True) or one the marketplace brought
    profile: Profile
    avatar_mxc: str | None  # the avatar's copy in the homeserver's media repository
    created_at: int
    updated_at: int | None
    suspended_at: int | None
    erased_at: int | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    device_id: str
    user_id: MarketUserId
    created_at: int
    expires_at: int


def _user(row) -> UserRecord:
    return UserRecord(
        user_id=row["user_id"],
        matrix_id=row["matrix_id"],
        managed=bool(row["managed"]),
        profile=Profile(row["display_name"], row["avatar_url"], row["email"]),
        avatar_mxc=row["avatar_mxc"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        suspended_at=row["suspended_at"],
        erased_at=row["erased_at"],
    )


class UserRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: MarketUserId) -> UserRecord | None:
        row = await self._db.fetchrow(_SELECT + " WHERE user_id = $1", user_id)
        return _user(row) if row else None

    async def with_matrix_id(self, matrix_id: UserId) -> UserRecord | None:
        row = await self._db.fetchrow(_SELECT + " WHERE matrix_id = $1", matrix_id)
        return _user(row) if row else None

    async def store(self, record: UserRecord) -> None:
        """Insert the user, or update its profile (its ids and kind never change)."""
        profile = record.profile
        await self._db.execute(
            "INSERT INTO marketplace_users (user_id, matrix_id, managed, display_name,"
            " avatar_url, avatar_mxc, email, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,"
            " avatar_url = excluded.avatar_url, avatar_mxc = excluded.avatar_mxc,"
            " email = excluded.email, updated_at = excluded.updated_at"
            " WHERE marketplace_users.erased_at IS NULL",  # erased stays erased
            record.user_id,
            record.matrix_id,
            record.managed,
            profile.display_name,
            profile.avatar_url,
            record.avatar_mxc,
            profile.email,
            record.created_at,
            record.updated_at,
        )


async def set_suspended(conn: Connection, user_id: MarketUserId, at: int | None) -> None:
    await conn.execute(
        "UPDATE marketplace_users SET suspended_at = $2 WHERE user_id = $1", user_id, at
    )


async def set_erased(conn: Connection, user_id: MarketUserId, at: int) -> None:
    """The user erased: the profile forgotten; the ids stay, as transactions name them."""
    await conn.execute(
        "UPDATE marketplace_users SET erased_at = $2, display_name = NULL, avatar_url = NULL,"
        " avatar_mxc = NULL, email = NULL, updated_at = $2 WHERE user_id = $1",
        user_id,
        at,
    )


class SessionRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, session: SessionRecord) -> None:
        await self._db.execute(
            "INSERT INTO user_sessions (device_id, user_id, created_at, expires_at)"
            " VALUES ($1, $2, $3, $4)",
            session.device_id,
            session.user_id,
            session.created_at,
            session.expires_at,
        )

    async def live(self, user_id: MarketUserId, now: int) -> list[SessionRecord]:
        """The user's sessions not revoked and not expired, oldest first."""
        rows = await self._db.fetch(
            "SELECT device_id, user_id, created_at, expires_at FROM user_sessions"
            " WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2"
            " ORDER BY created_at, device_id",
            user_id,
            now,
        )
        return [SessionRecord(**dict(row)) for row in rows]

    async def all_of(self, user_id: MarketUserId) -> list[SessionRecord]:
        rows = await self._db.fetch(
            "SELECT device_id, user_id, created_at, expires_at FROM user_sessions"
            " WHERE user_id = $1 ORDER BY created_at, device_id",
            user_id,
        )
        return [SessionRecord(**dict(row)) for row in rows]

    async def expired(self, user_id: MarketUserId, now: int) -> list[str]:
        """Devices of sessions that ended by themselves and are still on the homeserver."""
        rows = await self._db.fetch(
            "SELECT device_id FROM user_sessions"
            " WHERE user_id = $1 AND revoked_at IS NULL AND expires_at <= $2",
            user_id,
            now,
        )
        return [row["device_id"] for row in rows]

    async def revoke(self, user_id: MarketUserId, device_ids: list[str], now: int) -> None:
        for device_id in device_ids:
            await self._db.execute(
                "UPDATE user_sessions SET revoked_at = $3"
                " WHERE user_id = $1 AND device_id = $2 AND revoked_at IS NULL",
                user_id,
                device_id,
                now,
            )

    async def revoke_all(self, user_id: MarketUserId, now: int) -> None:
        await self._db.execute(
            "UPDATE user_sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            user_id,
            now,
        )
