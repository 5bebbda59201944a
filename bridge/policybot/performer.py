"""Carrying out one planned action through the bot and the market, and what it audits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import assert_never

from appservice.matrix import MatrixBot, txn_id
from bridge.market.management import ManagementRoom
from bridge.market.reconcile import Reconciler
from bridge.market.records.audit import AuditEntry
from bridge.market.records.mutes import Mutes
from bridge.runtime.clock import Clock
from policy.notices import nudge_notice, warning_notice

from .actions import ActionKind, PlannedAction
from .originals import MaskedOriginals


class ActionPerformer:
    def __init__(
        self,
        bot: MatrixBot,
        reconciler: Reconciler,
        management: ManagementRoom,
        mutes: Mutes,
        originals: MaskedOriginals,
        clock: Clock,
    ) -> None:
        self._bot = bot
        self._reconciler = reconciler
        self._management = management
        self._mutes = mutes
        self._originals = originals
        self._clock = clock

    async def perform(self, action: PlannedAction) -> AuditEntry | None:
        """Carry the action out; the audit entry saying so (None when there is nothing to say).

        Raises `HomeserverUnavailable` (to be retried) or `MatrixError` (refused)."""
        p, room_id, bot = action.params, action.room_id, self._bot.user_id
        sent_as = txn_id("policy", action.key)
        match action.kind:
            case ActionKind.REDACT:
                await self._bot.redact(room_id, p["event_id"], p["reason"], sent_as)
                return AuditEntry(
                    bot,
                    "message.redacted",
                    room_id,
                    subject=p["event_id"],
                    reason=p["rule"],
                    detail=p["reason"],
                )
            case ActionKind.WARN:
                notice = warning_notice(
                    p["user_id"], p["reasons"], p["redacted"], p["muted_for_s"]
                )
                content = {**notice.content(), "m.mentions": {"user_ids": [p["user_id"]]}}
                await self._bot.send_message(room_id, "m.room.message", content, sent_as)
                return AuditEntry(
                    bot,
                    "user.warned",
                    room_id,
                    subject=p["user_id"],
                    reason=", ".join(p["rules"]),
                    detail=notice.body,
                )
            case ActionKind.KICK:
                await self._bot.kick(room_id, p["user_id"], p["reason"])
                return AuditEntry(
                    bot, "member.removed", room_id, subject=p["user_id"], reason=p["reason"]
                )
            case ActionKind.MUTE:
                await self._reconciler.repair_room(room_id, changing=True)
                until = datetime.fromtimestamp(p["until"] / 1000, UTC)
                return AuditEntry(
                    bot,
                    "user.muted",
                    room_id,
                    subject=p["user_id"],
                    reason=p["rule"],
                    detail=f"power level -1 until {until.isoformat(timespec='seconds')}",
                )
            case ActionKind.UNMUTE:
                now = self._clock.now_ms()
                await self._mutes.lift(room_id, p["user_id"], now)
                if p["user_id"] in await self._mutes.muted(room_id, now):
                    return None  # extended by a later mute, which lifts it in turn
                # Also when an earlier attempt lifted it but could not reach the homeserver.
                await self._reconciler.repair_room(room_id, changing=True)
                return AuditEntry(
                    bot, "user.unmuted", room_id, subject=p["user_id"], reason="the mute ran out"
                )
            case ActionKind.REPAIR:
                await self._reconciler.repair_room(room_id)  # audits what it put back, if any
                return None
            case ActionKind.ALERT:
                if self._management.room_id is None:
                    return None  # no admins to tell
                await self._management.announce(action.key, p["text"])
                return AuditEntry(
                    bot,
                    "admins.alerted",
                    room_id,  # the room it is about; the alert is in the moderation room
                    subject=p["user_id"],
                    reason=p["rule"],
                    detail=p["text"],
                )
            case ActionKind.KEEP_ORIGINAL:
                return await self._keep_original(action)
            case ActionKind.NUDGE:
                notice = nudge_notice(p["user_id"], p["waited_s"])
                content = {**notice.content(), "m.mentions": {"user_ids": [p["user_id"]]}}
                await self._bot.send_message(room_id, "m.room.message", content, sent_as)
                return None  # audited as deal.nudge when it was decided
            case _:
                assert_never(action.kind)

    async def _keep_original(self, action: PlannedAction) -> AuditEntry:
        """Fetch what the party wrote before the homeserver masked it, for admins only."""
        p, room_id, bot = action.params, action.room_id, self._bot.user_id
        found = await self._bot.masked_original(p["mask_id"])
        # The module's record must be of this message's room and sender: a mask id copied
        # from elsewhere never brings another conversation's text in.
        if not found or (found.get("room_id"), found.get("sender")) != (room_id, p["user_id"]):
            return AuditEntry(
                bot,
                "message.masked",
                room_id,
                outcome="failed",
                subject=p["event_id"],
                detail="the homeserver keeps no original of this message",
            )
        content = found.get("content")
        await self._originals.keep(
            p["event_id"], room_id, p["user_id"], content, self._clock.now_ms()
        )
        body = content.get("body") if isinstance(content, dict) else None
        return AuditEntry(
            bot,
            "message.masked",
            room_id,
            subject=p["event_id"],
            reason="contact_details",
            detail=f"original: {body if isinstance(body, str) else json.dumps(content)}",
        )
