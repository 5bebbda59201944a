"""What each stored message or read changes in the follow-ups: gathered by the inbox worker with
the event's other writes, in its database transaction, so a follow-up exists exactly when its
message is done."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.market.models import room_access
from bridge.policybot.enforcer import Room
from bridge.runtime.metrics import Metrics
from bridge.storage.writes import Rows, Writes
from policy.follow_ups import (
    PARTY_ROLES,
    Delays,
    FollowUpKind,
    counts_as_message,
    reminders_for,
    seller_follow_ups,
)
from policy.ids import UserId
from policy.rooms import RoomKind

from . import records

SELLER_STEPS = (FollowUpKind.NUDGE, FollowUpKind.ESCALATION)


class DealTracker:
    def __init__(self, delays: Delays, freeze_on_dispute: bool, metrics: Metrics) -> None:
        self._delays = delays
        self._freeze = freeze_on_dispute
        self._metrics = metrics

    async def message(self, writes: Writes, room: Room, event: dict[str, Any], now: int) -> None:
        """A message the room keeps (not removed by the policy bot): its writes gathered."""
        context, transaction = room.context, room.transaction
        assert context is not None and transaction is not None, "a transaction's or dispute's"
        access = room_access(transaction, room.dispute, self._freeze)
        sender = context.participant(event.get("sender", ""))
        if sender is None or not counts_as_message(event, context.bot):
            return
        room_id, event_id, ts = context.room_id, event["event_id"], event["origin_server_ts"]
        exchange = context.kind is RoomKind.TRANSACTION and sender.role in PARTY_ROLES
        # A reply ends the sender's own burst of unread messages, and what waited for it.
        ended = [FollowUpKind.UNREAD_REMINDER, *(SELLER_STEPS if exchange else ())]
        await records.cancel(writes, room_id, sender.matrix_id, ended, now)
        reminders = reminders_for(context, access, sender.matrix_id, ts, self._delays)
        await records.schedule(writes, room_id, event_id, ts, reminders, now)
        if exchange:
            records.answer_exchanges(
                writes, room_id, sender.matrix_id, ts, then=self._first_responses(sender.role, ts)
            )
            (other,) = (
                p for p in context.participants if p.role in PARTY_ROLES and p is not sender
            )
            # Read the exchanges before start_exchange changes them (bridge.storage.writes).
            follow_ups = seller_follow_ups(other, access, ts, self._delays)
            await records.schedule(writes, room_id, event_id, ts, follow_ups, now, True)
            await records.start_exchange(
                writes, room_id, context.transaction_id, other.matrix_id, other.role, event_id, ts
            )

    def _first_responses(self, role: str, ts: int) -> Callable[[Rows], None]:
        def observe(answered: Rows) -> None:
            for row in answered:
                self._metrics.first_response.labels(role).observe((ts - row["started_at"]) / 1000)

        return observe

    async def read(self, writes: Writes, room: Room, reader: str, unread: int, now: int) -> None:
        """A read that leaves nothing unread ends the reader's burst."""
        context = room.context
        if unread == 0 and context is not None and context.participant(reader) is not None:
            reminder = [FollowUpKind.UNREAD_REMINDER]
            await records.cancel(writes, context.room_id, UserId(reader), reminder, now)
