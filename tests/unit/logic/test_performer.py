"""The action performer: each kind of planned action carried out against the fake homeserver."""

from __future__ import annotations

import pytest
from mautrix.util.async_db import Database

from appservice.matrix import HomeserverUnavailable, MatrixError, txn_id
from bridge.market import Market
from bridge.market.models import TransactionRecord
from bridge.market.records.audit import AuditEntry
from bridge.market.records.mutes import add_mute
from bridge.policybot.actions import ActionKind, PlannedAction
from bridge.policybot.performer import ActionPerformer
from policy.ids import RoomId, UserId
from policy.rooms import MUTED_LEVEL

from .conftest import ADMIN, BUYER, SELLER, Rows, build_performer, new_transaction
from .fakes import FakeClock, FakeMatrix

PHONE = "call me on +44 7911 123456"
BOT = "@marketbot:localhost"
MUTE_MS = 60_000


@pytest.fixture
def performer(
    market: Market, matrix: FakeMatrix, db: Database, clock: FakeClock
) -> ActionPerformer:
    """Built as `bridge.app` builds it."""
    return build_performer(market, matrix, db, clock)


@pytest.fixture
async def paid(market: Market, matrix: FakeMatrix) -> TransactionRecord:
    """A paid transaction whose parties have joined its (open) room."""
    record, _ = await market.transactions.create(new_transaction())
    record = await market.transactions.record_payment(record.transaction_id)
    members = matrix.rooms[record.room_id].members
    members[BUYER] = members[SELLER] = "join"
    matrix.forget_calls()
    return record


async def mute(db: Database, room_id: RoomId, user_id: str, until: int) -> None:
    """As `Enforcer.record` writes a mute."""
    async with db.acquire() as conn, conn.transaction():
        await add_mute(conn, room_id, UserId(user_id), until)


def users_levels(matrix: FakeMatrix, room_id: RoomId) -> dict[str, int]:
    return matrix.state_of(room_id, "m.room.power_levels")["users"]


def mute_action(room_id: RoomId, until: int) -> PlannedAction:
    return PlannedAction(
        "mute:$flood",
        room_id,
        ActionKind.MUTE,
        {"user_id": BUYER, "until": until, "rule": "flood"},
    )


def unmute_action(room_id: RoomId, due_at: int) -> PlannedAction:
    return PlannedAction("unmute:$flood", room_id, ActionKind.UNMUTE, {"user_id": BUYER}, due_at)


def alert_action(room_id: RoomId, key: str = "alert:$e1") -> PlannedAction:
    return PlannedAction(
        key,
        room_id,
        ActionKind.ALERT,
        {
            "user_id": BUYER,
            "text": "Policy: @buyer:localhost broke contact_details in transaction order-1",
            "rule": "contact_details",
        },
    )


# --- redact ----------------------------------------------------------------------------------


async def test_redact_removes_the_message_with_a_txn_id_derived_from_the_key(
    performer: ActionPerformer, paid: TransactionRecord, matrix: FakeMatrix
) -> None:
    room_id = paid.room_id
    event_id = matrix.post(room_id, BUYER, {"msgtype": "m.text", "body": PHONE})
    action = PlannedAction(
        f"redact:{event_id}",
        room_id,
        ActionKind.REDACT,
        {"event_id": event_id, "rule": "contact_details", "reason": "no contact details"},
    )
    entry = await performer.perform(action)
    (call,) = matrix.called("redact")
    assert call.args == (room_id, event_id, "no contact details", txn_id("policy", action.key))
    original = next(e for e in matrix.rooms[room_id].timeline if e["event_id"] == event_id)
    assert original["content"] == {}
    assert entry == AuditEntry(
        BOT,
        "message.redacted",
        room_id,
        subject=event_id,
        reason="contact_details",
        detail="no contact details",
    )


async def test_redacting_again_after_a_crash_reuses_the_same_txn_id(
    performer: ActionPerformer, paid: TransactionRecord, matrix: FakeMatrix
) -> None:
    event_id = matrix.post(paid.room_id, BUYER, {"msgtype": "m.text", "body": PHONE})
    params = {"event_id": event_id, "rule": "contact_details", "reason": "r"}
    action = PlannedAction(f"redact:{event_id}", paid.room_id, ActionKind.REDACT, params)
    other = PlannedAction("redact:$other", paid.room_id, ActionKind.REDACT, params)
    await performer.perform(action)
    await performer.perform(action)
    await performer.perform(other)
    first, again, different = (call[3] for call in matrix.called("redact"))
    assert first == again != different


# --- warn ------------------------------------------------------------------------------------


async def test_warn_sends_a_notice_mentioning_the_user_without_quoting_the_message(
    performer: ActionPerformer, paid: TransactionRecord, matrix: FakeMatrix
) -> None:
    room_id = paid.room_id
    matrix.post(room_id, BUYER, {"msgtype": "m.text", "body": PHONE})
    reason = "contact details and payment outside the marketplace are not allowed"
    action = PlannedAction(
        "warn:$e1",
        room_id,
        ActionKind.WARN,
        {
            "user_id": BUYER,
            "rules": ["contact_details"],
            "reasons": [reason],
            "redacted": True,
            "muted_for_s": 0,
        },
    )
    entry = await performer.perform(action)
    (call,) = matrix.called("send_message")
    assert call[1] == "m.room.message" and call[3] == txn_id("policy", "warn:$e1")
    content = call[2]
    assert content["msgtype"] == "m.notice"
    assert content["m.mentions"] == {"user_ids": [BUYER]}
    assert content["body"].startswith(f"{BUYER}: your message was removed")
    assert reason in content["body"]
    assert "7911" not in content["body"] and "7911" not in content["formatted_body"]
    assert entry is not None
    assert (entry.action, entry.subject, entry.reason, entry.detail) == (
        "user.warned",
        BUYER,
        "contact_details",
        content["body"],
    )


async def test_a_warning_tells_a_muted_user_how_long_and_is_sent_once(
    performer: ActionPerformer, paid: TransactionRecord, matrix: FakeMatrix
) -> None:
    action = PlannedAction(
        "warn:$flood",
        paid.room_id,
        ActionKind.WARN,
        {
            "user_id": SELLER,
            "rules": ["flood"],
            "reasons": ["more than 3 messages in 10 s"],
            "redacted": False,
            "muted_for_s": 60,
        },
    )
    await performer.perform(action)
    await performer.perform(action)  # carried out again after a crash
    warnings = [m for m in matrix.messages_in(paid.room_id) if SELLER in m["body"]]
    (warning,) = warnings
    assert "please keep to the marketplace's rules" in warning["body"]
    assert "You are muted for 1 min." in warning["body"]


# --- kick ------------------------------------------------------------------------------------


async def test_kick_removes_the_user_and_says_so(
    performer: ActionPerformer, paid: TransactionRecord, matrix: FakeMatrix
) -> None:
    room_id = paid.room_id
    matrix.rooms[room_id].members["@stranger:localhost"] = "join"
    action = PlannedAction(
        "kick:$e1",
        room_id,
        ActionKind.KICK,
        {"user_id": "@stranger:localhost", "reason": "not a party or an admin of this room"},
    )
    entry = await performer.perform(action)
    assert matrix.rooms[room_id].members["@stranger:localhost"] == "leave"
    (call,) = matrix.called("kick")
    assert call.args == (room_id, "@stranger:localhost", "not a party or an admin of this room")
    assert entry == AuditEntry(
        BOT,
        "member.removed",
        room_id,
        subject="@stranger:localhost",
        reason="not a party or an admin of this room",
    )


# --- mute and unmute -------------------------------------------------------------------------


async def test_mute_puts_the_user_at_power_level_minus_one(
    performer: ActionPerformer,
    paid: TransactionRecord,
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
    rows: Rows,
) -> None:
    room_id, until = paid.room_id, clock.now_ms() + MUTE_MS
    assert BUYER not in users_levels(matrix, room_id)
    await mute(db, room_id, BUYER, until)
    entry = await performer.perform(mute_action(room_id, until))
    levels = users_levels(matrix, room_id)
    assert levels[BUYER] == MUTED_LEVEL == -1
    assert SELLER not in levels and levels[ADMIN] == 50
    assert entry is not None
    assert (entry.action, entry.subject, entry.reason) == ("user.muted", BUYER, "flood")
    assert entry.detail == "power level -1 until 2027-01-15T08:01:00+00:00"
    assert await rows.audit("state.repaired") == []  # a change of plan, not a repair


async def test_unmute_lifts_a_mute_that_ran_out_and_restores_the_users_level(
    performer: ActionPerformer,
    paid: TransactionRecord,
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
) -> None:
    room_id, until = paid.room_id, clock.now_ms() + MUTE_MS
    await mute(db, room_id, BUYER, until)
    await performer.perform(mute_action(room_id, until))
    clock.advance(MUTE_MS / 1000)
    entry = await performer.perform(unmute_action(room_id, until))
    assert BUYER not in users_levels(matrix, room_id)
    assert await db.fetch("SELECT * FROM mutes") == []
    assert entry == AuditEntry(
        BOT, "user.unmuted", room_id, subject=BUYER, reason="the mute ran out"
    )


async def test_unmute_does_nothing_when_the_mute_was_extended(
    performer: ActionPerformer,
    paid: TransactionRecord,
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
) -> None:
    room_id, until = paid.room_id, clock.now_ms() + MUTE_MS
    await mute(db, room_id, BUYER, until)
    await performer.perform(mute_action(room_id, until))
    clock.advance(30)
    await mute(db, room_id, BUYER, until + 30_000)  # a second flood extends the mute
    clock.advance(30)
    matrix.forget_calls()
    assert await performer.perform(unmute_action(room_id, until)) is None
    assert users_levels(matrix, room_id)[BUYER] == MUTED_LEVEL
    assert not matrix.called("send_state")
    assert await db.fetchval("SELECT until FROM mutes") == until + 30_000


async def test_an_unmute_retried_after_the_homeserver_failed_still_restores_the_user(
    performer: ActionPerformer,
    paid: TransactionRecord,
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
) -> None:
    room_id, until = paid.room_id, clock.now_ms() + MUTE_MS
    await mute(db, room_id, BUYER, until)
    await performer.perform(mute_action(room_id, until))
    clock.advance(MUTE_MS / 1000)
    # The first attempt lifts the mute row, then cannot reach the homeserver.
    matrix.fail("room_state", HomeserverUnavailable("503"))
    with pytest.raises(HomeserverUnavailable):
        await performer.perform(unmute_action(room_id, until))
    entry = await performer.perform(unmute_action(room_id, until))
    assert BUYER not in users_levels(matrix, room_id)
    assert entry is not None and entry.action == "user.unmuted"


# --- repair ----------------------------------------------------------------------------------


async def test_repair_puts_a_drifted_room_back_and_the_reconciler_audits_it(
    performer: ActionPerformer, paid: TransactionRecord, matrix: FakeMatrix, rows: Rows
) -> None:
    room_id = paid.room_id
    state = matrix.rooms[room_id].state
    levels = matrix.state_of(room_id, "m.room.power_levels")
    state[("m.room.power_levels", "")] = {**levels, "users": {BUYER: 100}}
    state[("m.room.topic", "")] = {"topic": "DM me"}
    action = PlannedAction("repair:$e1", room_id, ActionKind.REPAIR, {"event_id": "$e1"})
    assert await performer.perform(action) is None
    assert matrix.state_of(room_id, "m.room.power_levels") == levels
    assert matrix.state_of(room_id, "m.room.topic")["topic"] != "DM me"
    (repair,) = await rows.audit("state.repaired")
    assert repair["detail"] == "m.room.topic, m.room.power_levels"


async def test_repair_leaves_a_room_on_its_plan_alone(
    performer: ActionPerformer, paid: TransactionRecord, matrix: FakeMatrix, rows: Rows
) -> None:
    action = PlannedAction("repair:$e1", paid.room_id, ActionKind.REPAIR, {"event_id": "$e1"})
    assert await performer.perform(action) is None
    assert matrix.called("room_state") and not matrix.called("send_state")
    assert await rows.audit("state.repaired") == []


# --- alert -----------------------------------------------------------------------------------


async def test_alert_posts_in_the_management_room_once(
    performer: ActionPerformer, paid: TransactionRecord, market: Market, matrix: FakeMatrix
) -> None:
    management = await market.management.ensure()
    assert management is not None and management != paid.room_id
    before = len(matrix.messages_in(paid.room_id))
    action = alert_action(paid.room_id)
    entry = await performer.perform(action)
    await performer.perform(action)  # carried out again after a crash
    (alert,) = matrix.messages_in(management)
    assert alert["body"] == action.params["text"] and alert["msgtype"] == "m.notice"
    assert len(matrix.messages_in(paid.room_id)) == before
    assert entry == AuditEntry(
        BOT,
        "admins.alerted",
        paid.room_id,
        subject=BUYER,
        reason="contact_details",
        detail=action.params["text"],
    )
    await performer.perform(alert_action(paid.room_id, "alert:$e2"))
    assert len(matrix.messages_in(management)) == 2


async def test_alert_without_a_management_room_does_nothing(
    performer: ActionPerformer, paid: TransactionRecord, market: Market, matrix: FakeMatrix
) -> None:
    assert market.management.room_id is None
    assert await performer.perform(alert_action(paid.room_id)) is None
    assert not matrix.called("send_message")


# --- errors ----------------------------------------------------------------------------------


async def test_the_homeserver_unavailable_is_raised_for_a_retry(
    performer: ActionPerformer, paid: TransactionRecord, matrix: FakeMatrix
) -> None:
    matrix.down = True
    action = PlannedAction(
        "kick:$e1", paid.room_id, ActionKind.KICK, {"user_id": "@x:localhost", "reason": "r"}
    )
    with pytest.raises(HomeserverUnavailable):
        await performer.perform(action)


async def test_a_refusal_is_raised_as_a_matrix_error(
    performer: ActionPerformer, paid: TransactionRecord, matrix: FakeMatrix
) -> None:
    matrix.fail("redact", MatrixError(403, "M_FORBIDDEN", "not allowed"))
    params = {"event_id": "$e1", "rule": "contact_details", "reason": "r"}
    action = PlannedAction("redact:$e1", paid.room_id, ActionKind.REDACT, params)
    with pytest.raises(MatrixError) as raised:
        await performer.perform(action)
    assert raised.value.errcode == "M_FORBIDDEN"
