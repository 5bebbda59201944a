"""Masking before delivery, from the bridge's side: a message the homeserver masked is a
violation to record without a redaction, its original is fetched for admins only, previews
never carry contact details, and party-written titles and reasons are masked where the bot
writes them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mautrix.util.async_db import Database

from appservice.transactions import Transaction, parse_room_event
from bridge.config import Config
from bridge.homeserver.inbox import InboxStore
from bridge.market import Market
from bridge.market.models import NewDispute, TransactionRecord, room_context
from bridge.policybot.actions import ActionKind, PlannedAction
from bridge.policybot.enforcer import Enforcer, Room
from bridge.policybot.originals import MaskedOriginals
from bridge.policybot.performer import ActionPerformer
from bridge.policybot.transcripts import Transcripts
from policy.ids import DisputeId, RoomId, TransactionId
from policy.masking import MARKER, MASKED_KEY
from policy.rooms import RoomKind

from .conftest import ADMIN, BUYER, SELLER, build_enforcer, build_performer, new_transaction
from .fakes import FakeClock, FakeMatrix, no_stored_transcript

ORIGINAL = {"msgtype": "m.text", "body": "call me on +44 7911 123456"}
MASKED = {"msgtype": "m.text", "body": f"call me on {MARKER}", MASKED_KEY: {"id": "mask-1"}}


@pytest.fixture
async def paid(market: Market) -> TransactionRecord:
    record, _ = await market.transactions.create(new_transaction())
    return await market.transactions.record_payment(record.transaction_id)


@pytest.fixture
def enforcer(config: Config, market: Market) -> Enforcer:
    return build_enforcer(config, market)


@pytest.fixture
def originals(db: Database) -> MaskedOriginals:
    return MaskedOriginals(db)


@pytest.fixture
def performer(
    market: Market, matrix: FakeMatrix, db: Database, clock: FakeClock
) -> ActionPerformer:
    return build_performer(market, matrix, db, clock)


def message(record: TransactionRecord, content: dict[str, Any], sender: str = BUYER) -> dict:
    return {
        "type": "m.room.message",
        "event_id": "$masked",
        "room_id": record.room_id,
        "sender": sender,
        "origin_server_ts": 1,
        "content": content,
    }


async def judge(db: Database, enforcer: Enforcer, event: dict, record: TransactionRecord):
    room = Room(
        RoomKind.TRANSACTION, record, None, room_context(record, "@marketbot:localhost", ())
    )
    async with db.acquire() as conn, conn.transaction():
        return await enforcer.judge(conn, event, room, 2)


async def test_a_masked_message_is_recorded_without_a_redaction(
    db: Database, enforcer: Enforcer, paid: TransactionRecord
) -> None:
    result = await judge(db, enforcer, message(paid, MASKED), paid)
    assert result.broken_rules == ("contact_details",)
    assert not result.withhold  # already harmless: it counts as the message it is now
    kinds = [action.kind for action in result.actions]
    assert ActionKind.REDACT not in kinds
    assert ActionKind.KEEP_ORIGINAL in kinds and ActionKind.WARN in kinds
    keep = next(a for a in result.actions if a.kind is ActionKind.KEEP_ORIGINAL)
    assert keep.params == {"event_id": "$masked", "user_id": BUYER, "mask_id": "mask-1"}
    (violation,) = result.notifications
    assert "mask" in violation.data["actions"] and "redact" not in violation.data["actions"]


async def test_a_masked_message_that_still_holds_a_contact_detail_is_redacted(
    db: Database, enforcer: Enforcer, paid: TransactionRecord
) -> None:
    leaky = {**MASKED, "body": f"{MARKER} or bob@example.com"}
    result = await judge(db, enforcer, message(paid, leaky), paid)
    assert ActionKind.REDACT in [action.kind for action in result.actions]
    assert result.withhold


async def test_the_original_is_kept_for_admins_and_in_the_transcript(
    performer: ActionPerformer,
    matrix: FakeMatrix,
    paid: TransactionRecord,
    originals: MaskedOriginals,
    market: Market,
    db: Database,
    clock: FakeClock,
) -> None:
    matrix.originals["mask-1"] = {"room_id": paid.room_id, "sender": BUYER, "content": ORIGINAL}
    params = {"event_id": "$masked", "user_id": BUYER, "mask_id": "mask-1"}
    entry = await performer.perform(
        PlannedAction("original:$masked", paid.room_id, ActionKind.KEEP_ORIGINAL, params)
    )
    assert entry is not None and entry.action == "message.masked" and entry.outcome == "done"
    assert entry.detail == "original: call me on +44 7911 123456"
    assert await originals.of_room(paid.room_id) == {"$masked": ORIGINAL}
    inbox = InboxStore(db, clock)
    await inbox.store_transaction(Transaction("t", [parse_room_event(message(paid, MASKED))], []))
    transcripts = Transcripts(
        market.transaction_records,
        market.dispute_records,
        inbox,
        originals,
        market.audit,
        clock,
        no_stored_transcript,
    )
    document = await transcripts.of_transaction(TransactionId("order-1"), actor=ADMIN)
    (entry,) = [e for e in document["entries"] if e["event_id"] == "$masked"]
    assert entry["body"] == f"call me on {MARKER}" and entry["original"] == ORIGINAL


@pytest.mark.parametrize(
    "kept",
    [
        None,  # the module knows no such mask
        {"room_id": "!another", "sender": BUYER, "content": ORIGINAL},
        {"room_id": None, "sender": SELLER, "content": ORIGINAL},
    ],
)
async def test_an_original_of_another_room_or_sender_is_never_taken(
    performer: ActionPerformer,
    matrix: FakeMatrix,
    paid: TransactionRecord,
    originals: MaskedOriginals,
    kept: dict | None,
) -> None:
    if kept is not None:
        kept = {**kept, "room_id": kept["room_id"] or paid.room_id}
        matrix.originals["mask-1"] = kept
    params = {"event_id": "$masked", "user_id": BUYER, "mask_id": "mask-1"}
    entry = await performer.perform(
        PlannedAction("original:$masked", paid.room_id, ActionKind.KEEP_ORIGINAL, params)
    )
    assert entry is not None and entry.outcome == "failed"
    assert await originals.of_room(paid.room_id) == {}


async def test_a_preview_never_carries_a_contact_detail(
    db: Database, config: Config, market: Market, paid: TransactionRecord
) -> None:
    # Even where the rules would not remove the message (here, a warning only).
    from policy.notifications import message_notifications

    enforcer = build_enforcer(config, market)
    context = room_context(paid, "@marketbot:localhost", ())
    notifications, record = message_notifications(
        message(paid, ORIGINAL), context, None, enforcer.mask
    )
    assert notifications[0].data["preview"] == f"call me on {MARKER}"
    assert record is not None and "7911" not in record.preview
    assert "7911" not in json.dumps([n.body() for n in notifications])


async def test_party_written_titles_and_reasons_are_masked_where_the_bot_writes_them(
    market: Market, matrix: FakeMatrix
) -> None:
    title = "Bike, call 07911 123456"
    record, _ = await market.transactions.create(new_transaction(title=title))
    assert record.title == title  # the marketplace's record keeps what it sent
    room = matrix.rooms[record.room_id]
    assert room.state[("m.room.name", "")]["name"] == f"Bike, call {MARKER} · awaiting payment"
    await market.transactions.record_payment(record.transaction_id)
    dispute, _ = await market.disputes.open(
        NewDispute(DisputeId("d-1"), record.transaction_id, "mail me: bob@example.com", "buyer")
    )
    dispute_room = RoomId(dispute.room_id)
    shown = json.dumps(
        [
            matrix.messages_in(record.room_id),
            matrix.messages_in(dispute_room),
            matrix.rooms[dispute_room].state[("m.room.name", "")],
        ]
    )
    assert "7911" not in shown and "bob@example.com" not in shown
