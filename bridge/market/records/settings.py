"""The settings table: values the bridge decides once and keeps (the moderation room's id)."""

from __future__ import annotations

from mautrix.util.async_db import Database


class Settings:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        return await self._db.fetchval("SELECT value FROM settings WHERE key = $1", key)

    async def set(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )
