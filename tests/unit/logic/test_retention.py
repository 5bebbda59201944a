"""Retention and legal holds on the fake homeserver with a moved clock: a closed transaction's
room exported, announced, removed and pruned after its time; holds that keep it; a crash
after each step resumed without doubling anything (the real homeserver:
tests/e2e/test_retention.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mautrix.util.async_db import Database

from appservice.matrix import HomeserverUnavailable
from bridge.config import Config
from bridge.homeserver.inbox import InboxStore
from bridge.market import Market
from bridge.market.errors import NotFound
from bridge.market.holds import HeldByDispute
from bridge.market.models import NewDispute, Resolution, TransactionRecord
from bridge.policybot.originals import MaskedOriginals
from bridge.policybot.transcripts import Transcripts
from bridge.retention.plan import plan
from bridge.retention.records import PurgeRecords, StoredTranscripts
from bridge.retention.worker import LEASE_MS, RetentionSettings, RetentionWorker
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup, Wakeups
from bridge.storage.transcripts import DirectoryStore
from policy.ids import DisputeId, RoomId, TransactionId
from policy.retention import KEEP_FOREVER
from policy.states import Outcome
from policy.transcript import verify_transcript
from tests.harness import make_config

from .conftest import ADMIN, BUYER, Rows, build_enforcer, build_runner, new_transaction
from .conftest import build_worker as build_inbox_worker
from .fakes import FakeClock, FakeMatrix
from .test_inbox_worker import store

DAY = 86_400


class Crash(BaseException):
    """The process dies here: nothing after it runs, nothing catches it."""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        database_url=f"sqlite://{tmp_path / 'bridge.db'}",
        rooms={"admins": [ADMIN]},
        retention={
            "closed_transaction_days": {"completed": 1, "cancelled": "12h", "refunded": "off"},
            "resolved_dispute_days": 2,
            "hold_after_resolution_days": 3,
            "transcripts_directory": str(tmp_path / "transcripts"),
        },
    )


def build_worker(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    clock: FakeClock,
    wakeups: Wakeups,
    *,
    store: Any = None,
    remove_room: Any = None,
    outbox: Wakeup | None = None,
) -> tuple[RetentionWorker, Transcripts]:
    """As the composition root builds it (bridge.app)."""
    stored = StoredTranscripts(
        PurgeRecords(db), DirectoryStore(config.retention.transcripts_directory)
    )
    transcripts = Transcripts(
        market.transaction_records,
        market.dispute_records,
        InboxStore(db, clock),
        MaskedOriginals(db),
        market.audit,
        clock,
        stored.of_room,
    )
    worker = RetentionWorker(
        db,
        RetentionSettings.of(config),
        transcripts,
        store or stored.store,
        remove_room or matrix.purge_room,
        matrix.user_id,
        clock,
        outbox or wakeups.outbox,
        asyncio.Event(),
    )
    return worker, transcripts


async def store_message(db: Database, room_id: RoomId, body: str, clock: FakeClock) -> None:
    event = {
        "event_id": f"$m{clock.now_ms()}",
        "room_id": room_id,
        "type": "m.room.message",
        "sender": BUYER,
        "origin_server_ts": clock.now_ms(),
        "content": {"msgtype": "m.text", "body": body},
    }
    await db.execute(
        "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
        " event_json, status, txn_id, received_at) VALUES ($1, $2, $3, $4, $5, $6, 'done',"
        " 't1', $5)",
        event["event_id"],
        room_id,
        "m.room.message",
        BUYER,
        clock.now_ms(),
        json.dumps(event),
    )


async def closed_deal(
    market: Market, db: Database, clock: FakeClock, outcome: Outcome = Outcome.COMPLETED
) -> TransactionRecord:
    record, _ = await market.transactions.create(new_transaction())
    await market.transactions.record_payment(record.transaction_id)
    assert record.room_id is not None
    await store_message(db, record.room_id, "Is it still available?", clock)
    return await market.transactions.close(record.transaction_id, outcome)


def purged_data(row: dict) -> dict:
    return json.loads(row["body"])["data"]


async def test_a_closed_transactions_room_goes_after_its_time_its_transcript_kept(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    clock: FakeClock,
    wakeups: Wakeups,
    rows: Rows,
) -> None:
    worker, transcripts = build_worker(config, db, market, matrix, clock, wakeups)
    record = await closed_deal(market, db, clock)
    room = record.room_id
    assert room is not None
    before = await transcripts.of_transaction(record.transaction_id, "marketplace")
    clock.advance(DAY - 1)
    assert await worker.drain() == 0 and not matrix.purged
    clock.advance(1)
    assert await worker.drain() == 1
    assert matrix.purged == {room}
    (row,) = await rows.outbox("room.purged")
    data = purged_data(row)
    assert row["stream"] == room and data["transaction_id"] == record.transaction_id
    stored = json.loads(
        await asyncio.to_thread(
            (config.retention.transcripts_directory / data["transcript"]).read_text
        )
    )
    assert verify_transcript(stored) == []
    assert stored["final_hash"] == data["final_hash"] == before["final_hash"]
    assert "Is it still available?" in json.dumps(stored)
    after = await market.transactions.get(record.transaction_id)
    assert after.purged_at == clock.now_ms() and after.transcript_hash == data["final_hash"]
    # The record and the evidence stay; the room's rows go; the room is left alone.
    assert await transcripts.of_transaction(record.transaction_id, "marketplace") == stored
    assert await db.fetchval("SELECT COUNT(*) FROM inbox_events WHERE room_id = $1", room) == 0
    assert await db.fetchval("SELECT COUNT(*) FROM messages WHERE room_id = $1", room) == 0
    assert await market.chat_list.of(record.buyer.user_id) == []
    matrix.forget_calls()
    await market.reconciler.repair_room(room)
    assert matrix.calls == []
    assert [a["action"] for a in await rows.audit("room.purged")] == ["room.purged"]
    assert await worker.drain() == 0  # done once


async def test_what_the_removal_itself_sends_leaves_no_row_behind(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    clock: FakeClock,
    wakeups: Wakeups,
    metrics: Metrics,
    inbox: InboxStore,
    rows: Rows,
) -> None:
    worker, _ = build_worker(config, db, market, matrix, clock, wakeups)
    record = await closed_deal(market, db, clock)
    clock.advance(DAY)
    assert await worker.drain() == 1
    queued = len(await rows.outbox())
    leave = {
        "type": "m.room.member",
        "event_id": "$leave",
        "room_id": record.room_id,
        "sender": BUYER,
        "state_key": BUYER,
        "origin_server_ts": clock.now_ms(),
        "content": {"membership": "leave"},
    }
    await store(inbox, leave)  # the homeserver's removal makes every member leave
    commands = build_runner(config, market, matrix, inbox, db, clock)
    inbox_worker = build_inbox_worker(
        config, db, market, build_enforcer(config, market), commands, clock, metrics, wakeups
    )
    await inbox_worker.drain()
    count = "SELECT COUNT(*) FROM inbox_events WHERE room_id = $1"
    assert await db.fetchval(count, record.room_id) == 0
    assert len(await rows.outbox()) == queued


async def test_each_outcome_keeps_its_own_time_and_off_keeps_for_good(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    clock: FakeClock,
    wakeups: Wakeups,
) -> None:
    worker, _ = build_worker(config, db, market, matrix, clock, wakeups)
    cancelled = await closed_deal(market, db, clock, Outcome.CANCELLED)
    record, _ = await market.transactions.create(new_transaction("order-2"))
    refunded = await market.transactions.close(record.transaction_id, Outcome.REFUNDED)
    clock.advance(12 * 3600)
    assert await worker.drain() == 1 and matrix.purged == {cancelled.room_id}
    clock.advance(365 * DAY)
    assert await worker.drain() == 0 and refunded.room_id not in matrix.purged


async def test_a_held_room_is_kept_until_released_and_a_disputes_hold_ends_by_itself(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    clock: FakeClock,
    wakeups: Wakeups,
    rows: Rows,
) -> None:
    worker, _ = build_worker(config, db, market, matrix, clock, wakeups)
    record, _ = await market.transactions.create(new_transaction())
    tid = record.transaction_id
    _, holds, placed = await market.holds.place(tid, "claim 42", "marketplace")
    assert placed and [h.kind for h in holds] == ["manual"]
    _, _, placed = await market.holds.place(tid, "again", "marketplace")
    assert not placed
    await market.transactions.record_payment(tid)
    await market.disputes.open(NewDispute(DisputeId("d-1"), tid, "Broken", "buyer"))
    await market.disputes.resolve(DisputeId("d-1"), Resolution("no_action", "", "m", "api"))
    await market.transactions.close(tid, Outcome.COMPLETED)
    clock.advance(10 * DAY)  # past the room's day and the dispute's three
    assert [h.kind for h in await market.holds.all()] == ["manual"]
    assert await worker.drain() == 0 and not matrix.purged
    await market.holds.release(tid, "settled", "marketplace")
    assert await worker.drain() == 2  # the transaction's room and the dispute's
    assert [a["reason"] for a in await rows.audit("hold.placed")] == ["claim 42"]
    assert [a["reason"] for a in await rows.audit("hold.released")] == ["settled"]
    with pytest.raises(NotFound):
        await market.holds.release(tid, "", "marketplace")
    with pytest.raises(NotFound):
        await market.holds.place(TransactionId("nope"), "x", "marketplace")
    # An open dispute holds; resolved, it holds three more days, then lets go by itself.
    other, _ = await market.transactions.create(new_transaction("order-2"))
    await market.transactions.record_payment(other.transaction_id)
    dispute = NewDispute(DisputeId("d-2"), other.transaction_id, "Late", "buyer")
    await market.disputes.open(dispute)
    with pytest.raises(HeldByDispute):
        await market.holds.release(other.transaction_id, "", "marketplace")
    await market.disputes.resolve(DisputeId("d-2"), Resolution("no_action", "", "m", "api"))
    clock.advance(3 * DAY - 1)
    assert [h.dispute_id for h in await market.holds.on(other.transaction_id)] == ["d-2"]
    clock.advance(1)
    assert await market.holds.on(other.transaction_id) == []


class CrashingStore(DirectoryStore):
    async def put(self, name: str, document: dict[str, Any]) -> str:
        await super().put(name, document)
        raise Crash  # stored, not recorded


class CrashingWakeup(Wakeup):
    def set(self, rooms: Any = None) -> None:
        raise Crash  # the announcement committed, nothing after it


@pytest.mark.parametrize("step", ["exported", "announced", "removed"])
async def test_a_crash_after_each_step_is_resumed_without_doubling(
    step: str,
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    clock: FakeClock,
    wakeups: Wakeups,
    rows: Rows,
) -> None:
    async def remove_then_crash(room_id: RoomId) -> None:
        await matrix.purge_room(room_id)
        raise Crash

    crashing = {
        "exported": {"store": CrashingStore(config.retention.transcripts_directory)},
        "announced": {"outbox": CrashingWakeup()},
        "removed": {"remove_room": remove_then_crash},
    }[step]
    first, _ = build_worker(config, db, market, matrix, clock, wakeups, **crashing)
    record = await closed_deal(market, db, clock)
    clock.advance(DAY)
    with pytest.raises(Crash):
        await first.drain()
    second, transcripts = build_worker(config, db, market, matrix, clock, wakeups)
    assert await second.drain() == 0  # the dead process's lease still holds the room
    clock.advance(LEASE_MS / 1000 + 1)
    assert await second.drain() == 1
    (row,) = await rows.outbox("room.purged")
    assert len(matrix.called("purge_room")) == (2 if step == "removed" else 1)
    document = await transcripts.of_transaction(record.transaction_id, "marketplace")
    assert document["final_hash"] == purged_data(row)["final_hash"]
    assert verify_transcript(document) == []


async def test_a_homeserver_failure_is_tried_again_after_a_backoff(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    clock: FakeClock,
    wakeups: Wakeups,
) -> None:
    worker, _ = build_worker(config, db, market, matrix, clock, wakeups)
    record = await closed_deal(market, db, clock)
    clock.advance(DAY)
    matrix.fail("purge_room", HomeserverUnavailable("down"))
    assert await worker.drain() == 0
    purge = await PurgeRecords(db).get(record.room_id)  # type: ignore[arg-type]
    assert purge is not None and purge.status.value == "announced" and purge.last_error
    assert await worker.drain() == 0  # waiting for its retry, 5 s after the first failure
    clock.advance(5.001)
    assert await worker.drain() == 1


async def test_old_webhooks_are_deleted_and_the_rest_kept(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    clock: FakeClock,
    wakeups: Wakeups,
) -> None:
    worker, _ = build_worker(config, db, market, matrix, clock, wakeups)
    now = clock.now_ms()
    for id_, status, delivered_at, retry_until in (
        ("old", "delivered", now - 31 * DAY * 1000, now),
        ("recent", "delivered", now - 29 * DAY * 1000, now),
        ("waiting", "pending", None, now + 1000),
        ("dead-old", "dead", None, now - 31 * DAY * 1000),
        ("dead-recent", "dead", None, now - DAY * 1000),
    ):
        await db.execute(
            "INSERT INTO outbox (id, stream, type, body, status, next_attempt_at, retry_until,"
            " created_at, delivered_at) VALUES ($1, 's', 't', '{}', $2, 0, $3, 0, $4)",
            id_,
            status,
            retry_until,
            delivered_at,
        )
    await worker.drain()
    left = {row["id"] for row in await db.fetch("SELECT id FROM outbox")}
    assert left == {"recent", "waiting", "dead-recent"}


async def test_a_dry_run_lists_what_would_go_under_the_configured_periods_and_changes_nothing(
    config: Config,
    db: Database,
    market: Market,
    clock: FakeClock,
    rows: Rows,
) -> None:
    record = await closed_deal(market, db, clock)
    other, _ = await market.transactions.create(new_transaction("order-2"))
    await market.transactions.close(other.transaction_id, Outcome.COMPLETED)
    await market.holds.place(other.transaction_id, "claim 9", "marketplace")
    settings = RetentionSettings.of(config)
    day_later = clock.now_ms() + DAY * 1000
    assert await plan(db, settings, clock.now_ms()) == []
    lines = [item.line() for item in await plan(db, settings, day_later)]
    assert len(lines) == 2
    assert any(str(record.room_id) in line and "would be removed" in line for line in lines)
    assert any("kept: held by" in line and "claim 9" in line for line in lines)
    # Periods not yet applied (a stored due date of none) are what the dry run goes by.
    await db.execute("UPDATE purges SET due_at = NULL")
    assert len(await plan(db, settings, day_later)) == 2
    off = replace(settings, periods=KEEP_FOREVER)
    assert await plan(db, off, day_later + 365 * DAY * 1000) == []
    assert await db.fetchval("SELECT COUNT(*) FROM purges WHERE status <> 'scheduled'") == 0
    assert await rows.outbox("room.purged") == []
