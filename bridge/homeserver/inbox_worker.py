"""The inbox worker: stored room events -> notifications and policy verdicts, per room, in order.

    woken by the intake, naming the rooms it stored events for (and every second: every
    room with pending events), or handed a lone event the intake's INSERT read back
    (PostgreSQL, when nothing of its room was pending: `take_stored`)
      -> per room, a task of its own started at once (at most ROOM_CONCURRENCY run), its
         events in seq order, up to BATCH a round (a command ends the batch):
           the events and whose room it is (transaction, dispute, the management room, or
           none of ours): one round trip (none for an event handed over)
           then for each event:
           policy.notifications says what to notify; the policy bot's enforcer what it
              must do (bridge.policybot.enforcer)
           -> outbox rows, the chat list's message record, the enforcer's rows (audit, a
              mute, planned actions), the follow-ups it starts or ends (bridge.deals), and
              the event marked done: one statement (bridge.storage.writes), kept only if the
              event was still pending (another process may have worked out the same events
              meanwhile: no lock keeps it off the room)
      -> the webhooks handed to the outbox worker, leased by the statement that queued
         them if their room's stream had nothing pending (else it is woken); the action
         worker woken; admin commands run last (at most once)

PostgreSQL: each event's statement is atomic alone, with no BEGIN and COMMIT around it (two
of a message's round trips). SQLite runs the statements one by one, in one transaction for
the batch. An event the policy code cannot handle is parked as dead (with the error) so it
never stalls its room; a database failure leaves the event pending, to be processed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from mautrix.util.async_db import Connection, Database, Scheme

from bridge.deals.tracker import DealTracker
from bridge.delivery.outbox import handed_over, queue_notifications
from bridge.market.management import ManagementRoom
from bridge.market.models import room_context
from bridge.market.records.messages import record_message, unread_count
from bridge.market.records.rooms import OWNER_OF_ROOM, Owner, owner_of
from bridge.policybot.commands import CommandRunner
from bridge.policybot.enforcer import NOTHING, Enforcer, Room
from bridge.policybot.history import History, prefetched
from bridge.runtime.clock import Clock
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeups, drain_when_woken
from bridge.storage.database import database_failed
from bridge.storage.writes import Rows, Writes
from policy.ids import RoomId, UserId
from policy.links import RoomLinks
from policy.notifications import (
    message_notifications,
    read_notification,
    related_event_id,
)
from policy.rooms import RoomKind

from .decisions import Decision, Delivery, Processed
from .inbox import (
    RECEIPT_EVENT_TYPE,
    Pending,
    ProcessedElsewhere,
    ReadAlong,
    StoredEvent,
    forget,
    mark_dead,
    mark_done,
    pending_rooms,
    read_pending,
    sender_of,
)

POLL_SECONDS = 1.0
BATCH = 20  # a room's pending events read at once (SQLite: processed in one transaction)
ROOM_CONCURRENCY = 8
# What is never notified of a message (or an edit) the policy bot removes.
WITHHELD = frozenset({"message.created", "message.edited"})


class InboxWorker:
    def __init__(
        self,
        db: Database,
        bot: UserId,
        admins: tuple[UserId, ...],
        retry_for_ms: int,
        enforcer: Enforcer,
        commands: CommandRunner,
        management: ManagementRoom,
        clock: Clock,
        metrics: Metrics,
        wakeups: Wakeups,
        tracker: DealTracker,
        links: RoomLinks | None = None,
        delivery: Delivery | None = None,
    ) -> None:
        self._db = db
        self._links = links
        self._bot = bot
        self._admins = admins
        self._retry_for_ms = retry_for_ms
        self._enforcer = enforcer
        self._commands = commands
        self._management = management
        self._clock = clock
        self._metrics = metrics
        self._wakeups = wakeups
        self._tracker = tracker
        self._delivery = delivery
        self._scanned_at = 0  # when every room's pending events were last looked for
        self._rooms: dict[RoomId, asyncio.Task] = {}  # being processed, each by one task
        self._again: set[RoomId] = set()  # named while being processed: look once more
        self._limit = asyncio.Semaphore(ROOM_CONCURRENCY)
        self._running = False  # while `run` runs: a lone event handed over is processed
        # What the intake's INSERT of a lone event reads with it (`take_stored`).
        self.read_along = ReadAlong(OWNER_OF_ROOM, enforcer.stored_event_history)
        self._log = logging.getLogger("bridge.homeserver.inbox")

    async def run(self) -> None:
        self._running = True
        try:
            await drain_when_woken(
                self._round, self._wakeups.inbox, self._log, "process the inbox", POLL_SECONDS
            )
        finally:
            self._running = False
            rooms = list(self._rooms.values())
            for task in rooms:
                task.cancel()
            await asyncio.gather(*rooms, return_exceptions=True)

    async def _round(self) -> None:
        """Start on the rooms the intake named when it woke the worker; on every room when
        someone else did, and once every POLL_SECONDS (other processes' rows, a failed
        room's). A round does not wait for its rooms: a room named meanwhile is started at
        once, not behind another room's events."""
        named = self._wakeups.inbox.take()
        if named is None or self._clock.now_ms() >= self._scanned_at + POLL_SECONDS * 1000:
            named = await self._scan()
        for room_id in sorted(named):  # one with nothing pending: a short query
            self._start(room_id)

    async def drain(self) -> None:
        """Process every pending event of every room, and wait until it is done."""
        for room_id in await self._scan():
            self._start(room_id)
        await self.settled()

    async def settled(self) -> None:
        """Wait until no room is being processed."""
        while self._rooms:
            await asyncio.gather(*self._rooms.values(), return_exceptions=True)

    async def _scan(self) -> list[RoomId]:
        """Every room with pending events (and the inbox's lag, from the oldest of them)."""
        now = self._clock.now_ms()
        pending = await pending_rooms(self._db)
        oldest = min((room.oldest for room in pending), default=None)
        self._metrics.inbox_lag.set(0 if oldest is None else (now - oldest) / 1000)
        self._scanned_at = now
        return [room.room_id for room in pending]

    def take_stored(self, pending: Pending) -> bool:
        """A lone event the intake stored, with what `read_pending` would read (`ReadAlong`):
        processed without reading it back, unless its room is being processed; whether it
        was taken (not while the worker is not running: the intake names its room)."""
        if self._running:
            self._start(pending.events[0].room_id, pending)
        return self._running

    def _start(self, room_id: RoomId, stored: Pending | None = None) -> None:
        """Process the room's pending events in a task of its own (``stored`` first, if
        given); a room already being processed looks again before its task ends."""
        if room_id in self._rooms:
            self._again.add(room_id)
        else:
            self._rooms[room_id] = asyncio.create_task(self._drain_room(room_id, stored))

    async def _drain_room(self, room_id: RoomId, stored: Pending | None) -> None:
        try:
            async with self._limit:
                while True:
                    self._again.discard(room_id)
                    given, stored = stored, None
                    while await self._process_next(room_id, given):
                        given = None
                    if room_id not in self._again:
                        return
        except Exception:  # the database failed us: the next scan finds the room again
            self._log.exception("Could not process the inbox of %s; trying again", room_id)
        finally:
            # With no await since the last look, so a room named now starts a new task.
            del self._rooms[room_id]
            self._again.discard(room_id)

    async def _process_next(self, room_id: RoomId, given: Pending | None = None) -> bool:
        """Process the room's oldest pending events, up to BATCH of them (a burst, such as a
        new room's state, is read at once; ``given``: already read); whether more wait
        (False when none does)."""
        committed: list[Processed] = []
        try:
            more = await self._process_batch(room_id, committed, given)
        except ProcessedElsewhere:
            more = True  # SQLite: nothing of the batch was kept. Read the room again.
        except Exception:
            # PostgreSQL: the events before the failure are kept, and what follows them
            # (wake-ups, metrics) is done.
            await self._after_commits(room_id, committed)
            raise
        await self._after_commits(room_id, committed)
        return more

    async def _process_batch(
        self, room_id: RoomId, committed: list[Processed], given: Pending | None
    ) -> bool:
        """Process the batch's events, adding each to ``committed`` once it is; whether more
        wait."""
        # SQLite runs each event's statements one by one, in one transaction for the batch;
        # on PostgreSQL each event's writes are one statement (bridge.storage.writes).
        sqlite = self._db.scheme == Scheme.SQLITE
        kept = [] if sqlite else committed  # SQLite: committed with the batch's transaction
        async with (
            self._db.acquire() as conn,
            conn.transaction() if sqlite else contextlib.nullcontext(),
        ):
            # Whose room it is, read with the events: every change made before they were
            # stored (a payment, say) is seen.
            pending = given or await read_pending(
                conn, room_id, BATCH, OWNER_OF_ROOM, self._enforcer.first_pending_history
            )
            events, more, owner = pending.events, pending.more, owner_of(pending.about)
            for place, stored in enumerate(events):
                # The first event's sender's history came with the events (PostgreSQL); the
                # others' is read after the writes before them (a mute, say).
                history = prefetched(pending.first, stored.event_id) if place == 0 else None
                try:
                    done = await self._process(conn, room_id, stored, owner, history)
                except ProcessedElsewhere:
                    if sqlite:
                        raise  # the batch's transaction is rolled back
                    # Another process finished this event after it was read; the events
                    # before it are kept. Read the room again.
                    return True
                if done is not None:
                    kept.append(done)
                    if done.command:
                        # What follows is judged after the command has run, as it would be
                        # one event at a time.
                        more = more or place + 1 < len(events)
                        break
        if sqlite:
            committed += kept
        return more

    async def _process(
        self,
        conn: Connection,
        room_id: RoomId,
        stored: StoredEvent,
        owner: Owner | None,
        history: History | None,
    ) -> Processed | None:
        """One event, decided and its writes committed (None: it could not be decided and is
        parked as dead, or its room is gone)."""
        now = self._clock.now_ms()
        try:
            event = json.loads(stored.event_json)
            decision = await self._decide(conn, stored, event, owner, history, now)
        except Exception as e:
            if database_failed(e):
                raise  # the event stays pending, to be processed again
            # A bug in deciding: park the event, keep the room moving.
            self._log.exception("Parking event %s of %s as dead", stored.seq, room_id)
            await mark_dead(conn, stored.seq, f"{type(e).__name__}: {e}")
            return None
        if decision.removed:
            await forget(conn, stored.seq)
            return None
        command = (
            stored.sender != self._bot
            and not decision.enforcement.withhold
            and isinstance(event, dict)
            and self._commands.is_command(event)
        )
        # The event's writes in one round trip (bridge.storage.writes): what to notify, the
        # chat list's record, the follow-ups, the enforcer's rows, and the event done.
        writes = Writes()
        queued: Rows = []
        notifications = decision.notifications + decision.enforcement.notifications
        # Leased as queued if the outbox worker can take them now (no lease statement).
        lease_end = self._delivery.accepts(now) if self._delivery else 0
        queue_notifications(
            writes, room_id, notifications, self._retry_for_ms, now, queued.extend, lease_end
        )
        if decision.record is not None:
            await record_message(writes, room_id, decision.record)
        await self._track(writes, stored, decision, now)
        await self._enforcer.record(writes, room_id, decision.enforcement, now)
        mark_done(writes, stored.seq)
        # Worked out from the event, which was stored with a waiting commit, the writes
        # commit without waiting: a database crash that forgets them leaves the event
        # pending, to be worked out again. A command's wait: it runs once its event is
        # marked done, at most once, so the mark must outlast such a crash.
        await writes.run(conn, wait_for_disk=command)
        return Processed(event, decision, len(queued), handed_over(queued), lease_end, command)

    async def _after_commits(self, room_id: RoomId, committed: list[Processed]) -> None:
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

    async def _track(
        self, writes: Writes, stored: StoredEvent, decision: Decision, now: int
    ) -> None:
        """Reminders and exchanges: a kept new message starts them, a read may end them."""
        room = decision.room
        if room is None:
            return
        if decision.unread is not None:
            await self._tracker.read(writes, room, stored.sender, decision.unread, now)
        elif decision.record is not None and decision.record.edits is None:
            assert decision.event is not None, "decided from the parsed event"
            await self._tracker.message(writes, room, decision.event, now)

    async def _decide(
        self,
        conn: Connection,
        stored: StoredEvent,
        event: Any,
        owner: Owner | None,
        history: History | None,
        now: int,
    ) -> Decision:
        """What the event means: notifications, chat list record, the policy bot's actions."""
        room_id = stored.room_id
        if owner is None:
            if room_id != self._management.room_id or stored.event_type == RECEIPT_EVENT_TYPE:
                return Decision()  # not a room we manage
            room = Room(RoomKind.MANAGEMENT)
            enforcement = await self._enforcer.judge(conn, event, room, now)
            return Decision(kind=room.kind, enforcement=enforcement)
        transaction, dispute = owner
        if (dispute or transaction).purged_at is not None:
            return Decision(removed=True)
        context = room_context(transaction, self._bot, self._admins, dispute, self._links)
        room = Room(context.kind, transaction, dispute, context)
        if stored.event_type == RECEIPT_EVENT_TYPE:
            unread = await unread_count(conn, room_id, stored.sender, stored.origin_server_ts)
            notification = read_notification(
                context, stored.sender, event["event_id"], stored.origin_server_ts, unread
            )
            notifications = [notification] if notification else []
            return Decision(notifications, None, context.kind, NOTHING, room, unread=unread)
        enforcement = await self._enforcer.judge(conn, event, room, now, history)
        related = related_event_id(event)
        related_sender = await sender_of(conn, room_id, related) if related else None
        try:
            notifications, message = message_notifications(
                event, context, related_sender, self._enforcer.mask
            )
        except Exception:  # a field nothing here can read: the event is malformed, not a pass
            self._log.exception("Could not read event %s of %s", event.get("event_id"), room_id)
            notifications, message = [], None
            if not enforcement.broken_rules:
                enforcement = self._enforcer.malformed(event, room, now)
        if enforcement.withhold:  # removed as a violation: it never counts as a message
            notifications = [n for n in notifications if n.type not in WITHHELD]
            message = None
        return Decision(notifications, message, context.kind, enforcement, room, event=event)
