"""The follow-up worker: fires reminders, nudges and escalations when they come due.

    woken by `DueWatch` when one comes due (once the bridge is connected) -> due follow-ups,
    in rooms whose stored events are all processed (ROOM_CONCURRENCY rooms at once, each
    room's in order)
    -> claim (a lease: one process fires each) -> the room as it is now says whether it
    still applies (policy.follow_ups) -> in ONE database transaction: the webhook, the bot's
    notice (a planned action), the audit entry, and the follow-up ended or rescheduled
    -> an escalation with auto_dispute then opens its dispute, retried until done

Nothing waits in memory: a process that was down finds what came due meanwhile, and what was
read or answered meanwhile is skipped: its reply is in the database by then, and before a
reminder the room's read receipts are asked of the homeserver (Synapse drops the receipts it
cannot push while the bridge is away).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable

from mautrix.util.async_db import Connection, Database

from appservice.matrix import HomeserverUnavailable, MatrixError
from bridge.delivery.outbox import add_notifications
from bridge.market.disputes import Disputes
from bridge.market.errors import MarketError
from bridge.market.models import NewDispute, room_access, room_context
from bridge.market.records.audit import AuditEntry, write_audit
from bridge.market.records.rooms import object_of_room
from bridge.policybot.actions import ActionKind, PlannedAction, plan_actions
from bridge.runtime.backoff import Backoff
from bridge.runtime.clock import Clock
from bridge.runtime.due import DueCheck
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeups, drain_when_woken, room_by_room
from policy.follow_ups import (
    Delays,
    FollowUpKind,
    deal_notification,
    seller_still_waited_for,
    unread_reminder,
)
from policy.ids import DisputeId, RoomId, UserId
from policy.links import RoomLinks
from policy.notifications import Notification, RoomContext
from policy.states import Access

from . import records
from .records import FollowUp, FollowUps

LEASE_MS = 60_000
BATCH = 100
# Rooms whose follow-ups fire side by side: each fire waits mostly on the homeserver (a
# reminder first asks for the room's read receipts). One at a time, a backlog after downtime
# went out at 12 to 76 a second; 8 at once, 108 to 219 (docs/performance.md, benchmark 9).
ROOM_CONCURRENCY = 8
BACKOFF = Backoff(initial=2, maximum=300)
MAX_ATTEMPTS = 12
# After connecting, the homeserver re-sends what it queued while the bridge was away (reads
# among it): wait that long before the first round, so a read message is not reminded of.
CATCH_UP_SECONDS = 3.0
NO_RESPONSE = "no response"


class Superseded(Exception):
    """Another process took the follow-up over (this one's lease ran out): roll back."""


class FollowUpWorker:
    def __init__(
        self,
        db: Database,
        delays: Delays,
        disputes: Disputes,
        bot: UserId,
        admins: tuple[UserId, ...],
        freeze_on_dispute: bool,
        links: RoomLinks | None,
        retry_for_ms: int,
        clock: Clock,
        metrics: Metrics,
        wakeups: Wakeups,
        connected: asyncio.Event,
        refresh_reads: Callable[[RoomId], Awaitable[None]],
    ) -> None:
        self._db = db
        self._refresh_reads = refresh_reads
        self._follow_ups = FollowUps(db)
        self._delays = delays
        self._disputes = disputes
        self._bot = bot
        self._admins = admins
        self._freeze = freeze_on_dispute
        self._links = links
        self._retry_for_ms = retry_for_ms
        self._clock = clock
        self._metrics = metrics
        self._wakeups = wakeups
        self._connected = connected
        self._log = logging.getLogger("bridge.deals")

    async def run(self) -> None:
        await self._connected.wait()
        await self._clock.sleep(CATCH_UP_SECONDS)
        # What it fires comes due with time: found by `DueWatch`, which wakes it then.
        await drain_when_woken(
            self.drain, self._wakeups.follow_ups, self._log, "fire the due follow-ups"
        )

    @property
    def due(self) -> DueCheck:
        """`DueWatch`'s look for follow-ups come due."""
        return DueCheck.waking(self._follow_ups.any_due, self._wakeups.follow_ups)

    async def drain(self) -> None:
        """Fire every follow-up that is due, rooms side by side (`room_by_room`)."""
        while True:
            due = await self._follow_ups.due(self._clock.now_ms(), BATCH)
            await room_by_room(due, lambda item: item.room_id, self._fire, ROOM_CONCURRENCY)
            if len(due) < BATCH:
                return

    async def _fire(self, item: FollowUp) -> None:
        now = self._clock.now_ms()
        lease = now + LEASE_MS
        if not await self._follow_ups.claim(item.seq, now, lease):
            return  # another process has it
        if item.kind is FollowUpKind.UNREAD_REMINDER:
            try:  # reads the homeserver dropped while the bridge was away, stored now
                await self._refresh_reads(item.room_id)
            except (HomeserverUnavailable, MatrixError) as e:
                self._log.info(
                    "Reads of %s not refreshed (%s); going by those stored", item.room_id, e
                )
        try:
            async with self._db.acquire() as conn, conn.transaction():
                outcome, queued, dispute = await self._decide(conn, item, lease, now)
        except Superseded:
            return
        except Exception as e:  # a bug, or the database: rolled back, tried again later
            self._log.exception("Follow-up %s of %s failed", item.kind.value, item.room_id)
            await self._retry_or_give_up(item, lease, f"{type(e).__name__}: {e}")
            return
        self._metrics.follow_ups.labels(item.kind.value, outcome).inc()
        if queued:
            self._wakeups.outbox.set()
        if outcome == "fired" and item.kind is FollowUpKind.NUDGE:
            self._wakeups.actions.set()
        if dispute is not None:
            await self._open_dispute(item, lease, dispute)

    async def _decide(
        self, conn: Connection, item: FollowUp, lease: int, now: int
    ) -> tuple[str, bool, NewDispute | None]:
        """Fire or skip, in the caller's transaction: (outcome, webhook queued, the dispute to
        open next)."""
        owner = await object_of_room(conn, item.room_id)
        if owner is None:
            await self._end(conn, item, lease, "cancelled", now)
            return "skipped", False, None
        transaction, dispute = owner
        context = room_context(transaction, self._bot, self._admins, dispute, self._links)
        access = room_access(transaction, dispute, self._freeze)
        if item.kind is FollowUpKind.UNREAD_REMINDER:
            reader = context.participant(item.user_id)
            waiting = await records.waiting(conn, item.room_id, item.user_id)
            admitted = item.user_id in transaction.admitted  # not suspended nor erased
            if reader is None or not admitted or waiting is None or access is Access.ARCHIVED:
                await self._end(conn, item, lease, "done" if item.fired else "cancelled", now)
                return "skipped", False, None
            unread_since = waiting.first_at + (self._delays.unread_ms or 0)
            if not item.fired and unread_since > now:
                # The burst's first messages were read or deleted meanwhile: its time moves
                # to that of the oldest message still unread.
                if not await records.reschedule(conn, item, lease, unread_since, fired=False):
                    raise Superseded
                return "postponed", False, None
            notice = unread_reminder(context, reader, waiting, item.event_id, item.fired, now)
            repeat = self._delays.repeat_ms
            if repeat is None:  # the burst stays open, without another reminder
                await self._end(conn, item, lease, "waiting", now, fired=True)
            elif not await records.reschedule(conn, item, lease, now + repeat, fired=True):
                raise Superseded
            return "fired", await self._queue(conn, context, notice, now), None
        if item.kind is FollowUpKind.ESCALATION and item.fired:
            # Its webhook went out; the process opening its dispute stopped: open it now.
            return "resumed", False, _no_response_dispute(item, context)
        answered = await records.is_answered(conn, item.room_id, item.event_id)
        disputed = dispute is not None or transaction.open_dispute is not None
        if disputed or not seller_still_waited_for(transaction.state, access, answered):
            await self._end(conn, item, lease, "cancelled", now)
            return "skipped", False, None
        if item.kind is FollowUpKind.NUDGE:
            return "fired", await self._nudge(conn, context, item, lease, now), None
        return await self._escalate(conn, context, item, lease, now)

    async def _nudge(
        self, conn: Connection, context: RoomContext, item: FollowUp, lease: int, now: int
    ) -> bool:
        waited_s = (now - item.started_at) // 1000
        notice = PlannedAction(
            f"nudge:{item.room_id}:{item.event_id}",
            item.room_id,
            ActionKind.NUDGE,
            {"user_id": item.user_id, "waited_s": waited_s},
        )
        await plan_actions(conn, [notice], now)
        await self._audit(conn, item, "deal.nudge", f"unanswered for {waited_s} s", now)
        await self._end(conn, item, lease, "done", now, fired=True)
        return await self._queue(
            conn,
            context,
            deal_notification("deal.nudge", context, item.event_id, item.started_at, now),
            now,
        )

    async def _escalate(
        self, conn: Connection, context: RoomContext, item: FollowUp, lease: int, now: int
    ) -> tuple[str, bool, NewDispute | None]:
        auto = self._delays.auto_dispute
        new = _no_response_dispute(item, context) if auto else None
        queued = await self._queue(
            conn,
            context,
            deal_notification(
                "deal.escalation_due",
                context,
                item.event_id,
                item.started_at,
                now,
                auto_dispute=auto,
                dispute_id=new.dispute_id if new else None,
            ),
            now,
        )
        waited_s = (now - item.started_at) // 1000
        await self._audit(conn, item, "deal.escalation_due", f"unanswered for {waited_s} s", now)
        if new is None:
            await self._end(conn, item, lease, "done", now, fired=True)
            return "fired", queued, None
        # Still held: this process opens the dispute next; after a crash, the lease runs out
        # and another round opens it (the dispute's id makes that once).
        if not await records.reschedule(conn, item, lease, now, fired=True, held_until=lease):
            raise Superseded
        return "fired", queued, new

    async def _open_dispute(self, item: FollowUp, lease: int, new: NewDispute) -> None:
        try:
            await self._disputes.open(new)
        except (HomeserverUnavailable, MatrixError) as e:
            # Its record is stored; its room comes on a retry (a refusal is parked in the end).
            await self._retry_or_give_up(item, lease, str(e))
            return
        except MarketError as e:  # closed or disputed meanwhile: nothing more to do
            self._log.info("No automatic dispute for %s: %s", new.transaction_id, e)
            error: str | None = str(e)
        except Exception as e:  # a bug: tried again with backoff, parked in the end
            self._log.exception("Opening the automatic dispute %s failed", new.dispute_id)
            await self._retry_or_give_up(item, lease, f"{type(e).__name__}: {e}")
            return
        else:
            error = None
        try:
            async with self._db.acquire() as conn, conn.transaction():
                await self._end(conn, item, lease, "done", self._clock.now_ms(), error=error)
        except Superseded:
            pass  # another process took it over, and opens the same dispute

    async def _retry_or_give_up(self, item: FollowUp, lease: int, error: str) -> None:
        attempts = item.attempts + 1
        now = self._clock.now_ms()
        if attempts < MAX_ATTEMPTS:
            await self._follow_ups.retry_at(
                item.seq, now + int(BACKOFF.delay(attempts) * 1000), error
            )
            return
        try:  # parked with its error rather than tried forever
            async with self._db.acquire() as conn, conn.transaction():
                await self._end(conn, item, lease, "cancelled", now, error=error)
        except Superseded:
            pass

    async def _queue(
        self, conn: Connection, context: RoomContext, notification: Notification, now: int
    ) -> bool:
        return bool(
            await add_notifications(conn, context.room_id, [notification], self._retry_for_ms, now)
        )

    async def _audit(
        self, conn: Connection, item: FollowUp, action: str, detail: str, now: int
    ) -> None:
        entry = AuditEntry(
            self._bot,
            action,
            item.room_id,
            subject=item.event_id,
            reason=NO_RESPONSE,
            detail=f"{item.user_id} {detail}",
        )
        await write_audit(conn, entry, now)

    @staticmethod
    async def _end(
        conn: Connection,
        item: FollowUp,
        lease: int,
        status: str,
        now: int,
        *,
        fired: bool = False,
        error: str | None = None,
    ) -> None:
        if not await records.finish(conn, item, lease, status, now, fired=fired, error=error):
            raise Superseded


def _no_response_dispute(item: FollowUp, context: RoomContext) -> NewDispute:
    """The automatic dispute: its id is one per unanswered message, never a marketplace's."""
    digest = hashlib.sha256(f"{item.room_id}\x00{item.event_id}".encode()).hexdigest()[:24]
    return NewDispute(
        DisputeId(f"no-response-{digest}"), context.transaction_id, NO_RESPONSE, "marketplace"
    )
