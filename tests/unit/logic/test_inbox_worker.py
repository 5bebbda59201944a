"""The inbox worker: stored room events become notifications, chat list records and policy
verdicts, one room at a time in arrival order; admin commands run once an event is done."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import asyncpg
import pytest
from mautrix.util.async_db import Connection, Database, Scheme

from appservice.matrix import txn_id
from appservice.transactions import Receipt, Transaction, parse_room_event
from bridge.config import Config
from bridge.homeserver import inbox_worker
from bridge.homeserver.inbox import InboxStore, Pending, ProcessedElsewhere, read_pending
from bridge.homeserver.inbox_worker import BATCH, InboxWorker
from bridge.market import Market
from bridge.market.models import NewDispute
from bridge.policybot.commands import CommandRunner
from bridge.policybot.enforcer import Enforcement, Enforcer, Room
from bridge.policybot.history import History
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeups
from policy.commands import help_text
from policy.ids import DisputeId, RoomId, TransactionId
from policy.rooms import RoomKind

from .conftest import (
    ADMIN,
    BUYER,
    SELLER,
    Rows,
    build_enforcer,
    build_runner,
    build_worker,
    look,
    new_transaction,
)
from .fakes import START_MS, FakeClock, FakeMatrix

STRANGER = "@stranger:localhost"
BOT = "@marketbot:localhost"
_ids = itertools.count(1)


@pytest.fixture
async def room(market: Market) -> RoomId:
    """A paid transaction's room: the parties may talk."""
    await market.transactions.create(new_transaction())
    record = await market.transactions.record_payment(TransactionId("order-1"))
    assert record.room_id is not None
    return record.room_id


def text(
    room_id: str, sender: str, body: str, ts: int = START_MS, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": event_id or f"$ev{next(_ids)}",
        "room_id": room_id,
        "sender": sender,
        "origin_server_ts": ts,
        "content": {"msgtype": "m.text", "body": body},
    }


async def store(inbox: InboxStore, *events: dict[str, Any], receipts: list[Receipt] = ()) -> None:
    parsed = [parse_room_event(event) for event in events]
    await inbox.store_transaction(Transaction(f"txn{next(_ids)}", parsed, list(receipts)))


async def statuses(db: Database) -> dict[str, tuple[str, str | None]]:
    rows = await db.fetch("SELECT event_id, status, error FROM inbox_events ORDER BY seq")
    return {row["event_id"]: (row["status"], row["error"]) for row in rows}


def bodies(outbox_rows: list[dict]) -> list[dict[str, Any]]:
    return [json.loads(row["body"]) for row in outbox_rows]


def reset(wakeups: Wakeups) -> None:
    for wakeup in (wakeups.inbox, wakeups.outbox, wakeups.actions, wakeups.follow_ups):
        wakeup.sets = 0  # type: ignore[attr-defined]


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


# --- which rooms a round looks at -------------------------------------------------------------


async def test_a_round_looks_at_the_rooms_the_intake_named_and_at_every_room_the_watch_finds(
    worker: InboxWorker,
    inbox: InboxStore,
    room: RoomId,
    db: Database,
    wakeups: Wakeups,
    clock: FakeClock,
) -> None:
    other = RoomId("!elsewhere:localhost")  # not ours: its events are only marked done
    wakeups.inbox.take()  # what the worker takes first: everything waiting from before
    await worker.drain()
    ours, theirs = text(room, BUYER, "hello"), text(other, BUYER, "hi")
    await store(inbox, ours, theirs)
    wakeups.inbox.set([room])
    await worker._round()
    await worker.settled()
    assert (await statuses(db))[ours["event_id"]][0] == "done"
    assert (await statuses(db))[theirs["event_id"]][0] == "pending"  # not named: not read
    await look(db, clock, worker.due)  # finds an event pending
    await worker._round()  # woken by the watch: every room with pending events
    await worker.settled()
    assert (await statuses(db))[theirs["event_id"]][0] == "done"
    await look(db, clock, worker.due)  # finds none
    assert wakeups.inbox.take() == set()  # and did not wake the worker for every room
    later = text(other, BUYER, "again")
    await store(inbox, later)
    wakeups.inbox.set()  # woken without rooms: every room at once
    await worker._round()
    await worker.settled()
    assert (await statuses(db))[later["event_id"]][0] == "done"


async def test_a_room_named_while_another_is_processed_starts_at_once(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, db: Database, wakeups: Wakeups
) -> None:
    other = RoomId("!elsewhere:localhost")
    wakeups.inbox.take()
    gate, other_done = asyncio.Event(), asyncio.Event()
    process = worker._process_next

    async def held(room_id: RoomId, given: Pending | None = None) -> bool:
        if room_id == room:
            await gate.wait()  # a long burst, say
        more = await process(room_id, given)
        if room_id == other and not more:
            other_done.set()
        return more

    worker._process_next = held  # type: ignore[method-assign]
    ours, theirs = text(room, BUYER, "hello"), text(other, BUYER, "hi")
    await store(inbox, ours, theirs)
    async with asyncio.timeout(5):  # a round that waited for the held room would fail here
        wakeups.inbox.set([room])
        await worker._round()
        wakeups.inbox.set([other])
        await worker._round()
        await other_done.wait()
    assert (await statuses(db))[ours["event_id"]][0] == "pending"  # still held
    gate.set()
    await worker.settled()
    assert {status for status, _ in (await statuses(db)).values()} == {"done"}


async def test_a_room_named_again_while_it_is_processed_is_looked_at_again(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, db: Database, wakeups: Wakeups
) -> None:
    wakeups.inbox.take()
    first, second = text(room, BUYER, "first"), text(room, BUYER, "second")
    process = worker._process_next

    async def arriving(room_id: RoomId, given: Pending | None = None) -> bool:
        more = await process(room_id, given)
        if not more and second["event_id"] not in await statuses(db):
            # Stored and named after the room's last read, before its task ends.
            await store(inbox, second)
            wakeups.inbox.set([room])
            await worker._round()
        return more

    worker._process_next = arriving  # type: ignore[method-assign]
    await store(inbox, first)
    wakeups.inbox.set([room])
    await worker._round()
    await worker.settled()
    done = ("done", None)
    assert await statuses(db) == {first["event_id"]: done, second["event_id"]: done}


async def test_a_burst_is_processed_a_batch_at_a_time_and_a_command_ends_its_batch(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, db: Database
) -> None:
    said = [text(room, BUYER, f"offer {n}") for n in range(BATCH + 3)]
    await store(inbox, *said)
    assert await worker._process_next(room)  # more wait
    done = [e for e, (status, _) in (await statuses(db)).items() if status == "done"]
    assert done == [e["event_id"] for e in said[:BATCH]]
    assert not await worker._process_next(room)
    assert {status for status, _ in (await statuses(db)).values()} == {"done"}
    command, after = text(room, SELLER, "!market help"), text(room, BUYER, "thanks")
    await store(inbox, command, after)
    assert await worker._process_next(room)  # the command's batch ends with it
    assert (await statuses(db))[after["event_id"]][0] == "pending"
    assert not await worker._process_next(room)
    assert (await statuses(db))[after["event_id"]][0] == "done"


# --- messages -------------------------------------------------------------------------------


async def test_a_partys_message_becomes_a_message_created_row_and_a_chat_list_record(
    worker: InboxWorker,
    inbox: InboxStore,
    room: RoomId,
    rows: Rows,
    db: Database,
    wakeups: Wakeups,
    metrics: Metrics,
) -> None:
    said = text(room, BUYER, "Is it still  available?", ts=START_MS + 100)
    await store(inbox, said)
    reset(wakeups)
    await worker.drain()
    (created,) = await rows.outbox("message.created")
    assert created["stream"] == room and created["status"] == "pending"
    body = json.loads(created["body"])
    data = body["data"]
    assert (data["event_id"], data["preview"], data["room_id"]) == (
        said["event_id"],
        "Is it still available?",
        room,
    )
    assert data["sender"] == {"user_id": "u-buyer", "matrix_id": BUYER, "role": "buyer"}
    assert SELLER in [r["matrix_id"] for r in data["recipients"]]
    (record,) = await db.fetch("SELECT * FROM messages")
    assert (record["room_id"], record["event_id"], record["sender"], record["ts"]) == (
        room,
        said["event_id"],
        BUYER,
        START_MS + 100,
    )
    assert record["preview"] == "Is it still available?" and not record["deleted"]
    assert (await statuses(db))[said["event_id"]] == ("done", None)
    assert wakeups.outbox.sets == 1 and wakeups.actions.sets == 0  # type: ignore[attr-defined]
    assert sample(metrics, "bridge_webhooks_queued_total") == 1


async def test_events_of_a_room_are_processed_in_arrival_order_not_by_timestamp(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, rows: Rows
) -> None:
    # Arrival order differs from the homeserver's timestamps (a recovered event, say).
    first = text(room, BUYER, "first", ts=START_MS + 300)
    second = text(room, SELLER, "second", ts=START_MS + 100)
    third = text(room, BUYER, "third", ts=START_MS + 200)
    await store(inbox, first)
    await store(inbox, second, third)
    await worker.drain()
    created = bodies(await rows.outbox("message.created"))
    assert [b["data"]["preview"] for b in created] == ["first", "second", "third"]


async def test_a_drain_processes_every_room_and_leaves_nothing_pending(
    worker: InboxWorker, inbox: InboxStore, market: Market, room: RoomId, db: Database, rows: Rows
) -> None:
    await market.transactions.create(new_transaction("order-2"))
    other = await market.transactions.record_payment(TransactionId("order-2"))
    await store(inbox, text(room, BUYER, "a"), text(other.room_id, SELLER, "b"))
    await store(inbox, text(room, SELLER, "c"))
    await worker.drain()
    assert {status for status, _ in (await statuses(db)).values()} == {"done"}
    streams = [row["stream"] for row in await rows.outbox("message.created")]
    assert sorted(streams) == sorted([room, other.room_id, room])


async def test_a_read_receipt_becomes_a_message_read_row_with_the_unread_count(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, rows: Rows, db: Database
) -> None:
    one = text(room, BUYER, "one", ts=START_MS + 10)
    two = text(room, BUYER, "two", ts=START_MS + 20)
    three = text(room, BUYER, "three", ts=START_MS + 30)
    await store(inbox, one, two, three)
    # The seller read up to the first message: two are still unread.
    await store(inbox, receipts=[Receipt(room, SELLER, one["event_id"], START_MS + 15)])
    await worker.drain()
    (read,) = bodies(await rows.outbox("message.read"))
    data = read["data"]
    assert data["reader"] == {"user_id": "u-seller", "matrix_id": SELLER, "role": "seller"}
    assert (data["event_id"], data["unread"]) == (one["event_id"], 2)
    assert {status for status, _ in (await statuses(db)).values()} == {"done"}


async def test_a_receipt_of_someone_not_in_the_deal_notifies_nothing(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, rows: Rows, db: Database
) -> None:
    said = text(room, BUYER, "hi")
    await store(inbox, said, receipts=[Receipt(room, STRANGER, said["event_id"], START_MS + 5)])
    await worker.drain()
    assert await rows.outbox("message.read") == []
    assert {status for status, _ in (await statuses(db)).values()} == {"done"}


async def test_an_event_in_a_room_nobody_manages_produces_nothing_and_is_done(
    worker: InboxWorker,
    inbox: InboxStore,
    matrix: FakeMatrix,
    room: RoomId,
    rows: Rows,
    db: Database,
) -> None:
    elsewhere = matrix.make_room()
    outbox_before = await rows.outbox()
    event = text(elsewhere, BUYER, "mail me at bob@example.com")
    await store(inbox, event, receipts=[Receipt(elsewhere, BUYER, event["event_id"], START_MS)])
    await worker.drain()
    assert await rows.outbox() == outbox_before
    assert await rows.planned() == []
    assert await db.fetch("SELECT * FROM messages") == []
    assert {status for status, _ in (await statuses(db)).values()} == {"done"}


async def test_the_bots_own_message_notifies_nothing(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, rows: Rows, db: Database
) -> None:
    await store(inbox, text(room, BOT, "Payment confirmed"))
    await worker.drain()
    assert await rows.outbox("message.created") == []
    assert await db.fetch("SELECT * FROM messages") == []


async def test_a_partys_redaction_of_their_message_becomes_message_deleted(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, rows: Rows, db: Database
) -> None:
    said = text(room, BUYER, "oops")
    redaction = {
        "type": "m.room.redaction",
        "event_id": "$redaction",
        "room_id": room,
        "sender": BUYER,
        "origin_server_ts": START_MS + 50,
        "content": {"redacts": said["event_id"]},
    }
    await store(inbox, said)
    await store(inbox, redaction)
    await worker.drain()
    (deleted,) = bodies(await rows.outbox("message.deleted"))
    assert deleted["data"]["event_id"] == said["event_id"]
    (record,) = await db.fetch("SELECT deleted, preview FROM messages")
    assert record["deleted"] and record["preview"] == ""


async def test_a_message_in_a_dispute_room_is_notified_as_the_disputes(
    worker: InboxWorker, inbox: InboxStore, market: Market, room: RoomId, rows: Rows
) -> None:
    dispute, _ = await market.disputes.open(
        NewDispute(DisputeId("d-1"), TransactionId("order-1"), "Broken", "buyer")
    )
    await store(inbox, text(dispute.room_id, SELLER, "It was fine when sent"))
    await worker.drain()
    (created,) = bodies(await rows.outbox("message.created"))
    data = created["data"]
    assert (data["room_kind"], data["dispute_id"], data["transaction_id"]) == (
        "dispute",
        "d-1",
        "order-1",
    )
    assert data["room_id"] == dispute.room_id


async def test_the_inbox_lag_is_the_age_of_the_oldest_pending_event(
    worker: InboxWorker,
    inbox: InboxStore,
    room: RoomId,
    clock: FakeClock,
    metrics: Metrics,
    db: Database,
) -> None:
    await store(inbox, text(room, BUYER, "hello"))
    clock.advance(7.5)
    await look(db, clock, worker.due)
    assert sample(metrics, "bridge_inbox_lag_seconds") == 7.5
    await worker.drain()
    await look(db, clock, worker.due)  # nothing pending any more
    assert sample(metrics, "bridge_inbox_lag_seconds") == 0


# --- events the code cannot handle ------------------------------------------------------------


class FailingEnforcer(Enforcer):
    """Raises on a message whose body is "boom" (a bug in deciding), and on "database down"
    while ``database_down`` (the database failing)."""

    database_down = True

    async def judge(
        self,
        conn: Connection,
        event: dict[str, Any],
        room: Room,
        now: int,
        history: History | None = None,
    ) -> Enforcement:
        body = (event.get("content") or {}).get("body")
        if body == "boom":
            raise RuntimeError("cannot judge this")
        if body == "database down" and self.database_down:
            raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")
        return await super().judge(conn, event, room, now, history)


async def test_an_event_the_decision_code_cannot_handle_is_parked_dead_and_the_room_moves_on(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    room: RoomId,
    rows: Rows,
) -> None:
    enforcer = build_enforcer(config, market, FailingEnforcer)
    commands = build_runner(config, market, matrix, inbox, db, clock)
    worker = build_worker(config, db, market, enforcer, commands, clock, metrics, wakeups)
    bad = text(room, BUYER, "boom")
    good = text(room, SELLER, "after the bad one")
    await store(inbox, bad, good)
    await worker.drain()
    states = await statuses(db)
    assert states[bad["event_id"]] == ("dead", "RuntimeError: cannot judge this")
    assert states[good["event_id"]] == ("done", None)
    created = bodies(await rows.outbox("message.created"))
    assert [b["data"]["event_id"] for b in created] == [good["event_id"]]
    # Nothing of the dead event was kept: its transaction rolled back to the mark.
    (record,) = await db.fetch("SELECT event_id FROM messages")
    assert record["event_id"] == good["event_id"]
    (dead,) = await inbox.get_dead()
    assert dead.event_id == bad["event_id"]


@pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)
async def test_a_database_failure_while_deciding_leaves_the_event_pending_not_dead(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    room: RoomId,
    rows: Rows,
) -> None:
    """PostgreSQL keeps the events before it (each committed alone) and wakes the outbox for
    them; SQLite's batch is one transaction, rolled back whole. The failed event is processed
    once the database answers again, and nothing is doubled."""
    enforcer = build_enforcer(config, market, FailingEnforcer)
    assert isinstance(enforcer, FailingEnforcer)
    commands = build_runner(config, market, matrix, inbox, db, clock)
    worker = build_worker(config, db, market, enforcer, commands, clock, metrics, wakeups)
    before, failing, after = (
        text(room, BUYER, "before"),
        text(room, SELLER, "database down"),
        text(room, BUYER, "after"),
    )
    await store(inbox, before, failing, after)
    reset(wakeups)
    await worker.drain()
    states = await statuses(db)
    kept_before = db.scheme != Scheme.SQLITE
    assert states[before["event_id"]][0] == ("done" if kept_before else "pending")
    assert states[failing["event_id"]] == ("pending", None)
    assert states[after["event_id"]] == ("pending", None)
    assert wakeups.outbox.sets == (1 if kept_before else 0)  # type: ignore[attr-defined]
    assert sample(metrics, "bridge_webhooks_queued_total") == (1 if kept_before else 0)
    enforcer.database_down = False  # it answers again
    await worker.drain()
    assert {status for status, _ in (await statuses(db)).values()} == {"done"}
    created = bodies(await rows.outbox("message.created"))
    expected = [before["event_id"], failing["event_id"], after["event_id"]]
    assert [b["data"]["event_id"] for b in created] == expected


async def test_a_stored_event_that_is_not_json_is_parked_dead(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, db: Database, clock: FakeClock
) -> None:
    await db.execute(
        "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
        " event_json, status, txn_id, received_at)"
        " VALUES ('$garbled', $1, 'm.room.message', $2, 1, '{not json', 'pending', 't', $3)",
        room,
        BUYER,
        clock.now_ms(),
    )
    after = text(room, BUYER, "next")
    await store(inbox, after)
    await worker.drain()
    states = await statuses(db)
    status, error = states["$garbled"]
    assert status == "dead" and error.startswith("JSONDecodeError: ")
    assert states[after["event_id"]] == ("done", None)


async def test_a_dead_event_is_left_alone_by_later_drains(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, db: Database, rows: Rows
) -> None:
    malformed = {"type": "m.room.message", "event_id": "$bad", "room_id": room, "sender": BUYER}
    await store(inbox, malformed)  # no content, no timestamp: stored dead on arrival
    await worker.drain()
    await worker.drain()
    status, error = (await statuses(db))["$bad"]
    assert status == "dead" and "origin_server_ts" in error
    assert await rows.outbox("message.created") == []


# --- the policy bot ---------------------------------------------------------------------------


async def test_a_violating_message_is_withheld_and_its_actions_planned(
    worker: InboxWorker,
    inbox: InboxStore,
    room: RoomId,
    rows: Rows,
    db: Database,
    wakeups: Wakeups,
    metrics: Metrics,
) -> None:
    said = text(room, SELLER, "Write to me at bob@example.com instead")
    await store(inbox, said)
    reset(wakeups)
    await worker.drain()
    assert await rows.outbox("message.created") == []
    assert await db.fetch("SELECT * FROM messages") == []
    (violation,) = bodies(await rows.outbox("policy.violation"))
    data = violation["data"]
    assert data["event_id"] == said["event_id"]
    assert [v["rule"] for v in data["violations"]] == ["contact_details"]
    assert "bob@example.com" not in json.dumps(violation)
    planned = await rows.planned()
    assert [(p["kind"], p["key"]) for p in planned] == [
        ("redact", f"redact:{said['event_id']}"),
        ("warn", f"warn:{said['event_id']}"),
        ("alert", f"alert:{said['event_id']}"),
    ]
    assert {p["room_id"] for p in planned} == {room}
    (audit,) = await rows.audit("policy.violation")
    assert (audit["subject"], audit["reason"]) == (SELLER, "contact_details")
    assert wakeups.actions.sets == 1  # type: ignore[attr-defined]
    assert sample(metrics, "bridge_policy_violations_total", {"rule": "contact_details"}) == 1
    assert (await statuses(db))[said["event_id"]] == ("done", None)


async def test_an_event_the_notifications_cannot_read_is_removed_as_malformed_not_passed(
    worker: InboxWorker,
    inbox: InboxStore,
    room: RoomId,
    rows: Rows,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def choke(*_: object) -> None:
        raise KeyError("a field nobody expected")

    monkeypatch.setattr("bridge.homeserver.decisions.message_notifications", choke)
    said = text(room, SELLER, "an innocent-looking message")
    await store(inbox, said)
    await worker.drain()
    assert await rows.outbox("message.created") == []
    (violation,) = bodies(await rows.outbox("policy.violation"))
    assert [v["rule"] for v in violation["data"]["violations"]] == ["malformed_content"]
    assert [p["kind"] for p in await rows.planned()][:1] == ["redact"]
    assert (await statuses(db))[said["event_id"]] == ("done", None)


async def test_a_flood_mutes_the_sender_and_plans_the_unmute(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, rows: Rows, db: Database
) -> None:
    # flood_messages is 3 in 10 s (conftest): the fourth message within the window floods.
    messages = [text(room, BUYER, f"hello {i}", ts=START_MS + i * 1000) for i in range(4)]
    await store(inbox, *messages)
    await worker.drain()
    last = messages[-1]["event_id"]
    planned = {p["kind"]: p for p in await rows.planned()}
    assert set(planned) == {"mute", "unmute", "warn", "alert"}
    assert planned["unmute"]["key"] == f"unmute:{last}"
    (mute,) = await db.fetch("SELECT room_id, user_id, until FROM mutes")
    assert (mute["room_id"], mute["user_id"]) == (room, BUYER)
    assert planned["unmute"]["due_at"] == mute["until"]
    # Not redacted: the flooding message still counts as a message.
    assert len(await rows.outbox("message.created")) == 4


async def test_an_admins_message_is_exempt_from_the_rules(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, rows: Rows
) -> None:
    await store(inbox, text(room, ADMIN, "Reach support at help@example.com"))
    await worker.drain()
    assert await rows.outbox("policy.violation") == []
    assert await rows.planned() == []
    assert len(await rows.outbox("message.created")) == 1


async def test_a_stranger_joining_a_transaction_room_is_planned_to_be_kicked(
    worker: InboxWorker, inbox: InboxStore, room: RoomId, rows: Rows, wakeups: Wakeups
) -> None:
    join = {
        "type": "m.room.member",
        "event_id": "$join",
        "room_id": room,
        "sender": STRANGER,
        "state_key": STRANGER,
        "origin_server_ts": START_MS,
        "content": {"membership": "join"},
    }
    await store(inbox, join)
    reset(wakeups)
    await worker.drain()
    (kick,) = await rows.planned()
    assert (kick["kind"], kick["key"]) == ("kick", "kick:$join")
    assert json.loads(kick["params"])["user_id"] == STRANGER
    assert wakeups.actions.sets == 1  # type: ignore[attr-defined]


# --- admin commands -----------------------------------------------------------------------------


class SpyRunner(CommandRunner):
    """Records, for each message it is handed, the event's stored status at that moment."""

    db: Database
    seen: list[tuple[str, RoomKind | None, str]]

    async def handle(self, room_id: RoomId, kind: RoomKind | None, event: dict[str, Any]) -> None:
        status = await self.db.fetchval(
            "SELECT status FROM inbox_events WHERE event_id = $1", event["event_id"]
        )
        self.seen.append((event["event_id"], kind, status))
        await super().handle(room_id, kind, event)


@pytest.fixture
def spy_worker(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
) -> tuple[InboxWorker, SpyRunner]:
    runner = build_runner(config, market, matrix, inbox, db, clock, SpyRunner)
    assert isinstance(runner, SpyRunner)
    runner.db, runner.seen = db, []
    enforcer = build_enforcer(config, market)
    return build_worker(config, db, market, enforcer, runner, clock, metrics, wakeups), runner


async def test_an_admin_command_runs_after_its_event_is_stored_as_done(
    spy_worker: tuple[InboxWorker, SpyRunner],
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    rows: Rows,
) -> None:
    worker, runner = spy_worker
    management = await market.management.ensure()
    said = text(management, ADMIN, "!market help")
    await store(inbox, said)
    await worker.drain()
    assert runner.seen == [(said["event_id"], RoomKind.MANAGEMENT, "done")]
    expected = txn_id("reply", said["event_id"])
    (reply,) = [c for c in matrix.called("send_message") if c[3] == expected]
    assert reply[0] == management and reply[2]["body"] == help_text("!market")
    assert (await statuses(db))[said["event_id"]] == ("done", None)
    (audited,) = await rows.audit("command")
    assert audited["outcome"] == "done"


@pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)
async def test_an_event_read_as_pending_after_another_process_finished_it_is_left_alone(
    worker: InboxWorker,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    rows: Rows,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No lock keeps another process off the room: it may read the events as pending just
    before this one finishes them. None of their writes is kept, and the command does not
    run twice."""
    management = await market.management.ensure()
    said = text(management, ADMIN, "!market help")
    await store(inbox, said)
    reads: list[Any] = []

    async def reading(*args: Any) -> Any:
        reads.append(await read_pending(*args))
        return reads[-1]

    monkeypatch.setattr(inbox_worker, "read_pending", reading)
    await worker.drain()  # this process finishes the command
    stale = reads[0]
    assert [e.event_id for e in stale.events] == [said["event_id"]]

    async def stale_read(*args: Any) -> Any:
        return stale  # read as pending again, as the other process would

    monkeypatch.setattr(inbox_worker, "read_pending", stale_read)
    more = await worker._process_next(management)
    reply = txn_id("reply", said["event_id"])
    assert len([c for c in matrix.called("send_message") if c[3] == reply]) == 1
    assert len(await rows.audit("command")) == 1
    assert (await statuses(db))[said["event_id"]] == ("done", None)
    assert more  # nothing of the stale read was kept: the room is read again


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
async def test_two_workers_on_one_room_keep_each_event_once_and_in_order(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    room: RoomId,
    rows: Rows,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes' workers (no lock keeps them apart) read the room's events at the same
    time, so both work out the same ones: each event's writes are kept once, webhooks in
    the events' order, nothing of the policy bot's doubled."""
    enforcer = build_enforcer(config, market)
    commands = build_runner(config, market, matrix, inbox, db, clock)
    workers = [
        build_worker(config, db, market, enforcer, commands, clock, metrics, wakeups)
        for _ in range(2)
    ]
    said = [
        text(
            room,
            (BUYER, SELLER)[n % 2],
            "mail me at bob@example.com" if n in (4, 9) else f"offer {n}",
            START_MS + n * 10_000,  # apart: no flood
        )
        for n in range(12)
    ]
    await store(inbox, *said)
    first_reads: list[Any] = []
    both_read = asyncio.Event()

    async def reading_together(*args: Any) -> Any:
        """The first read of each worker waits for the other's: both hold the same events."""
        pending = await read_pending(*args)
        if len(first_reads) < 2:
            first_reads.append(pending)
            if len(first_reads) == 2:
                both_read.set()
            await both_read.wait()
        return pending

    conflicts = 0
    process = InboxWorker._process

    async def counting(self: InboxWorker, *args: Any) -> Any:
        nonlocal conflicts
        try:
            return await process(self, *args)
        except ProcessedElsewhere:
            conflicts += 1
            raise

    monkeypatch.setattr(inbox_worker, "read_pending", reading_together)
    monkeypatch.setattr(InboxWorker, "_process", counting)
    await asyncio.gather(*(worker.drain() for worker in workers))
    assert [len(read.events) for read in first_reads] == [12, 12]  # BATCH is larger
    assert conflicts >= 1  # the race ran
    assert {status for status, _ in (await statuses(db)).values()} == {"done"}
    created = [b["data"]["event_id"] for b in bodies(await rows.outbox("message.created"))]
    clean = [e["event_id"] for n, e in enumerate(said) if n not in (4, 9)]
    assert created == clean
    violations = bodies(await rows.outbox("policy.violation"))
    violating = [said[4]["event_id"], said[9]["event_id"]]
    assert [v["data"]["event_id"] for v in violations] == violating
    assert len(await rows.audit("policy.violation")) == 2
    assert len(await rows.planned()) == 6  # redact, warn, alert for each
    (count,) = await db.fetchrow("SELECT COUNT(*) FROM messages")
    assert count == len(clean)


async def test_a_command_in_a_dispute_room_is_handed_over_as_a_dispute_rooms(
    spy_worker: tuple[InboxWorker, SpyRunner],
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    room: RoomId,
) -> None:
    worker, runner = spy_worker
    dispute, _ = await market.disputes.open(
        NewDispute(DisputeId("d-1"), TransactionId("order-1"), "Broken", "buyer")
    )
    said = text(dispute.room_id, ADMIN, "!market status d-1")
    await store(inbox, said)
    await worker.drain()
    assert runner.seen == [(said["event_id"], RoomKind.DISPUTE, "done")]
    expected = txn_id("reply", said["event_id"])
    (reply,) = [c for c in matrix.called("send_message") if c[3] == expected]
    assert reply[2]["body"] == "Dispute d-1 on order-1: open."


async def test_a_withheld_message_and_the_bots_own_never_reach_the_commands(
    spy_worker: tuple[InboxWorker, SpyRunner], inbox: InboxStore, room: RoomId
) -> None:
    worker, runner = spy_worker
    violating = text(room, BUYER, "!market help or whatsapp me")
    mine = text(room, BOT, "!market help")
    fine = text(room, SELLER, "!market help")
    await store(inbox, violating, mine, fine)
    await worker.drain()
    assert [seen[0] for seen in runner.seen] == [fine["event_id"]]


class BrokenRunner(CommandRunner):
    handed: list[str]

    async def handle(self, room_id: RoomId, kind: RoomKind | None, event: dict[str, Any]) -> None:
        self.handed.append(event["event_id"])
        raise RuntimeError("the command code broke")


async def test_a_failing_command_leaves_its_event_done_and_the_room_moving(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    room: RoomId,
    rows: Rows,
) -> None:
    runner = build_runner(config, market, matrix, inbox, db, clock, BrokenRunner)
    assert isinstance(runner, BrokenRunner)
    runner.handed = []
    worker = build_worker(
        config, db, market, build_enforcer(config, market), runner, clock, metrics, wakeups
    )
    first, second = text(room, BUYER, "!market help"), text(room, SELLER, "!market help")
    await store(inbox, first, second, text(room, BUYER, "no command: not handed over"))
    await worker.drain()
    assert runner.handed == [first["event_id"], second["event_id"]]  # both failed
    assert {status for status, _ in (await statuses(db)).values()} == {"done"}
    assert len(await rows.outbox("message.created")) == 3
