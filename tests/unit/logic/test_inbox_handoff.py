"""A lone event handed from the intake to the inbox worker: on PostgreSQL the INSERT that
stores a transaction of one event reads it back as the worker would (`ReadAlong`), and the
worker processes it with no read of its own when nothing of its room was pending before it.
Behind pending events, or on SQLite, the room is named to the worker as before, and read."""

from __future__ import annotations

import asyncio
import json

import pytest
from mautrix.util.async_db import Database

from appservice.transactions import Transaction, parse_room_event
from bridge.homeserver.inbox import Pending
from bridge.homeserver.inbox_worker import InboxWorker
from bridge.homeserver.intake import HomeserverIntake
from bridge.runtime.workers import Wakeups
from policy.ids import RoomId
from tests.harness import eventually

from .conftest import BUYER, SELLER
from .test_inbox_worker import reset, statuses, text

pytestmark = pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)


async def push(intake: HomeserverIntake, *events: dict) -> None:
    parsed = [parse_room_event(event) for event in events]
    await intake.store_transaction(Transaction(f"txn-{events[0]['event_id']}", parsed, []))


async def webhook_events(db: Database) -> list[str]:
    rows = await db.fetch("SELECT body FROM outbox WHERE type = 'message.created' ORDER BY seq")
    return [json.loads(row["body"])["data"]["event_id"] for row in rows]


async def all_done(db: Database, *events: dict) -> None:
    async def check() -> bool:
        done = await statuses(db)
        return all(done.get(event["event_id"]) == ("done", None) for event in events)

    await eventually(check)


async def test_a_lone_message_is_processed_without_reading_it_back(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    wakeups: Wakeups,
    paid_room: RoomId,
    reads: list[RoomId],
) -> None:
    reset(wakeups)
    said = text(paid_room, BUYER, "hello")
    await push(intake, said)
    sqlite = db.scheme.value == "sqlite"
    # SQLite reads nothing along: the room is named to the worker, which reads it.
    assert wakeups.inbox.sets == (1 if sqlite else 0)  # type: ignore[attr-defined]
    await all_done(db, said)
    await worker.settled()
    assert await webhook_events(db) == [said["event_id"]]
    assert reads == ([paid_room] if sqlite else [])


async def test_an_event_behind_one_still_pending_is_read_after_it_in_order(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    wakeups: Wakeups,
    paid_room: RoomId,
    reads: list[RoomId],
) -> None:
    reset(wakeups)
    gate, process = asyncio.Event(), worker._process_next

    async def held(room_id: RoomId, given: Pending | None = None) -> bool:
        await gate.wait()
        return await process(room_id, given)

    worker._process_next = held  # type: ignore[method-assign]
    first, second = text(paid_room, BUYER, "first"), text(paid_room, SELLER, "second")
    await push(intake, first)  # PostgreSQL: handed over, its task held
    await push(intake, second)  # behind the first, still pending: named, not handed over
    sqlite = db.scheme.value == "sqlite"
    assert wakeups.inbox.sets == (2 if sqlite else 1)  # type: ignore[attr-defined]
    gate.set()
    await all_done(db, first, second)
    await worker.settled()
    assert await webhook_events(db) == [first["event_id"], second["event_id"]]
    if not sqlite:
        # The first went without a read; the room's task read the second after it.
        assert reads == [paid_room]


async def test_a_worker_not_running_is_handed_nothing(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    wakeups: Wakeups,
    paid_room: RoomId,
) -> None:
    """A push that comes while the worker is not running (the bridge closes its web server
    after its workers): its room is named, for the worker's next start, rather than
    processed by a task no one would end."""
    reset(wakeups)
    said = text(paid_room, BUYER, "hello")
    await push(intake, said)
    assert wakeups.inbox.sets == 1  # type: ignore[attr-defined]
    assert not worker._rooms
    assert (await statuses(db))[said["event_id"]] == ("pending", None)
