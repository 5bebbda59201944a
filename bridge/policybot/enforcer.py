"""The policy bot's judgement of one room event, inside the inbox worker's transaction.

    stored event + its managed room
      m.room.member  -> someone not allowed joined or knocked    -> plan: kick
      planned state  -> changed by someone other than the bot   -> plan: repair the room
      other events   -> a party broke a content rule (policy.rules decides)
                        -> policy.violation + audit entry, a mute row, plans: redact, warn,
                           mute (and its lifting), alert the moderation room

Decisions come from `policy`; this module only gathers their inputs (the sender's recent
messages, an existing mute) and turns verdicts into rows. The inbox writes them in the same
database transaction that marks the event done; the action worker carries the plans out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mautrix.util.async_db import Connection

from bridge.config.settings import Config
from bridge.market.audit import AuditEntry
from bridge.market.records.transactions import DisputeRecord, TransactionRecord, room_access
from bridge.policybot.actions import ActionKind, PlannedAction
from policy.membership import allowed_members, needs_state_check, removes_on_arrival
from policy.notices import violation_alert
from policy.notifications import Notification, RoomContext, violation_notification
from policy.rooms import Participants, RoomKind
from policy.rules import Action, Verdict, content_rules_from, judge_event
from policy.states import TransactionState


@dataclass(frozen=True, slots=True)
class Enforcement:
    notifications: list[Notification] = field(default_factory=list)
    actions: list[PlannedAction] = field(default_factory=list)
    audits: list[AuditEntry] = field(default_factory=list)
    mute: tuple[str, int] | None = None  # (user, until ms)
    withhold: bool = False  # the message is being redacted: it never counts as created
    broken_rules: tuple[str, ...] = ()


NOTHING = Enforcement()


class Enforcer:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._rules = content_rules_from(config.policy.model_dump())
        self._bot = config.bot_mxid
        self._admins = tuple(config.rooms.admins)
        self._mute_ms = config.policy.mute_seconds * 1000

    def participants(self, record: TransactionRecord | None) -> Participants:
        parties = (record.buyer.matrix_id, record.seller.matrix_id) if record else ()
        return Participants(bot=self._bot, parties=parties, admins=self._admins)

    async def judge(
        self,
        conn: Connection,
        event: dict[str, Any],
        kind: RoomKind,
        record: TransactionRecord | None,
        dispute: DisputeRecord | None,
        context: RoomContext | None,
        now: int,
    ) -> Enforcement:
        room_id, event_id = event["room_id"], event["event_id"]
        sender, event_type = event.get("sender", ""), event.get("type", "")
        state_key = event.get("state_key")
        content = event.get("content") if isinstance(event.get("content"), dict) else {}
        if event_type == "m.room.member" and isinstance(state_key, str):
            allowed = allowed_members(kind, self.participants(record))
            if not removes_on_arrival(content.get("membership", ""), state_key, allowed):
                return NOTHING
            reason = "not a party or an admin of this room"
            kick = PlannedAction(
                f"kick:{event_id}",
                room_id,
                ActionKind.KICK,
                {"user_id": state_key, "reason": reason},
            )
            return Enforcement(actions=[kick])
        if isinstance(state_key, str):
            if not needs_state_check(event_type, state_key, sender, self._bot):
                return NOTHING
            repair = PlannedAction(
                f"repair:{event_id}", room_id, ActionKind.REPAIR, {"event_id": event_id}
            )
            return Enforcement(actions=[repair])
        exempt = sender == self._bot or sender in self._admins
        if exempt or record is None or context is None:
            return NOTHING
        access = room_access(record, self._config.disputes.freeze_transaction_room, dispute)
        recent, muted_until = await self._history(conn, event)
        verdict = judge_event(
            event_type,
            content,
            self._rules,
            access,
            transaction_closed=record.state is TransactionState.CLOSED,
            recent_messages=recent,
            muted=muted_until is not None and muted_until > now,
        )
        if not verdict.broken:
            return NOTHING
        return self._enforce(event, verdict, context, now)

    def _enforce(
        self, event: dict[str, Any], verdict: Verdict, context: RoomContext, now: int
    ) -> Enforcement:
        room_id, event_id, sender = event["room_id"], event["event_id"], event["sender"]
        actions = sorted(verdict.actions, key=list(Action).index)  # a stable, readable order
        rules = [v.rule.value for v in verdict.violations]
        reasons = [v.reason for v in verdict.violations]
        violations = [
            {"rule": v.rule.value, "reason": v.reason, "findings": list(v.findings)}
            for v in verdict.violations
        ]
        redacted = Action.REDACT in verdict.actions
        mute_until = now + self._mute_ms if Action.MUTE in verdict.actions else None
        planned = []
        if redacted:
            planned.append(
                PlannedAction(
                    f"redact:{event_id}",
                    room_id,
                    ActionKind.REDACT,
                    {"event_id": event_id, "rule": ", ".join(rules), "reason": "; ".join(reasons)},
                )
            )
        if mute_until is not None:
            planned += [
                PlannedAction(
                    f"mute:{event_id}",
                    room_id,
                    ActionKind.MUTE,
                    {"user_id": sender, "until": mute_until, "rule": ", ".join(rules)},
                ),
                PlannedAction(
                    f"unmute:{event_id}",
                    room_id,
                    ActionKind.UNMUTE,
                    {"user_id": sender},
                    due_at=mute_until,
                ),
            ]
        if Action.WARN in verdict.actions:
            params = {
                "user_id": sender,
                "rules": rules,
                "reasons": reasons,
                "redacted": redacted,
                "muted_for_s": self._mute_ms // 1000 if mute_until else 0,
            }
            planned.append(PlannedAction(f"warn:{event_id}", room_id, ActionKind.WARN, params))
        if Action.ALERT in verdict.actions:
            where = f"{context.kind} {context.dispute_id or context.transaction_id}"
            text = violation_alert(sender, where, rules, [a.value for a in actions])
            params = {"user_id": sender, "text": text, "rule": ", ".join(rules)}
            planned.append(PlannedAction(f"alert:{event_id}", room_id, ActionKind.ALERT, params))
        audit = AuditEntry(
            actor=self._bot,
            action="policy.violation",
            room_id=room_id,
            subject=sender,
            reason=", ".join(rules),
            detail=f"event {event_id}; actions: {', '.join(actions)}",
        )
        return Enforcement(
            notifications=[
                violation_notification(context, event, violations, [a.value for a in actions])
            ],
            actions=planned,
            audits=[audit],
            mute=(sender, mute_until) if mute_until is not None else None,
            withhold=redacted,
            broken_rules=tuple(rules),
        )

    async def _history(self, conn: Connection, event: dict[str, Any]) -> tuple[int, int | None]:
        """The sender's messages in the flood window ending at this event (it included), and
        the end of their mute in this room, if any: one query, as it runs for every event."""
        ts = event.get("origin_server_ts", 0)
        row = await conn.fetchrow(
            "SELECT (SELECT COUNT(*) FROM inbox_events WHERE room_id = $1 AND sender = $2"
            "        AND event_type = 'm.room.message' AND origin_server_ts > $3"
            "        AND origin_server_ts <= $4) AS recent,"
            " (SELECT until FROM mutes WHERE room_id = $1 AND user_id = $2) AS muted_until",
            event["room_id"],
            event["sender"],
            ts - self._rules.flood_window_ms,
            ts,
        )
        return row["recent"], row["muted_until"]
