"""What a decided event writes, and what its writes set going once committed: the webhooks
queued (and handed to the outbox worker), the chat list's record, the follow-ups, the
policy bot's rows; then the metrics, the wake-ups and an admin command's run."""

from __future__ import annotations

import logging

from bridge.deals.tracker import DealTracker
from bridge.delivery.outbox import queue_notifications
from bridge.market.records.messages import record_message
from bridge.policybot.commands import CommandRunner
from bridge.policybot.enforcer import Enforcer
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeups
from bridge.storage.writes import Rows, Writes
from policy.ids import RoomId, UserId

from .decisions import Decision, Delivery, Processed


class Consequences:
    def __init__(
        self,
        retry_for_ms: int,
        enforcer: Enforcer,
        commands: CommandRunner,
        tracker: DealTracker,
        metrics: Metrics,
        wakeups: Wakeups,
        delivery: Delivery | None,
    ) -> None:
        self._retry_for_ms = retry_for_ms
        self._enforcer = enforcer
        self._commands = commands
        self._tracker = tracker
        self._metrics = metrics
        self._wakeups = wakeups
        self._delivery = delivery
        self._log = logging.getLogger("bridge.homeserver.inbox")

    async def gather(
        self,
        writes: Writes,
        room_id: RoomId,
        sender: UserId,
        decision: Decision,
        now: int,
        queued: Rows,
    ) -> int:
        """An event's writes, but its mark; the outbox rows it queues go to ``queued`` once
        written. Returns until when they are leased as queued (if the outbox worker can
        take them now: no lease statement)."""
        notifications = decision.notifications + decision.enforcement.notifications
        lease_end = self._delivery.accepts(now) if self._delivery else 0
        queue_notifications(
            writes, room_id, notifications, self._retry_for_ms, now, queued.extend, lease_end
        )
        if decision.record is not None:
            await record_message(writes, room_id, decision.record)
        await self._track(writes, sender, decision, now)
        await self._enforcer.record(writes, room_id, decision.enforcement, now)
        return lease_end

    async def after_commits(self, room_id: RoomId, committed: list[Processed]) -> None:
        """What follows the commits of the room's events, in their order."""
        for done in committed:
            enforcement = done.decision.enforcement
            if done.queued:
                self._metrics.webhooks_queued.inc(done.queued)
            if done.handed_over and self._delivery:
                await self._delivery.take(done.handed_over, done.lease_end)
            if done.queued > len(done.handed_over):  # behind a stream's pending rows
                self._wakeups.outbox.set()
            for rule in enforcement.broken_rules:
                self._metrics.policy_violations.labels(rule).inc()
            if enforcement.actions:
                self._wakeups.actions.set()
            if done.command:
                try:  # admin commands run after the event is stored as done: at most once
                    await self._commands.handle(room_id, done.decision.kind, done.event)
                except Exception:
                    self._log.exception("Handling a message of %s failed", room_id)

    async def _track(self, writes: Writes, sender: UserId, decision: Decision, now: int) -> None:
        """Reminders and exchanges: a kept new message starts them, a read may end them."""
        room = decision.room
        if room is None:
            return
        if decision.unread is not None:
            await self._tracker.read(writes, room, sender, decision.unread, now)
        elif decision.record is not None and decision.record.edits is None:
            assert decision.event is not None, "decided from the parsed event"
            await self._tracker.message(writes, room, decision.event, now)
