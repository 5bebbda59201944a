"""What the inbox worker keeps of a sender after working out their message, so that their
next message can be worked out as it arrives, stored as done with its writes in one
statement (PostgreSQL; `InboxWorker.work_out_arriving`).

    a lone message (no edit, no reaction to read the target of, no command), in a room
    nothing is pending in, from a sender whose last message this process worked out
      -> decided from what was kept: whose room it is (`OWNER_OF_ROOM`'s row and its print,
         the MD5 of the row's text as PostgreSQL wrote it) and the sender's history
         (`KeptHistory`)
      -> one statement: what was kept checked against the database (`check_kept`, made
         required: if anything differs, nothing of the statement is kept), the event
         stored as done, its writes; committed with a wait for the disk, before the
         homeserver is answered
      -> on a difference, the event is stored and worked out the usual way (one round trip
         more, seldom)

What the decision reads, and so what the statement checks: the owner's row (a payment, a
closing, a dispute, a suspension or a blocked invite changes its text), that nothing of the
room is pending (so nothing is being worked out by any process, and no event of the room
waits to be notified before this one), that no message of the sender was stored since the
last kept (by any replica, either way) nor one sent later than it, and their mute. The
homeserver sends one transaction at a time, so no two of these statements race for a room;
one of them racing the usual way (another replica finishing an event) finds the event
pending in its snapshot, or sees its writes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from mautrix.util.async_db import Database, Scheme

from appservice.transactions import RoomEvent, Transaction
from bridge.delivery.outbox import handed_over
from bridge.market.records.rooms import OWNER_OF_ROOM, Owner, owner_of
from bridge.policybot.commands import CommandRunner
from bridge.policybot.enforcer import NOTHING, Enforcer
from bridge.policybot.history import History, KeptHistory
from bridge.runtime.clock import Clock
from bridge.runtime.metrics import Metrics
from bridge.storage.writes import Rows, Writes
from policy.ids import RoomId, UserId
from policy.messages import shown_body
from policy.notifications import related_event_id

from .consequences import Consequences
from .decisions import Decider, Processed
from .inbox import StoredEvent, store_done

# Senders kept at most (about 1 KiB each), the least lately used let go first.
SENDERS_KEPT = 10_000

# One row if what was kept of ($1 room, $2 sender) still holds: nothing of the room pending,
# no message of the sender stored after the last kept ($3 its seq) nor sent after it ($4
# its time), the same mute ($5 its end) and the same owner's row ($6 its print).
_CHECK_KEPT = f"""
    SELECT 1 AS kept WHERE
        NOT EXISTS (SELECT 1 FROM inbox_events WHERE room_id = $1 AND status = 'pending')
        AND NOT EXISTS (SELECT 1 FROM inbox_events WHERE room_id = $1 AND seq > $3
                        AND sender = $2 AND event_type = 'm.room.message')
        AND NOT EXISTS (SELECT 1 FROM inbox_events WHERE room_id = $1 AND sender = $2
                        AND origin_server_ts > $4 AND event_type = 'm.room.message')
        AND (SELECT until FROM mutes WHERE room_id = $1 AND user_id = $2)
            IS NOT DISTINCT FROM $5::BIGINT
        AND (SELECT md5(o::text) FROM ({OWNER_OF_ROOM}) o) = $6
"""  # noqa: S608 (constants)


@dataclass(frozen=True, slots=True)
class Kept:
    """What decided a sender's last message, as it then was."""

    owner: Owner
    owner_print: str  # of `OWNER_OF_ROOM`'s row (`Pending.about`'s ``about_print``)
    history: KeptHistory


class KeptSenders:
    """What was kept of each sender, by room and sender. One process's: a sender taken is
    no longer kept, so two arrivals cannot both be decided from the same."""

    def __init__(self, limit: int = SENDERS_KEPT) -> None:
        self._limit = limit
        self._kept: OrderedDict[tuple[RoomId, UserId], Kept] = OrderedDict()

    def take(self, room_id: RoomId, sender: UserId) -> Kept | None:
        return self._kept.pop((room_id, sender), None)

    def keep(self, room_id: RoomId, sender: UserId, kept: Kept) -> None:
        self._kept[room_id, sender] = kept
        self._kept.move_to_end((room_id, sender))
        if len(self._kept) > self._limit:
            self._kept.popitem(last=False)


def check_kept(writes: Writes, room_id: RoomId, sender: UserId, kept: Kept) -> None:
    """The statement that makes ``writes`` kept only if ``kept`` still holds (required:
    added first, it fails the whole statement otherwise)."""
    latest_ts, latest_seq, _ = kept.history.latest
    writes.add(
        _CHECK_KEPT,
        room_id,
        sender,
        latest_seq,
        latest_ts,
        kept.history.muted_until,
        kept.owner_print,
        required=True,
    )


class Arrivals:
    """Lone messages worked out as they arrive, from what the inbox worker kept."""

    def __init__(
        self,
        db: Database,
        decider: Decider,
        consequences: Consequences,
        enforcer: Enforcer,
        commands: CommandRunner,
        clock: Clock,
        metrics: Metrics,
        busy: Callable[[RoomId], bool],
    ) -> None:
        self._db = db
        self._decider = decider
        self._consequences = consequences
        self._enforcer = enforcer
        self._commands = commands
        self._clock = clock
        self._busy = busy  # the worker is not running, or is working out the room's events
        self._kept = KeptSenders()
        self._worked_out = metrics.events.labels("worked_out")  # labelled once: cheaper

    def keep(
        self, stored: StoredEvent, about: Any, history: History | None, done: Processed
    ) -> None:
        """What decided a lone message the intake read along (``about``, ``history``), kept
        to work out the sender's next one as it arrives; not after a message the policy bot
        acted on (a mute, say, changes what the next would be judged by)."""
        owner = owner_of(about)
        if (
            stored.event_type != "m.room.message"
            or history is None
            or owner is None
            or done.decision.enforcement is not NOTHING
            or not isinstance(done.event, dict)
        ):
            return
        message = (stored.origin_server_ts, stored.seq, shown_body(done.event.get("content")))
        history_kept = self._enforcer.kept_history(history, message)
        self._kept.keep(
            stored.room_id, stored.sender, Kept(owner, about["about_print"], history_kept)
        )

    async def work_out(self, txn: Transaction) -> bool:
        """A transaction of one message, worked out as it arrives from what was kept of its
        sender: stored as done with its writes in one statement, committed with a wait for
        the disk (the homeserver is answered after it). Whether it was: if not, nothing of
        it was stored, and the caller stores it for the worker as usual."""
        event = txn.events[0] if len(txn.events) == 1 and not txn.receipts else None
        if (
            not isinstance(event, RoomEvent)
            or event.type != "m.room.message"
            or self._db.scheme == Scheme.SQLITE
            or self._busy(event.room_id)
        ):
            return False
        kept = self._kept.take(event.room_id, event.sender)
        if kept is None:
            return False
        parsed = json.loads(event.json_text)
        history = kept.history.of(event.origin_server_ts)
        room = self._decider.managed_room(kept.owner)
        if (
            history is None
            or room is None
            or related_event_id(parsed) is not None  # its target's sender is read
            or self._commands.is_command(parsed)  # run once marked done: the usual way
        ):
            return False
        now = self._clock.now_ms()
        async with self._db.acquire() as conn:
            try:
                decision = await self._decider.decide_event(
                    conn, event.room_id, parsed, room, history, now
                )
            except Exception:  # the usual way parks the event, with the error
                return False
            if decision.enforcement is not NOTHING:
                # The bot acts: judged again the usual way, with the history read whole
                # (the kept one may count more messages in the flood window than were sent).
                return False
            writes = Writes()
            check_kept(writes, event.room_id, event.sender, kept)
            stored: Rows = []
            store_done(writes, event, txn.txn_id, now, stored.extend)
            queued: Rows = []
            lease_end = await self._consequences.gather(
                writes, event.room_id, event.sender, decision, now, queued
            )
            try:
                await writes.run(conn)
            except asyncpg.SerializationError:  # what was kept no longer holds, or a duplicate
                return False
        self._worked_out.inc()
        await self._consequences.after_commits(
            event.room_id,
            [Processed(parsed, decision, len(queued), handed_over(queued), lease_end, False)],
        )
        message = (event.origin_server_ts, stored[0]["seq"], shown_body(parsed.get("content")))
        self._kept.keep(
            event.room_id,
            event.sender,
            Kept(kept.owner, kept.owner_print, kept.history.with_message(message)),
        )
        return True
