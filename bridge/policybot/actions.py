"""Planned actions: the policy bot's Matrix actions, planned where they are decided.

The inbox worker plans them in the database transaction that decides them (`plan_actions`);
the action worker carries them out once that commits. `key` says what an action is for, so
deciding the same thing twice plans it once; `due_at` schedules those that wait (lifting a
mute).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mautrix.util.async_db import Connection, Database

from bridge.market.records.audit import AuditEntry, write_audit
from bridge.storage.database import rows_affected
from bridge.storage.writes import Writes
from policy.ids import RoomId


class ActionKind(StrEnum):
    REDACT = "redact"  # params: event_id, rule, reason
    WARN = "warn"  # params: user_id, rules, reasons, redacted, muted_for_s
    KICK = "kick"  # params: user_id, reason
    MUTE = "mute"  # params: user_id, until, rule
    UNMUTE = "unmute"  # params: user_id
    REPAIR = "repair"  # params: event_id (the state change that prompted it)
    ALERT = "alert"  # params: user_id, text, rule
    KEEP_ORIGINAL = "keep_original"  # params: event_id, user_id, mask_id
    NUDGE = "nudge"  # params: user_id (the seller), waited_s


@dataclass(frozen=True, slots=True)
class PlannedAction:
    key: str  # what the action is for; planning the same key twice plans it once
    room_id: RoomId
    kind: ActionKind
    params: dict[str, Any] = field(default_factory=dict)
    due_at: int = 0  # ms; 0: at once


@dataclass(frozen=True, slots=True)
class DueAction:
    seq: int
    action: PlannedAction
    attempts: int  # made before this one


async def plan_actions(conn: Connection | Writes, actions: list[PlannedAction], now: int) -> None:
    for action in actions:
        await conn.execute(
            "INSERT INTO planned_actions (key, room_id, kind, params, due_at, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
            action.key,
            action.room_id,
            action.kind.value,
            json.dumps(action.params),
            action.due_at or now,
            now,
        )


_DUE_WHERE = "status = 'pending' AND due_at <= $1 AND lease_until < $1"
# Whether any action is due at $1 that nobody holds (`DueWatch`).
DUE = f"SELECT EXISTS (SELECT 1 FROM planned_actions WHERE {_DUE_WHERE})"  # noqa: S608


class PlannedActions:
    """The planned_actions table's queries, for the action worker."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def due(self, now: int, limit: int) -> list[DueAction]:
        """Pending actions whose time has come and nobody holds, oldest first."""
        rows = await self._db.fetch(
            "SELECT seq, key, room_id, kind, params, attempts FROM planned_actions"  # noqa: S608
            f" WHERE {_DUE_WHERE} ORDER BY seq LIMIT $2",
            now,
            limit,
        )
        return [
            DueAction(
                row["seq"],
                PlannedAction(
                    row["key"], row["room_id"], ActionKind(row["kind"]), json.loads(row["params"])
                ),
                row["attempts"],
            )
            for row in rows
        ]

    async def claim(self, seq: int, now: int, until: int) -> bool:
        """Take the action until ``until`` (counting an attempt), unless another process has."""
        claimed = await self._db.execute(
            "UPDATE planned_actions SET lease_until = $2, attempts = attempts + 1"
            " WHERE seq = $1 AND status = 'pending' AND lease_until < $3",
            seq,
            until,
            now,
        )
        return rows_affected(claimed) > 0

    async def renew(self, seq: int, until: int) -> None:
        """Extend a claimed action's lease while it runs (never shortening it, nor taking an
        action back once retry_at or finish released it)."""
        await self._db.execute(
            "UPDATE planned_actions SET lease_until = $2 WHERE seq = $1 AND status = 'pending'"
            " AND lease_until > 0 AND lease_until < $2",
            seq,
            until,
        )

    async def retry_at(self, seq: int, due_at: int, error: str) -> None:
        await self._db.execute(
            "UPDATE planned_actions SET due_at = $2, lease_until = 0, last_error = $3"
            " WHERE seq = $1",
            seq,
            due_at,
            error[:500],
        )

    async def finish(
        self, seq: int, status: str, now: int, error: str | None, entry: AuditEntry | None
    ) -> None:
        """Mark the action done or failed, with its audit entry, in one transaction."""
        async with self._db.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE planned_actions SET status = $2, done_at = $3, last_error = $4"
                " WHERE seq = $1",
                seq,
                status,
                now,
                error[:500] if error else None,
            )
            if entry is not None:
                await write_audit(conn, entry, now)
