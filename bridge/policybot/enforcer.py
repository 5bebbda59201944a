"""The policy bot's judgement of one room event, inside the inbox worker's transaction.

    stored event + its managed room
      m.room.member  -> someone not allowed joined or knocked    -> plan: kick
      planned state  -> changed by someone other than the bot   -> plan: repair the room
      other events   -> a party broke a content rule (policy.rules decides)
                        -> policy.violation + audit entry, a mute row, plans: redact, warn,
                           mute (and its lifting), alert the moderation room

Decisions come from `policy`; this module gathers their inputs (the sender's recent messages,
an existing mute), turns verdicts into rows, and writes them (`record`) in the same database
transaction that marks the event done; the action worker carries the plans out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from mautrix.util.async_db import Connection

from bridge.market.models import DisputeRecord, TransactionRecord, room_access
from bridge.market.records.audit import AuditEntry, write_audit
from bridge.market.records.mutes import add_mute
from bridge.storage.writes import Writes
from policy.contact import mask_contact_details
from policy.ids import RoomId, UserId
from policy.masking import MARKER, mask_id_of, with_masking
from policy.membership import allowed_members, needs_state_check, removes_on_arrival
from policy.notices import violation_alert
from policy.notifications import Notification, RoomContext, violation_notification
from policy.rooms import Participants, RoomKind
from policy.rules import (
    Action,
    ContentRules,
    Verdict,
    judge_event,
    malformed_verdict,
)
from policy.states import TransactionState

from .actions import ActionKind, PlannedAction, plan_actions
from .history import (
    History,
    KeptHistory,
    Message,
    first_pending_sql,
    read_history,
    stored_event_sql,
)

NOT_ALLOWED = "not a party or an admin of this room"
# Texts this long or shorter have their masking kept, MASKS_KEPT of them at most (under
# 300 KiB): declared types and short replies repeat.
SHORT_TEXT = 64
MASKS_KEPT = 1024


@dataclass(frozen=True, slots=True)
class Enforcement:
    notifications: list[Notification] = field(default_factory=list)
    actions: list[PlannedAction] = field(default_factory=list)
    audits: list[AuditEntry] = field(default_factory=list)
    mute: tuple[UserId, int] | None = None  # (user, until ms)
    withhold: bool = False  # the message is being redacted: it never counts as created
    broken_rules: tuple[str, ...] = ()


NOTHING = Enforcement()


@dataclass(frozen=True, slots=True)
class Room:
    """A managed room as the enforcer judges events in it."""

    kind: RoomKind
    transaction: TransactionRecord | None = None  # None for the management room
    dispute: DisputeRecord | None = None
    context: RoomContext | None = None


class Enforcer:
    def __init__(
        self,
        rules: ContentRules,
        bot: UserId,
        admins: tuple[UserId, ...],
        freeze_on_dispute: bool,
        mute_seconds: int,
    ) -> None:
        self._rules = rules
        self._bot = bot
        self._admins = admins
        self._freeze_on_dispute = freeze_on_dispute
        self._mute_ms = mute_seconds * 1000
        # The query that reads a room's first pending event's history with the room's
        # events (`read_pending`'s ``first``), for `judge`.
        self.first_pending_history = first_pending_sql(rules.flood_window_ms)
        # The same, for an event the statement that stores it reads (`ReadAlong`).
        self.stored_event_history = stored_event_sql(rules.flood_window_ms)
        # Short texts come back (every message's declared msgtype, "m.text"; "ok", "thanks"):
        # their masking, pure, is kept. The scan costs about 50 us even for "m.text".
        self._mask_short = functools.lru_cache(maxsize=MASKS_KEPT)(self._mask)

    def _participants(self, record: TransactionRecord | None) -> Participants:
        parties = record.parties if record else ()
        return Participants(bot=self._bot, parties=parties, admins=self._admins)

    async def judge(
        self,
        conn: Connection,
        event: dict[str, Any],
        room: Room,
        now: int,
        history: History | None = None,
    ) -> Enforcement:
        """What the bot must do about the event; ``history``: the sender's, if already read
        (`first_pending_history`)."""
        room_id, event_id = event["room_id"], event["event_id"]
        sender, event_type = event.get("sender", ""), event.get("type", "")
        state_key = event.get("state_key")
        raw_content = event.get("content")  # judged as it is: not an object is malformed
        content = raw_content if isinstance(raw_content, dict) else {}
        if event_type == "m.room.member" and isinstance(state_key, str):
            allowed = allowed_members(room.kind, self._participants(room.transaction))
            if not removes_on_arrival(content.get("membership", ""), state_key, allowed):
                return NOTHING
            params = {"user_id": state_key, "reason": NOT_ALLOWED}
            kick = PlannedAction(f"kick:{event_id}", room_id, ActionKind.KICK, params)
            return Enforcement(actions=[kick])
        if isinstance(state_key, str):
            if not needs_state_check(event_type, state_key, sender, self._bot):
                return NOTHING
            repair = PlannedAction(
                f"repair:{event_id}", room_id, ActionKind.REPAIR, {"event_id": event_id}
            )
            return Enforcement(actions=[repair])
        exempt = sender == self._bot or sender in self._admins
        record, context = room.transaction, room.context
        if exempt or record is None or context is None:
            return NOTHING
        if history is None:
            history = await read_history(conn, event, self._rules.flood_window_ms)
        access = room_access(record, room.dispute, self._freeze_on_dispute)
        verdict = judge_event(
            event_type,
            raw_content,
            self._rules,
            access,
            transaction_closed=record.state is TransactionState.CLOSED,
            recent_messages=history.recent,
            muted=history.muted_until is not None and history.muted_until > now,
            earlier=history.earlier,
        )
        mask_id = mask_id_of(raw_content)
        if mask_id is not None:  # the homeserver masked it before delivery
            verdict = with_masking(verdict, self._rules, access)
        if not verdict.broken:
            return NOTHING
        return self._enforce(event, verdict, context, now, mask_id)

    def kept_history(self, history: History, message: Message) -> KeptHistory:
        """``history``, read with ``message``, kept to judge the sender's next messages by."""
        return KeptHistory.read(history, message, self._rules.flood_window_ms)

    def mask(self, text: str) -> str:
        """The text with its contact details hidden (for what the marketplace is told)."""
        if len(text) <= SHORT_TEXT:
            return self._mask_short(text)
        return self._mask(text)

    def _mask(self, text: str) -> str:
        return mask_contact_details(
            text, self._rules.allowed_link_hosts, self._rules.off_platform_terms, MARKER
        )

    def malformed(self, event: dict[str, Any], room: Room, now: int) -> Enforcement:
        """What the bot does about a party's event the bridge could not read at all."""
        record, context = room.transaction, room.context
        sender = event.get("sender", "")
        if sender == self._bot or sender in self._admins or record is None or context is None:
            return NOTHING
        access = room_access(record, room.dispute, self._freeze_on_dispute)
        verdict = malformed_verdict(self._rules, access)
        return self._enforce(event, verdict, context, now) if verdict.broken else NOTHING

    async def record(
        self, writes: Writes, room_id: RoomId, enforcement: Enforcement, now: int
    ) -> None:
        """Gather the writes of what the enforcement decided."""
        if enforcement.mute is not None:
            await add_mute(writes, room_id, *enforcement.mute)
        for entry in enforcement.audits:
            await write_audit(writes, entry, now)
        await plan_actions(writes, enforcement.actions, now)

    def _enforce(
        self,
        event: dict[str, Any],
        verdict: Verdict,
        context: RoomContext,
        now: int,
        mask_id: str | None = None,
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
            params = {"event_id": event_id, "rule": ", ".join(rules), "reason": "; ".join(reasons)}
            planned.append(PlannedAction(f"redact:{event_id}", room_id, ActionKind.REDACT, params))
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
        done = [a.value for a in actions]
        if mask_id is not None:
            done.append("mask")
            params = {"event_id": event_id, "user_id": sender, "mask_id": mask_id}
            planned.append(
                PlannedAction(f"original:{event_id}", room_id, ActionKind.KEEP_ORIGINAL, params)
            )
        audit = AuditEntry(
            actor=self._bot,
            action="policy.violation",
            room_id=room_id,
            subject=sender,
            reason=", ".join(rules),
            detail=f"event {event_id}; actions: {', '.join(done)}",
        )
        return Enforcement(
            notifications=[violation_notification(context, event, violations, done, self.mask)],
            actions=planned,
            audits=[audit],
            mute=(sender, mute_until) if mute_until is not None else None,
            withhold=redacted,
            broken_rules=tuple(rules),
        )
