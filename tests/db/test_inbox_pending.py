"""The inbox worker's first read of a room (bridge.homeserver.inbox.read_pending), on both
backends: its oldest pending events, whose room it is and (PostgreSQL) the first event's
sender's history, in one query; and an event another process finished after it was read,
whose writes are not kept (PostgreSQL: with no transaction around them)."""

from __future__ import annotations

import json

import asyncpg
import pytest
from mautrix.util.async_db import Database, Scheme

from appservice.transactions import Transaction, parse_transaction
from bridge.delivery.outbox import queue_notifications
from bridge.homeserver.inbox import (
    InboxStore,
    ProcessedElsewhere,
    ReadAlong,
    mark_done,
    read_pending,
)
from bridge.market.records.rooms import OWNER_OF_ROOM, owner_of
from bridge.policybot.history import (
    History,
    first_pending_sql,
    prefetched,
    read_history,
    stored_event_sql,
)
from bridge.runtime.clock import SystemClock
from bridge.storage.writes import Writes
from policy.ids import RoomId
from policy.notifications import Notification
from tests.db.conftest import deal_with_dispute


async def seed(db: Database) -> None:
    await deal_with_dispute(db)
    for n, (room, status) in enumerate(
        [("!deal", "done"), ("!deal", "pending"), ("!dispute", "pending"), ("!deal", "pending")]
        + [("!deal", "pending")] * 2
    ):
        await db.execute(
            "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
            " event_json, status, txn_id, received_at) VALUES ($1, $2, 'm.room.message',"
            " '@b:localhost', $3, '{}', $4, 't', 0)",
            f"$e{n}",
            room,
            n,
            status,
        )


async def test_the_oldest_pending_events_come_with_whose_room_it_is(db: Database) -> None:
    await seed(db)
    async with db.acquire() as conn, conn.transaction():
        held = await read_pending(conn, RoomId("!deal"), 2, about=OWNER_OF_ROOM)
        assert [e.event_id for e in held.events] == ["$e1", "$e3"]
        assert held.more  # $e4 and $e5 wait behind them
        owner = owner_of(held.about)
        assert owner is not None and owner[0].transaction_id == "t1" and owner[1] is None
    async with db.acquire() as conn, conn.transaction():
        held = await read_pending(conn, RoomId("!dispute"), 5, about=OWNER_OF_ROOM)
        assert [e.event_id for e in held.events] == ["$e2"]
        assert not held.more
        owner = owner_of(held.about)
        assert owner is not None
        transaction, dispute = owner
        assert transaction.transaction_id == "t1" and transaction.open_dispute == "d1"
        assert dispute is not None and dispute.dispute_id == "d1"


async def test_a_room_of_no_one_with_no_events_reads_as_such(db: Database) -> None:
    await seed(db)
    async with db.acquire() as conn, conn.transaction():
        held = await read_pending(conn, RoomId("!elsewhere"), 5, about=OWNER_OF_ROOM)
        assert held.events == [] and not held.more
        assert owner_of(held.about) is None


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_another_process_reads_the_same_pending_events(db: Database) -> None:
    """No lock keeps a second process off the room: it reads what the first reads."""
    await seed(db)
    async with db.acquire() as first:
        held = await read_pending(first, RoomId("!deal"), 5, about=OWNER_OF_ROOM)
        # Another connection (acquire would hand this task the same one back).
        async with db.acquire_direct() as second:
            again = await read_pending(second, RoomId("!deal"), 5, about=OWNER_OF_ROOM)
    assert [e.event_id for e in again.events] == [e.event_id for e in held.events]
    assert [e.event_id for e in held.events] == ["$e1", "$e3", "$e4", "$e5"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_the_writes_commit_without_waiting_unless_told_to(db: Database) -> None:
    """What the query itself sets, seen in a transaction around it (the worker has none)."""
    async with db.acquire() as conn:
        for wait_for_disk, setting in ((False, "off"), (True, "on")):
            writes = Writes()
            writes.add("UPDATE inbox_events SET error = 'x' WHERE seq = 0")
            async with conn.transaction():
                await writes.run(conn, wait_for_disk)
                assert await conn.fetchval("SHOW synchronous_commit") == setting
        # Only that query's transaction: the next waits for the disk again.
        assert await conn.fetchval("SHOW synchronous_commit") == "on"


FLOOD_MS = 10_000


async def message(
    db: Database, event_id: str, sender: str, ts: int, body: str, status: str
) -> None:
    event = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}}
    await db.execute(
        "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
        " event_json, status, txn_id, received_at) VALUES ($1, '!deal', 'm.room.message',"
        " $2, $3, $4, $5, 't', 0)",
        event_id,
        sender,
        ts,
        json.dumps(event),
        status,
    )


async def test_the_first_events_history_comes_with_the_events_as_it_reads_alone(
    db: Database, backend: str
) -> None:
    await deal_with_dispute(db)
    start = 1_000_000
    for n, (sender, ts, status) in enumerate(
        [
            ("@b:localhost", start - 70_000, "done"),  # before both windows
            ("@b:localhost", start - 30_000, "done"),  # earlier, outside the flood window
            ("@s:localhost", start - 5_000, "done"),  # someone else
            ("@b:localhost", start - 4_000, "done"),
            ("@b:localhost", start - 2_000, "done"),
            ("@b:localhost", start, "pending"),  # the first pending event
            ("@b:localhost", start + 1_000, "pending"),  # after it: not its history
        ]
    ):
        await message(db, f"$m{n}", sender, ts, f"part {n}", status)
    await db.execute(
        "INSERT INTO mutes (room_id, user_id, until) VALUES ('!deal', '@b:localhost', 7)"
    )
    first = {
        "type": "m.room.message",
        "event_id": "$m5",
        "room_id": "!deal",
        "sender": "@b:localhost",
        "origin_server_ts": start,
    }
    async with db.acquire() as conn, conn.transaction():
        alone = await read_history(conn, first, FLOOD_MS)
        assert alone == History(3, 7, ["part 1", "part 3", "part 4"])
        held = await read_pending(
            conn, RoomId("!deal"), 5, OWNER_OF_ROOM, first_pending_sql(FLOOD_MS)
        )
        assert [e.event_id for e in held.events] == ["$m5", "$m6"]
        if backend == "sqlite":  # in process: no round trip to save
            assert held.first is None and prefetched(held.first, "$m5") is None
        else:
            assert prefetched(held.first, "$m5") == alone
            assert prefetched(held.first, "$m6") is None  # another event's: read it alone


async def test_an_event_finished_elsewhere_keeps_none_of_the_writes_that_came_with_it(
    db: Database,
) -> None:
    """`mark_done` on an event no longer pending (another process's, read as pending just
    before it finished): none of its writes is kept. PostgreSQL runs them as one query with
    no transaction around it (as the inbox worker does) and the query fails as a whole;
    SQLite runs them in the caller's transaction, rolled back."""
    await seed(db)  # $e0 is done, $e1 pending
    seqs = {
        row["event_id"]: row["seq"]
        for row in await db.fetch("SELECT event_id, seq FROM inbox_events")
    }
    for event_id, finished_elsewhere in (("$e0", True), ("$e1", False)):
        writes = Writes()
        notification = Notification("message.created", f"n{event_id}", 0, {})
        queue_notifications(writes, "!deal", [notification], 60_000, 0)
        writes.add("UPDATE transactions SET changed_at = changed_at + 1")  # with no answer
        mark_done(writes, seqs[event_id])
        changed = await db.fetchval("SELECT SUM(changed_at) FROM transactions")
        try:
            async with db.acquire() as conn:
                if db.scheme == Scheme.SQLITE:
                    async with conn.transaction():
                        await writes.run(conn)
                else:
                    await writes.run(conn, wait_for_disk=False)
        except ProcessedElsewhere:
            assert finished_elsewhere
        else:
            assert not finished_elsewhere
        queued = await db.fetchval("SELECT COUNT(*) FROM outbox WHERE id = $1", f"n{event_id}")
        assert queued == (0 if finished_elsewhere else 1)
        now_changed = await db.fetchval("SELECT SUM(changed_at) FROM transactions")
        assert (now_changed == changed) == finished_elsewhere
    assert await db.fetchval("SELECT status FROM inbox_events WHERE event_id = '$e1'") == "done"


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_required_write_without_an_answer_to_read_still_keeps_nothing(
    db: Database,
) -> None:
    await seed(db)
    writes = Writes()
    writes.add("UPDATE transactions SET changed_at = changed_at + 1")
    writes.add("UPDATE inbox_events SET error = 'x' WHERE seq = -1 RETURNING seq", required=True)
    changed = await db.fetchval("SELECT SUM(changed_at) FROM transactions")
    async with db.acquire() as conn:
        with pytest.raises(asyncpg.SerializationError, match="required write changed no row"):
            await writes.run(conn)
    assert await db.fetchval("SELECT SUM(changed_at) FROM transactions") == changed


async def test_a_lone_event_is_read_back_by_its_insert_as_the_worker_would_read_it(
    db: Database, backend: str
) -> None:
    """`InboxStore.store_transaction` with `ReadAlong` (PostgreSQL): the INSERT of a
    transaction's one event returns what `read_pending` reads after it (the event, whose
    room it is, the sender's history with the event itself counted), unless events of its
    room were pending before it; a duplicate returns nothing. SQLite stores it plainly."""
    await deal_with_dispute(db)
    start = 1_000_000
    for n, (ts, status) in enumerate([(start - 30_000, "done"), (start - 2_000, "done")]):
        await message(db, f"$m{n}", "@b:localhost", ts, f"part {n}", status)
    await db.execute(
        "INSERT INTO mutes (room_id, user_id, until) VALUES ('!deal', '@b:localhost', 7)"
    )
    store = InboxStore(db, SystemClock())
    along = ReadAlong(OWNER_OF_ROOM, stored_event_sql(FLOOD_MS))

    def lone(event_id: str, ts: int) -> Transaction:
        event = {
            "type": "m.room.message",
            "event_id": event_id,
            "room_id": "!deal",
            "sender": "@b:localhost",
            "origin_server_ts": ts,
            "content": {"msgtype": "m.text", "body": "now"},
        }
        return parse_transaction(f"t{event_id}", {"events": [event]})

    ready = await store.store_transaction(lone("$new", start), along)
    async with db.acquire() as conn:
        read = await read_pending(
            conn, RoomId("!deal"), 5, OWNER_OF_ROOM, first_pending_sql(FLOOD_MS)
        )
    if backend == "sqlite":
        assert ready is None
        return
    assert ready is not None and not ready.more
    assert ready.events == read.events and [e.event_id for e in ready.events] == ["$new"]
    assert owner_of(ready.about) == owner_of(read.about) is not None
    history = prefetched(ready.first, "$new")
    assert history == prefetched(read.first, "$new") == History(2, 7, ["part 0", "part 1"])
    # Behind a pending event of its room: left for the worker to read in order.
    assert await store.store_transaction(lone("$next", start + 1), along) is None
    await db.execute("UPDATE inbox_events SET status = 'done'")
    assert await store.store_transaction(lone("$new", start), along) is None  # stored before
    assert await store.store_transaction(lone("$last", start + 2), along) is not None
