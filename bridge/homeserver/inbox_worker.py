"""The inbox worker: stored room events -> notifications and policy verdicts, per room, in order.

    woken by the intake, naming the rooms it stored events for (or by `DueWatch`, which
    finds pending events once a second: every room with any), or handed a lone event the
    intake's INSERT read back (PostgreSQL, when nothing of its room was pending:
    `take_stored`)
      -> per room, a task of its own started at once (at most ROOM_CONCURRENCY run), its
         events in seq order, up to BATCH a round (a command ends the batch):
           the events and whose room it is (transaction, dispute, the management room, or
           none of ours): one round trip (none for an event handed over)
           then for each event:
           policy.notifications says what to notify; the policy bot's enforcer what it
              must do (`decisions.Decider`)
           -> outbox rows, the chat list's message record, the enforcer's rows (audit, a
              mute, planned actions), the follow-ups it starts or ends (bridge.deals), and
              the event marked done: one statement (`consequences.Consequences`,
              bridge.storage.writes), kept only if the event was still pending (another
              process may have worked out the same events meanwhile: no lock keeps it off
              the room)
      -> the webhooks handed to the outbox worker, leased by the statement that queued
         them if their room's stream had nothing pending (else it is woken); the action
         worker woken; admin commands run last (at most once)
      -> after an event handed over, what decided it kept, so that its sender's next lone
         message is worked out as it arrives, by the intake (`arrivals.Arrivals`)

PostgreSQL: each event's statement is atomic alone, with no BEGIN and COMMIT around it (two
of a message's round trips; one for a message worked out as it arrives). SQLite runs the
statements one by one, in one transaction for the batch. An event the policy code cannot
handle is parked as dead (with the error) so it never stalls its room; a database failure
leaves the event pending, to be processed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from mautrix.util.async_db import Connection, Database, Scheme

from appservice.transactions import Transaction
from bridge.deals.tracker import DealTracker
from bridge.delivery.outbox import handed_over
from bridge.market.management import ManagementRoom
from bridge.market.records.rooms import OWNER_OF_ROOM, Owner, owner_of
from bridge.policybot.commands import CommandRunner
from bridge.policybot.enforcer import Enforcer
from bridge.policybot.history import History, prefetched
from bridge.runtime.clock import Clock
from bridge.runtime.due import DueCheck
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeups, drain_when_woken
from bridge.storage.database import database_failed
from bridge.storage.writes import Rows, Writes
from policy.ids import RoomId, UserId
from policy.links import RoomLinks

from .arrivals import Arrivals
from .consequences import Consequences
from .decisions import Decider, Delivery, Processed
from .inbox import (
    Pending,
    ProcessedElsewhere,
    ReadAlong,
    StoredEvent,
    forget,
    mark_dead,
    mark_done,
    pending_rooms,
    read_pending,
)

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
        self._bot = bot
        self._commands = commands
        self._clock = clock
        self._metrics = metrics
        self._wakeups = wakeups
        self._decider = Decider(bot, admins, enforcer, management, links)
        self._consequences = Consequences(
            retry_for_ms, enforcer, commands, tracker, metrics, wakeups, delivery
        )
        self._first_history = enforcer.first_pending_history
        self._rooms: dict[RoomId, asyncio.Task] = {}  # being processed, each by one task
        self._again: set[RoomId] = set()  # named while being processed: look once more
        self._limit = asyncio.Semaphore(ROOM_CONCURRENCY)
        self._running = False  # while `run` runs: a lone event handed over is processed
        # What the intake's INSERT of a lone event reads with it (`take_stored`).
        self.read_along = ReadAlong(OWNER_OF_ROOM, enforcer.stored_event_history)
        # A sender's next lone message worked out as it arrives, from what decided their
        # last one (kept here): not while the room's events are being worked out.
        self._arrivals = Arrivals(
            db,
            self._decider,
            self._consequences,
            enforcer,
            commands,
            clock,
            metrics,
            lambda room_id: not self._running or room_id in self._rooms,
        )
        self._log = logging.getLogger("bridge.homeserver.inbox")

    async def run(self) -> None:
        self._running = True
        try:
            await drain_when_woken(
                self._round, self._wakeups.inbox, self._log, "process the inbox"
            )
        finally:
            self._running = False
            rooms = list(self._rooms.values())
            for task in rooms:
                task.cancel()
            await asyncio.gather(*rooms, return_exceptions=True)

    @property
    def due(self) -> DueCheck:
        """`DueWatch`'s look for pending events (other processes' rows, a failed room's):
        the oldest's arrival, for the inbox's lag; any wakes the worker for every room."""
        return DueCheck(
            "SELECT MIN(received_at) FROM inbox_events WHERE status = 'pending'", self._found
        )

    def _found(self, oldest: int | None) -> None:
        lag = 0 if oldest is None else (self._clock.now_ms() - oldest) / 1000
        self._metrics.inbox_lag.set(max(lag, 0))
        if oldest is not None:
            self._wakeups.inbox.set()

    async def _round(self) -> None:
        """Start on the rooms the intake named when it woke the worker; on every room with
        pending events when someone else did. A round does not wait for its rooms: a room
        named meanwhile is started at once, not behind another room's events."""
        named = self._wakeups.inbox.take()
        if named is None:
            named = await pending_rooms(self._db)
        for room_id in sorted(named):  # one with nothing pending: a short query
            self._start(room_id)

    async def drain(self) -> None:
        """Process every pending event of every room, and wait until it is done."""
        for room_id in await pending_rooms(self._db):
            self._start(room_id)
        await self.settled()

    async def settled(self) -> None:
        """Wait until no room is being processed."""
        while self._rooms:
            await asyncio.gather(*self._rooms.values(), return_exceptions=True)

    async def work_out_arriving(self, txn: Transaction) -> bool:
        """A lone message worked out as it arrives, if it can be (`Arrivals.work_out`)."""
        return await self._arrivals.work_out(txn)

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
            await self._consequences.after_commits(room_id, committed)
            raise
        await self._consequences.after_commits(room_id, committed)
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
                conn, room_id, BATCH, OWNER_OF_ROOM, self._first_history
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
                    if given is not None:  # read along by the INSERT: nothing was pending
                        self._arrivals.keep(stored, pending.about, history, done)
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
            decision = await self._decider.decide(conn, stored, event, owner, history, now)
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
        lease_end = await self._consequences.gather(
            writes, room_id, stored.sender, decision, now, queued
        )
        mark_done(writes, stored.seq)
        # Worked out from the event, which was stored with a waiting commit, the writes
        # commit without waiting: a database crash that forgets them leaves the event
        # pending, to be worked out again. A command's wait: it runs once its event is
        # marked done, at most once, so the mark must outlast such a crash.
        await writes.run(conn, wait_for_disk=command)
        return Processed(event, decision, len(queued), handed_over(queued), lease_end, command)
