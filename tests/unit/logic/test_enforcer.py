"""The enforcer: room events judged inside the inbox worker's transaction, and what it writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mautrix.util.async_db import Database

from bridge.config import Config
from bridge.market import Market
from bridge.market.models import NewDispute, TransactionRecord, room_context
from bridge.policybot.actions import ActionKind, PlannedAction
from bridge.policybot.enforcer import NOT_ALLOWED, NOTHING, Enforcement, Enforcer, Room
from bridge.storage.writes import Writes
from policy.ids import DisputeId, RoomId, UserId
from policy.rooms import RoomKind
from policy.rules import content_rules_from
from policy.states import Outcome

from .conftest import ADMIN, BUYER, SELLER, Rows, new_transaction
from .fakes import FakeClock, FakeMatrix

STRANGER = "@stranger:localhost"
PHONE = "call me on +44 7911 123456"
MUTE_MS = 60_000  # the conftest's policy.mute_seconds


@pytest.fixture
def enforcer(config: Config) -> Enforcer:
    """Built as `bridge.app` builds it."""
    return Enforcer(
        content_rules_from(config.policy.model_dump()),
        config.bot_mxid,
        tuple(UserId(admin) for admin in config.rooms.admins),
        config.disputes.freeze_transaction_room,
        config.policy.mute_seconds,
    )


@pytest.fixture
async def paid(market: Market) -> TransactionRecord:
    """A paid transaction: its room is open to both parties."""
    record, _ = await market.transactions.create(new_transaction())
    return await market.transactions.record_payment(record.transaction_id)


def room_of(record: TransactionRecord, config: Config) -> Room:
    admins = (UserId(ADMIN),)
    return Room(RoomKind.TRANSACTION, record, None, room_context(record, config.bot_mxid, admins))


_event_ids = iter(range(1, 1_000_000))


def event(
    room_id: str,
    sender: str,
    content: dict[str, Any],
    *,
    type_: str = "m.room.message",
    state_key: str | None = None,
    ts: int,
) -> dict[str, Any]:
    result = {
        "type": type_,
        "event_id": f"$judged{next(_event_ids)}",
        "room_id": room_id,
        "sender": sender,
        "origin_server_ts": ts,
        "content": content,
    }
    if state_key is not None:
        result["state_key"] = state_key
    return result


def text(body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body}


async def judge(
    db: Database, enforcer: Enforcer, judged: dict[str, Any], room: Room, now: int
) -> Enforcement:
    async with db.acquire() as conn, conn.transaction():
        return await enforcer.judge(conn, judged, room, now)


async def record(
    db: Database, enforcer: Enforcer, room_id: RoomId, enforcement: Enforcement, now: int
) -> None:
    writes = Writes()
    await enforcer.record(writes, room_id, enforcement, now)
    async with db.acquire() as conn, conn.transaction():
        await writes.run(conn)


async def store_in_inbox(db: Database, stored: dict[str, Any]) -> None:
    """As the intake stores an event before the inbox worker judges it."""
    await db.execute(
        "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
        " event_json, status, txn_id, received_at) VALUES ($1, $2, $3, $4, $5, $6, 'done',"
        " 'txn', $5)",
        stored["event_id"],
        stored["room_id"],
        stored["type"],
        stored["sender"],
        stored["origin_server_ts"],
        json.dumps(stored),
    )


async def earlier_messages(db: Database, room_id: str, sender: str, timestamps: list[int]) -> None:
    for ts in timestamps:
        await store_in_inbox(db, event(room_id, sender, text("hi"), ts=ts))


def kinds(enforcement: Enforcement) -> list[ActionKind]:
    return [action.kind for action in enforcement.actions]


# --- members ---------------------------------------------------------------------------------


@pytest.mark.parametrize("membership", ["join", "knock"])
async def test_an_outsider_joining_or_knocking_is_planned_a_kick(
    db: Database,
    enforcer: Enforcer,
    paid: TransactionRecord,
    config: Config,
    clock: FakeClock,
    membership: str,
) -> None:
    room_id = paid.room_id
    arrival = event(
        room_id,
        STRANGER,
        {"membership": membership},
        type_="m.room.member",
        state_key=STRANGER,
        ts=clock.now_ms(),
    )
    result = await judge(db, enforcer, arrival, room_of(paid, config), clock.now_ms())
    assert result.actions == [
        PlannedAction(
            f"kick:{arrival['event_id']}",
            room_id,
            ActionKind.KICK,
            {"user_id": STRANGER, "reason": NOT_ALLOWED},
        )
    ]
    assert result.notifications == [] and result.audits == [] and not result.withhold


@pytest.mark.parametrize("member", [BUYER, SELLER, ADMIN])
async def test_a_party_or_admin_joining_is_left_alone(
    db: Database,
    enforcer: Enforcer,
    paid: TransactionRecord,
    config: Config,
    clock: FakeClock,
    member: str,
) -> None:
    arrival = event(
        paid.room_id,
        member,
        {"membership": "join"},
        type_="m.room.member",
        state_key=member,
        ts=clock.now_ms(),
    )
    assert await judge(db, enforcer, arrival, room_of(paid, config), clock.now_ms()) == NOTHING


async def test_an_outsider_leaving_is_not_kicked(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    leaving = event(
        paid.room_id,
        STRANGER,
        {"membership": "leave"},
        type_="m.room.member",
        state_key=STRANGER,
        ts=clock.now_ms(),
    )
    assert await judge(db, enforcer, leaving, room_of(paid, config), clock.now_ms()) == NOTHING


async def test_a_party_joining_the_management_room_is_kicked_an_admin_is_not(
    db: Database, enforcer: Enforcer, matrix: FakeMatrix, clock: FakeClock
) -> None:
    room_id = matrix.make_room()
    management = Room(RoomKind.MANAGEMENT)

    def joining(user: str) -> dict[str, Any]:
        return event(
            room_id,
            user,
            {"membership": "join"},
            type_="m.room.member",
            state_key=user,
            ts=clock.now_ms(),
        )

    party = await judge(db, enforcer, joining(BUYER), management, clock.now_ms())
    assert [(a.kind, a.params["user_id"]) for a in party.actions] == [(ActionKind.KICK, BUYER)]
    assert await judge(db, enforcer, joining(ADMIN), management, clock.now_ms()) == NOTHING


# --- state -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "content", "sender"),
    [
        ("m.room.power_levels", {"users": {BUYER: 100}}, BUYER),
        ("m.room.topic", {"topic": "DM me"}, ADMIN),
        ("m.room.join_rules", {"join_rule": "public"}, SELLER),
    ],
)
async def test_a_planned_state_change_by_anyone_but_the_bot_plans_a_repair(
    db: Database,
    enforcer: Enforcer,
    paid: TransactionRecord,
    config: Config,
    clock: FakeClock,
    type_: str,
    content: dict[str, Any],
    sender: str,
) -> None:
    change = event(paid.room_id, sender, content, type_=type_, state_key="", ts=clock.now_ms())
    result = await judge(db, enforcer, change, room_of(paid, config), clock.now_ms())
    event_id = change["event_id"]
    assert result.actions == [
        PlannedAction(
            f"repair:{event_id}", paid.room_id, ActionKind.REPAIR, {"event_id": event_id}
        )
    ]
    assert result.notifications == [] and result.audits == []


async def test_the_bots_own_state_change_needs_no_repair(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    change = event(
        paid.room_id,
        config.bot_mxid,
        {"topic": "new"},
        type_="m.room.topic",
        state_key="",
        ts=clock.now_ms(),
    )
    assert await judge(db, enforcer, change, room_of(paid, config), clock.now_ms()) == NOTHING


async def test_unplanned_state_is_neither_repaired_nor_judged_as_a_message(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    # Not a state type the plans set, and it carries a phone number: state is not content.
    change = event(
        paid.room_id,
        BUYER,
        {"body": PHONE},
        type_="com.example.note",
        state_key="",
        ts=clock.now_ms(),
    )
    assert await judge(db, enforcer, change, room_of(paid, config), clock.now_ms()) == NOTHING


async def test_a_state_change_in_the_management_room_plans_a_repair(
    db: Database, enforcer: Enforcer, matrix: FakeMatrix, clock: FakeClock
) -> None:
    room_id = matrix.make_room()
    change = event(
        room_id, ADMIN, {"name": "mine"}, type_="m.room.name", state_key="", ts=clock.now_ms()
    )
    result = await judge(db, enforcer, change, Room(RoomKind.MANAGEMENT), clock.now_ms())
    assert kinds(result) == [ActionKind.REPAIR]


# --- content ---------------------------------------------------------------------------------


async def test_a_phone_number_from_a_party_is_redacted_warned_about_and_alerted(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    now = clock.now_ms()
    message = event(paid.room_id, BUYER, text(PHONE), ts=now)
    await store_in_inbox(db, message)
    result = await judge(db, enforcer, message, room_of(paid, config), now)
    event_id = message["event_id"]

    assert result.withhold and result.broken_rules == ("contact_details",)
    assert kinds(result) == [ActionKind.REDACT, ActionKind.WARN, ActionKind.ALERT]
    redact, warn, alert = result.actions
    assert redact.key == f"redact:{event_id}" and redact.params["event_id"] == event_id
    assert redact.params["rule"] == "contact_details"
    assert warn.params["user_id"] == BUYER and warn.params["redacted"] is True
    assert warn.params["muted_for_s"] == 0
    assert BUYER in alert.params["text"] and "transaction order-1" in alert.params["text"]
    assert all(a.room_id == paid.room_id and a.due_at == 0 for a in result.actions)
    assert result.mute is None

    (notification,) = result.notifications
    assert notification.type == "policy.violation"
    data = notification.data
    assert data["event_id"] == event_id and data["transaction_id"] == "order-1"
    assert data["sender"]["matrix_id"] == BUYER
    assert data["actions"] == ["redact", "warn", "alert"]
    assert [v["rule"] for v in data["violations"]] == ["contact_details"]
    assert "phone" in data["violations"][0]["findings"]
    assert "7911" not in json.dumps(data)  # never the contact details themselves

    (audit,) = result.audits
    assert (audit.action, audit.subject, audit.reason) == (
        "policy.violation",
        BUYER,
        "contact_details",
    )
    assert audit.actor == config.bot_mxid and event_id in audit.detail


async def test_a_forbidden_file_type_is_redacted_and_warned_about(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    content = {
        "msgtype": "m.file",
        "body": "invoice.exe",
        "url": "mxc://localhost/x",
        "info": {"mimetype": "application/x-msdownload", "size": 1000},
    }
    message = event(paid.room_id, SELLER, content, ts=clock.now_ms())
    await store_in_inbox(db, message)
    result = await judge(db, enforcer, message, room_of(paid, config), clock.now_ms())
    assert result.broken_rules == ("media_type",) and result.withhold
    assert kinds(result) == [ActionKind.REDACT, ActionKind.WARN]
    assert result.actions[1].params["user_id"] == SELLER
    # The reason names the rule, never the type the sender chose (the bot repeats it).
    assert result.actions[0].params["reason"] == "this type of file is not allowed here"


async def test_an_allowed_file_type_passes(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    content = {
        "msgtype": "m.file",
        "body": "receipt.pdf",
        "url": "mxc://localhost/x",
        "info": {"mimetype": "application/pdf", "size": 1000},
    }
    message = event(paid.room_id, SELLER, content, ts=clock.now_ms())
    await store_in_inbox(db, message)
    assert await judge(db, enforcer, message, room_of(paid, config), clock.now_ms()) == NOTHING


@pytest.mark.parametrize("sender", [ADMIN, "@marketbot:localhost"])
async def test_admins_and_the_bot_are_exempt_from_content_rules(
    db: Database,
    enforcer: Enforcer,
    paid: TransactionRecord,
    config: Config,
    clock: FakeClock,
    sender: str,
) -> None:
    assert sender in (ADMIN, config.bot_mxid)
    message = event(paid.room_id, sender, text(PHONE), ts=clock.now_ms())
    await store_in_inbox(db, message)
    assert await judge(db, enforcer, message, room_of(paid, config), clock.now_ms()) == NOTHING


async def test_a_clean_message_changes_nothing(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    message = event(paid.room_id, BUYER, text("Is the bike still available?"), ts=clock.now_ms())
    await store_in_inbox(db, message)
    assert await judge(db, enforcer, message, room_of(paid, config), clock.now_ms()) == NOTHING


async def test_contact_details_are_allowed_once_the_transaction_is_closed(
    db: Database,
    enforcer: Enforcer,
    market: Market,
    paid: TransactionRecord,
    config: Config,
    clock: FakeClock,
) -> None:
    closed = await market.transactions.close(paid.transaction_id, Outcome.COMPLETED)
    message = event(paid.room_id, BUYER, text(PHONE), ts=clock.now_ms())
    await store_in_inbox(db, message)
    assert await judge(db, enforcer, message, room_of(closed, config), clock.now_ms()) == NOTHING


async def test_a_message_in_the_management_room_is_not_judged(
    db: Database, enforcer: Enforcer, matrix: FakeMatrix, clock: FakeClock
) -> None:
    room_id = matrix.make_room()
    message = event(room_id, BUYER, text(PHONE), ts=clock.now_ms())
    await store_in_inbox(db, message)
    result = await judge(db, enforcer, message, Room(RoomKind.MANAGEMENT), clock.now_ms())
    assert result == NOTHING


async def test_a_violation_in_a_dispute_room_is_reported_for_the_dispute(
    db: Database,
    enforcer: Enforcer,
    market: Market,
    paid: TransactionRecord,
    config: Config,
    clock: FakeClock,
) -> None:
    dispute, _ = await market.disputes.open(
        NewDispute(DisputeId("dispute-1"), paid.transaction_id, "never arrived", "buyer")
    )
    transaction = await market.transactions.get(paid.transaction_id)
    context = room_context(transaction, config.bot_mxid, (UserId(ADMIN),), dispute)
    room = Room(RoomKind.DISPUTE, transaction, dispute, context)
    message = event(dispute.room_id, SELLER, text(PHONE), ts=clock.now_ms())
    await store_in_inbox(db, message)
    result = await judge(db, enforcer, message, room, clock.now_ms())
    (notification,) = result.notifications
    assert notification.data["room_kind"] == "dispute"
    assert notification.data["dispute_id"] == "dispute-1"
    alert = next(a for a in result.actions if a.kind is ActionKind.ALERT)
    assert "dispute dispute-1" in alert.params["text"]


# --- flood -----------------------------------------------------------------------------------


async def test_a_flood_mutes_the_sender_and_plans_the_unmute_when_the_mute_ends(
    db: Database,
    enforcer: Enforcer,
    paid: TransactionRecord,
    config: Config,
    clock: FakeClock,
    rows: Rows,
) -> None:
    now = clock.now_ms()
    room_id = paid.room_id
    await earlier_messages(db, room_id, BUYER, [now - 9_000, now - 5_000, now - 1_000])
    message = event(room_id, BUYER, text("hello?"), ts=now)
    await store_in_inbox(db, message)  # the fourth in 10 s: over the limit of 3
    result = await judge(db, enforcer, message, room_of(paid, config), now)
    event_id = message["event_id"]

    assert result.broken_rules == ("flood",)
    assert not result.withhold  # a flood is not redacted
    assert kinds(result) == [ActionKind.MUTE, ActionKind.UNMUTE, ActionKind.WARN, ActionKind.ALERT]
    mute, unmute, warn, _ = result.actions
    assert mute.key == f"mute:{event_id}" and mute.due_at == 0
    assert mute.params == {"user_id": BUYER, "until": now + MUTE_MS, "rule": "flood"}
    assert unmute.key == f"unmute:{event_id}" and unmute.due_at == now + MUTE_MS
    assert unmute.params == {"user_id": BUYER}
    assert warn.params["muted_for_s"] == 60 and warn.params["redacted"] is False
    assert result.mute == (BUYER, now + MUTE_MS)

    await record(db, enforcer, room_id, result, now)
    mutes = await db.fetch("SELECT room_id, user_id, until FROM mutes")
    assert [dict(row) for row in mutes] == [
        {"room_id": room_id, "user_id": BUYER, "until": now + MUTE_MS}
    ]
    planned = {row["kind"]: row for row in await rows.planned()}
    assert planned["unmute"]["due_at"] == now + MUTE_MS and planned["mute"]["due_at"] == now


async def test_the_flood_limit_itself_is_not_a_flood(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    now = clock.now_ms()
    await earlier_messages(db, paid.room_id, BUYER, [now - 5_000, now - 1_000])
    message = event(paid.room_id, BUYER, text("hello?"), ts=now)
    await store_in_inbox(db, message)  # the third in 10 s: at the limit
    assert await judge(db, enforcer, message, room_of(paid, config), now) == NOTHING


async def test_messages_before_the_window_or_from_others_do_not_count_towards_a_flood(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    now = clock.now_ms()
    room_id = paid.room_id
    await earlier_messages(db, room_id, BUYER, [now - 10_000, now - 20_000, now - 30_000])
    await earlier_messages(db, room_id, SELLER, [now - 3_000, now - 2_000, now - 1_000])
    message = event(room_id, BUYER, text("hello?"), ts=now)
    await store_in_inbox(db, message)
    assert await judge(db, enforcer, message, room_of(paid, config), now) == NOTHING


async def test_a_sender_already_muted_is_not_punished_twice_for_the_flood(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    now = clock.now_ms()
    room_id = paid.room_id
    await db.execute(
        "INSERT INTO mutes (room_id, user_id, until) VALUES ($1, $2, $3)",
        room_id,
        BUYER,
        now + 30_000,
    )
    await earlier_messages(db, room_id, BUYER, [now - 3_000, now - 2_000, now - 1_000])
    message = event(room_id, BUYER, text("in flight"), ts=now)
    await store_in_inbox(db, message)
    assert await judge(db, enforcer, message, room_of(paid, config), now) == NOTHING


async def test_a_mute_that_ran_out_does_not_shield_a_new_flood(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, config: Config, clock: FakeClock
) -> None:
    now = clock.now_ms()
    room_id = paid.room_id
    await db.execute(
        "INSERT INTO mutes (room_id, user_id, until) VALUES ($1, $2, $3)", room_id, BUYER, now
    )
    await earlier_messages(db, room_id, BUYER, [now - 3_000, now - 2_000, now - 1_000])
    message = event(room_id, BUYER, text("again"), ts=now)
    await store_in_inbox(db, message)
    result = await judge(db, enforcer, message, room_of(paid, config), now)
    assert result.broken_rules == ("flood",) and result.mute == (BUYER, now + MUTE_MS)


async def test_a_flood_in_a_room_not_yet_open_is_not_punished(
    db: Database,
    enforcer: Enforcer,
    market: Market,
    config: Config,
    clock: FakeClock,
) -> None:
    unpaid, _ = await market.transactions.create(new_transaction("order-2"))
    now = clock.now_ms()
    await earlier_messages(db, unpaid.room_id, BUYER, [now - 3_000, now - 2_000, now - 1_000])
    message = event(unpaid.room_id, BUYER, text("hello?"), ts=now)
    await store_in_inbox(db, message)
    assert await judge(db, enforcer, message, room_of(unpaid, config), now) == NOTHING


# --- record ----------------------------------------------------------------------------------


async def test_record_writes_the_audit_entry_and_the_planned_actions(
    db: Database,
    enforcer: Enforcer,
    paid: TransactionRecord,
    config: Config,
    clock: FakeClock,
    rows: Rows,
) -> None:
    now = clock.now_ms()
    message = event(paid.room_id, BUYER, text(PHONE), ts=now)
    await store_in_inbox(db, message)
    result = await judge(db, enforcer, message, room_of(paid, config), now)
    await record(db, enforcer, paid.room_id, result, now)

    (audit,) = await rows.audit("policy.violation")
    assert (audit["subject"], audit["reason"], audit["at"]) == (BUYER, "contact_details", now)
    assert audit["transaction_id"] == "order-1"  # found from the room
    planned = await rows.planned()
    assert [row["kind"] for row in planned] == ["redact", "warn", "alert"]
    assert all(row["status"] == "pending" and row["due_at"] == now for row in planned)
    assert json.loads(planned[0]["params"])["event_id"] == message["event_id"]
    assert await db.fetch("SELECT * FROM mutes") == []


async def test_planning_the_same_key_twice_plans_it_once(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, clock: FakeClock, rows: Rows
) -> None:
    room_id = paid.room_id
    first = PlannedAction("kick:$e1", room_id, ActionKind.KICK, {"user_id": STRANGER})
    again = PlannedAction("kick:$e1", room_id, ActionKind.KICK, {"user_id": "@other:localhost"})
    await record(db, enforcer, room_id, Enforcement(actions=[first]), clock.now_ms())
    clock.advance(5)
    await record(db, enforcer, room_id, Enforcement(actions=[again]), clock.now_ms())
    (row,) = await rows.planned()
    assert json.loads(row["params"]) == {"user_id": STRANGER}
    assert row["created_at"] == clock.now_ms() - 5_000


async def test_a_shorter_mute_never_cuts_a_longer_one_short(
    db: Database, enforcer: Enforcer, paid: TransactionRecord, clock: FakeClock
) -> None:
    room_id, now = paid.room_id, clock.now_ms()
    await record(db, enforcer, room_id, Enforcement(mute=(BUYER, now + 120_000)), now)
    await record(db, enforcer, room_id, Enforcement(mute=(BUYER, now + 60_000)), now)
    assert await db.fetchval("SELECT until FROM mutes WHERE user_id = $1", BUYER) == now + 120_000
    await record(db, enforcer, room_id, Enforcement(mute=(BUYER, now + 180_000)), now)
    assert await db.fetchval("SELECT until FROM mutes WHERE user_id = $1", BUYER) == now + 180_000


@pytest.mark.parametrize("length", [10, 63, 64, 65, 300])
def test_masking_is_the_same_every_time_whatever_the_length(enforcer: Enforcer, length: int):
    """Short texts' masking is kept and reused: the kept answer is the masked text, every time,
    for short and long texts alike."""
    number = "call 07700 900123"
    text = number + "." * (length - len(number))
    first, again = enforcer.mask(text), enforcer.mask(text)
    assert "900123" not in first and first == again
    assert enforcer.mask("m.text") == "m.text"
