"""The policy bot's Matrix actions: planned where they are decided, carried out after.

    inbox worker, in the event's database transaction: plan_actions(...)  -> commit -> wake
    action worker: due pending rows, oldest first -> claim (a lease, so two bridge processes
        never both act) -> perform -> done, with its audit entry, in one transaction
        homeserver unavailable -> tried again with backoff; refused -> failed (audited)

An action is carried out at least once: a crash after the homeserver acted and before the row
is marked done repeats it, which the homeserver absorbs (sends reuse their txn ids; a second
redaction or kick changes nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mautrix.util.async_db import Connection, Database

from appservice.matrix import HomeserverUnavailable, MatrixBot, MatrixError
from bridge.market.audit import AuditEntry, write_audit
from bridge.market.records.transactions import Records
from bridge.market.transactions import Market
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import drain_when_woken
from bridge.storage.database import rows_affected
from policy.notices import warning_notice

POLL_SECONDS = 1.0
LEASE_MS = 60_000
BATCH = 50
MAX_ATTEMPTS = 12
BACKOFF_MAX_S = 300


class ActionKind(StrEnum):
    REDACT = "redact"  # params: event_id, rule, reason
    WARN = "warn"  # params: user_id, reasons, redacted, muted_for_s
    KICK = "kick"  # params: user_id, reason
    MUTE = "mute"  # params: user_id, until, rule
    UNMUTE = "unmute"  # params: user_id
    REPAIR = "repair"  # params: event_id (the state change that prompted it)
    ALERT = "alert"  # params: user_id, text, rule


@dataclass(frozen=True, slots=True)
class PlannedAction:
    key: str  # what the action is for; planning the same key twice plans it once
    room_id: str
    kind: ActionKind
    params: dict[str, Any] = field(default_factory=dict)
    due_at: int = 0  # ms; 0: at once


async def plan_actions(conn: Connection, actions: list[PlannedAction], now: int) -> None:
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


class PolicyActions:
    """Carries out one planned action through the bot and the market; its audit entry."""

    def __init__(self, bot: MatrixBot, market: Market, records: Records) -> None:
        self._bot = bot
        self._market = market
        self._records = records

    async def perform(self, action: PlannedAction) -> AuditEntry | None:
        p, room_id, bot = action.params, action.room_id, self._bot.user_id
        txn_id = f"policy-{hashlib.sha256(action.key.encode()).hexdigest()[:32]}"
        if action.kind is ActionKind.REDACT:
            await self._bot.redact(room_id, p["event_id"], p["reason"], txn_id)
            return AuditEntry(
                bot,
                "message.redacted",
                room_id,
                subject=p["event_id"],
                reason=p["rule"],
                detail=p["reason"],
            )
        if action.kind is ActionKind.WARN:
            notice = warning_notice(p["user_id"], p["reasons"], p["redacted"], p["muted_for_s"])
            content = {**notice.content(), "m.mentions": {"user_ids": [p["user_id"]]}}
            await self._bot.send_message(room_id, "m.room.message", content, txn_id)
            return AuditEntry(
                bot,
                "user.warned",
                room_id,
                subject=p["user_id"],
                reason=", ".join(p["rules"]),
                detail=notice.body,
            )
        if action.kind is ActionKind.KICK:
            await self._bot.kick(room_id, p["user_id"], p["reason"])
            return AuditEntry(
                bot, "member.removed", room_id, subject=p["user_id"], reason=p["reason"]
            )
        if action.kind is ActionKind.MUTE:
            await self._market.repair_room(room_id, changing=True)
            until = datetime.fromtimestamp(p["until"] / 1000, UTC).isoformat(timespec="seconds")
            return AuditEntry(
                bot,
                "user.muted",
                room_id,
                subject=p["user_id"],
                reason=p["rule"],
                detail=f"power level -1 until {until}",
            )
        if action.kind is ActionKind.UNMUTE:
            if not await self._records.lift_mute(room_id, p["user_id"], _now()):
                return None  # extended by a later mute, which lifts it in turn
            await self._market.repair_room(room_id, changing=True)
            return AuditEntry(
                bot, "user.unmuted", room_id, subject=p["user_id"], reason="the mute ran out"
            )
        if action.kind is ActionKind.REPAIR:
            await self._market.repair_room(room_id)  # audits what it put back, if anything
            return None
        if self._market.management_room is None:  # ALERT, with no admins to tell
            return None
        await self._market.announce(action.key, p["text"])
        return AuditEntry(
            bot,
            "admins.alerted",
            room_id,  # the room the alert is about; the alert itself is in the moderation room
            subject=p["user_id"],
            reason=p["rule"],
            detail=p["text"],
        )


class ActionWorker:
    def __init__(
        self,
        db: Database,
        bot: str,
        perform: Callable[[PlannedAction], Awaitable[AuditEntry | None]],
        metrics: Metrics,
    ) -> None:
        self._db = db
        self._bot = bot
        self._perform = perform
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._log = logging.getLogger("bridge.actions")

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await drain_when_woken(
            self.drain, self._wake, self._log, "carry out the planned actions", POLL_SECONDS
        )

    async def drain(self) -> None:
        """Carry out every action that is due, oldest first."""
        while True:
            now = _now()
            rows = await self._db.fetch(
                "SELECT seq, key, room_id, kind, params, attempts FROM planned_actions"
                " WHERE status = 'pending' AND due_at <= $1 AND lease_until < $1"
                " ORDER BY seq LIMIT $2",
                now,
                BATCH,
            )
            for row in rows:
                await self._carry_out(dict(row))
            if len(rows) < BATCH:
                return

    async def _carry_out(self, row: dict[str, Any]) -> None:
        now = _now()
        claimed = await self._db.execute(
            "UPDATE planned_actions SET lease_until = $2, attempts = attempts + 1"
            " WHERE seq = $1 AND status = 'pending' AND lease_until < $3",
            row["seq"],
            now + LEASE_MS,
            now,
        )
        if rows_affected(claimed) == 0:
            return  # another process has it
        action = PlannedAction(
            row["key"], row["room_id"], ActionKind(row["kind"]), json.loads(row["params"])
        )
        attempts = row["attempts"] + 1
        try:
            entry = await self._perform(action)
        except HomeserverUnavailable as e:
            if attempts < MAX_ATTEMPTS:
                delay_ms = min(2**attempts, BACKOFF_MAX_S) * 1000
                await self._db.execute(
                    "UPDATE planned_actions SET due_at = $2, lease_until = 0, last_error = $3"
                    " WHERE seq = $1",
                    row["seq"],
                    _now() + delay_ms,
                    str(e)[:500],
                )
                self._log.warning("Action %s in %s: %s; retrying", action.kind, action.room_id, e)
                return
            await self._finish(action, row["seq"], "failed", self._failed(action, str(e)), str(e))
        except MatrixError as e:  # refused by the homeserver: trying again changes nothing
            self._log.warning("Action %s in %s failed: %s", action.kind, action.room_id, e)
            await self._finish(action, row["seq"], "failed", self._failed(action, str(e)), str(e))
        except Exception as e:  # a bug, or a malformed row: park it rather than loop on it
            self._log.exception("Action %s in %s failed", action.kind, action.room_id)
            error = f"{type(e).__name__}: {e}"
            await self._finish(action, row["seq"], "failed", self._failed(action, error), error)
        else:
            await self._finish(action, row["seq"], "done", entry, None)

    def _failed(self, action: PlannedAction, error: str) -> AuditEntry:
        return AuditEntry(
            actor=self._bot,
            action=f"action.{action.kind}",
            room_id=action.room_id,
            outcome="failed",
            subject=action.params.get("user_id") or action.params.get("event_id"),
            detail=error,
        )

    async def _finish(
        self,
        action: PlannedAction,
        seq: int,
        status: str,
        entry: AuditEntry | None,
        error: str | None,
    ) -> None:
        self._metrics.policy_actions.labels(action.kind.value, status).inc()
        async with self._db.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE planned_actions SET status = $2, done_at = $3, last_error = $4"
                " WHERE seq = $1",
                seq,
                status,
                _now(),
                error[:500] if error else None,
            )
            if entry is not None:
                await write_audit(conn, entry)


def _now() -> int:
    return int(time.time() * 1000)
