"""Transactions: create, pay and close, the transition loop, races, and the chat list."""

from __future__ import annotations

import json

import pytest

from appservice.matrix import HomeserverUnavailable
from bridge.market import Market
from bridge.market.errors import Conflict, InvalidRequest, InvalidState, NotFound
from bridge.market.models import NewDispute, NewTransaction, Party, Resolution
from bridge.market.transitions import settle
from bridge.runtime.workers import Wakeups
from policy.ids import DisputeId, MarketUserId, TransactionId, UserId
from policy.rooms import EVENTS_DEFAULT
from policy.states import Access, DisputeState, InvalidTransition, Outcome, TransactionState

from .conftest import BUYER, SELLER, Rows, new_transaction
from .fakes import FakeClock, FakeMatrix

ORDER = TransactionId("order-1")


def data(row: dict) -> dict:
    return json.loads(row["body"])["data"]


def events_default(matrix: FakeMatrix, room_id: str) -> int:
    return matrix.state_of(room_id, "m.room.power_levels")["events_default"]


async def open_dispute(market: Market, dispute_id: str = "d-1") -> None:
    await market.disputes.open(
        NewDispute(DisputeId(dispute_id), ORDER, "Item not as described", "buyer")
    )


async def transaction_count(db) -> int:
    return await db.fetchval("SELECT COUNT(*) FROM transactions")


# --- create ---------------------------------------------------------------------------------


async def test_create_answers_created_then_the_identical_repeat_answers_the_same_room(
    market: Market, matrix: FakeMatrix
) -> None:
    record, created = await market.transactions.create(new_transaction())
    again, created_again = await market.transactions.create(new_transaction())
    assert created and not created_again
    assert again.room_id == record.room_id and again.state is TransactionState.AWAITING_PAYMENT
    assert len(matrix.called("create_room")) == 1
    assert market.transactions.access(again) is Access.LOCKED


async def test_the_same_id_with_other_content_is_a_conflict_naming_the_fields(
    market: Market, matrix: FakeMatrix
) -> None:
    await market.transactions.create(new_transaction())
    matrix.add_user("@carol:localhost")
    other = new_transaction(title="Racing bike", seller="@carol:localhost")
    with pytest.raises(Conflict) as raised:
        await market.transactions.create(other)
    assert raised.value.fields == ["title", "seller"]
    record = await market.transactions.get(ORDER)
    assert record.title == "Vintage bike" and record.seller.matrix_id == SELLER


async def test_a_marketplace_user_bound_to_another_matrix_id_is_a_conflict(
    market: Market, matrix: FakeMatrix, db
) -> None:
    await market.transactions.create(new_transaction())
    carol = matrix.add_user("@carol:localhost")
    rebound = NewTransaction(
        TransactionId("order-2"),
        "Lamp",
        Party(MarketUserId("u-buyer"), carol),  # u-buyer is @buyer's for good
        Party(MarketUserId("u-seller"), UserId(SELLER)),
    )
    with pytest.raises(Conflict) as raised:
        await market.transactions.create(rebound)
    assert raised.value.fields == ["buyer.user_id", "buyer.matrix_id"]
    assert await transaction_count(db) == 1
    assert len(matrix.called("create_room")) == 1


async def test_a_matrix_id_bound_to_another_marketplace_user_is_a_conflict(
    market: Market, db
) -> None:
    await market.transactions.create(new_transaction())
    rebound = NewTransaction(
        TransactionId("order-2"),
        "Lamp",
        Party(MarketUserId("u-buyer"), UserId(BUYER)),
        Party(MarketUserId("u-someone-else"), UserId(SELLER)),
    )
    with pytest.raises(Conflict) as raised:
        await market.transactions.create(rebound)
    assert raised.value.fields == ["seller.user_id", "seller.matrix_id"]
    assert await transaction_count(db) == 1
    assert await db.fetchval("SELECT COUNT(*) FROM marketplace_users") == 2


async def test_a_party_on_a_server_not_allowed_is_an_invalid_request_naming_its_field(
    market: Market, matrix: FakeMatrix, db
) -> None:
    matrix.add_user("@bob:elsewhere.example")
    with pytest.raises(InvalidRequest) as raised:
        await market.transactions.create(new_transaction(seller="@bob:elsewhere.example"))
    assert raised.value.fields == ["seller.matrix_id"]
    assert "not on an allowed server" in raised.value.message
    assert not matrix.called("create_room") and not matrix.called("user_exists")
    assert await transaction_count(db) == 0


async def test_the_bot_as_a_party_is_an_invalid_request(
    market: Market, matrix: FakeMatrix, db
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await market.transactions.create(new_transaction(buyer=matrix.user_id))
    assert raised.value.fields == ["buyer.matrix_id"]
    assert "the bot cannot be a party" in raised.value.message
    assert await transaction_count(db) == 0


async def test_a_party_the_homeserver_does_not_know_is_an_invalid_request(
    market: Market, matrix: FakeMatrix, db
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await market.transactions.create(new_transaction(seller="@ghost:localhost"))
    assert raised.value.fields == ["seller.matrix_id"]
    assert "does not exist on the homeserver" in raised.value.message
    assert not matrix.called("create_room")
    assert await transaction_count(db) == 0


async def test_an_unknown_transaction_is_not_found(market: Market) -> None:
    with pytest.raises(NotFound):
        await market.transactions.get(TransactionId("nope"))
    with pytest.raises(NotFound):
        await market.transactions.record_payment(TransactionId("nope"))
    with pytest.raises(NotFound):
        await market.transactions.close(TransactionId("nope"), Outcome.COMPLETED)


# --- payment ----------------------------------------------------------------------------------


async def test_payment_opens_the_room_and_queues_room_state_changed(
    market: Market, matrix: FakeMatrix, rows: Rows, clock: FakeClock
) -> None:
    created, _ = await market.transactions.create(new_transaction())
    clock.advance(60)
    record = await market.transactions.record_payment(ORDER)
    assert record.state is TransactionState.PAID and record.paid_at == clock.now_ms()
    assert market.transactions.access(record) is Access.OPEN
    assert events_default(matrix, record.room_id) == EVENTS_DEFAULT[Access.OPEN]
    (row,) = await rows.outbox("room.state_changed")
    assert row["stream"] == created.room_id and row["status"] == "pending"
    assert data(row) == {
        "room_id": created.room_id,
        "room_kind": "transaction",
        "transaction_id": ORDER,
        "links": {"matrix_to": "https://matrix.to/#/%23market_transaction_order-1:localhost"},
        "access": "open",
        "previous_access": "locked",
        "cause": "payment",
    }


async def test_a_payment_clears_an_admins_lock_and_notifies_the_room_as_open(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await market.transactions.create(new_transaction())
    await market.moderation.set_override(ORDER, Access.LOCKED, actor="@admin:localhost")
    record = await market.transactions.record_payment(ORDER)
    assert market.transactions.access(record) is Access.OPEN
    assert events_default(matrix, record.room_id) == EVENTS_DEFAULT[Access.OPEN]
    (row,) = await rows.outbox("room.state_changed")
    assert (data(row)["previous_access"], data(row)["access"]) == ("locked", "open")


async def test_payment_is_audited_with_both_states_and_accesses(
    market: Market, rows: Rows
) -> None:
    created, _ = await market.transactions.create(new_transaction())
    await market.transactions.record_payment(ORDER)
    (entry,) = await rows.audit("room.state_changed")
    assert (entry["actor"], entry["reason"], entry["room_id"]) == (
        "marketplace",
        "payment",
        created.room_id,
    )
    assert entry["detail"] == "awaiting_payment -> paid; room locked -> open"
    assert entry["transaction_id"] == ORDER


async def test_a_repeated_payment_changes_nothing_and_the_paid_notice_is_posted_once(
    market: Market, matrix: FakeMatrix, rows: Rows, wakeups: Wakeups
) -> None:
    await market.transactions.create(new_transaction())
    first = await market.transactions.record_payment(ORDER)
    assert wakeups.outbox._event.is_set()
    wakeups.outbox.clear()
    matrix.forget_calls()
    again = await market.transactions.record_payment(ORDER)
    assert again == first
    assert not wakeups.outbox._event.is_set()
    assert not matrix.called("send_state") and not matrix.called("send_message")
    assert len(await rows.outbox("room.state_changed")) == 1
    assert len(await rows.audit("room.state_changed")) == 1
    paid = [m for m in matrix.messages_in(first.room_id) if "Payment for" in m["body"]]
    assert len(paid) == 1 and "“Vintage bike” is confirmed" in paid[0]["body"]


async def test_a_payment_whose_room_update_failed_is_completed_by_the_retry(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    created, _ = await market.transactions.create(new_transaction())
    matrix.fail("room_state", HomeserverUnavailable("503"))
    with pytest.raises(HomeserverUnavailable):
        await market.transactions.record_payment(ORDER)
    # Stored before the room was touched: the room is still locked.
    assert (await market.transactions.get(ORDER)).state is TransactionState.PAID
    assert events_default(matrix, created.room_id) == EVENTS_DEFAULT[Access.LOCKED]
    await market.transactions.record_payment(ORDER)
    assert events_default(matrix, created.room_id) == EVENTS_DEFAULT[Access.OPEN]
    assert any("Payment for" in m["body"] for m in matrix.messages_in(created.room_id))
    assert len(await rows.outbox("room.state_changed")) == 1


async def test_payment_after_close_is_invalid_state(market: Market, rows: Rows) -> None:
    await market.transactions.create(new_transaction())
    await market.transactions.close(ORDER, Outcome.CANCELLED)
    with pytest.raises(InvalidState) as raised:
        await market.transactions.record_payment(ORDER)
    assert "closed" in raised.value.message
    assert (await market.transactions.get(ORDER)).state is TransactionState.CLOSED
    assert len(await rows.outbox("room.state_changed")) == 1


async def test_payment_while_a_dispute_is_open_is_invalid_state(market: Market) -> None:
    await market.transactions.create(new_transaction())
    await market.transactions.record_payment(ORDER)
    await open_dispute(market)
    with pytest.raises(InvalidState) as raised:
        await market.transactions.record_payment(ORDER)
    assert "dispute is open" in raised.value.message


# --- close ------------------------------------------------------------------------------------


async def test_close_archives_the_room_with_the_outcome_notice(
    market: Market, matrix: FakeMatrix, rows: Rows, clock: FakeClock
) -> None:
    await market.transactions.create(new_transaction())
    await market.transactions.record_payment(ORDER)
    clock.advance(3600)
    record = await market.transactions.close(ORDER, Outcome.COMPLETED)
    assert record.state is TransactionState.CLOSED and record.outcome is Outcome.COMPLETED
    assert record.closed_at == clock.now_ms()
    assert market.transactions.access(record) is Access.ARCHIVED
    assert events_default(matrix, record.room_id) == EVENTS_DEFAULT[Access.ARCHIVED]
    closing = (await rows.outbox("room.state_changed"))[-1]
    assert (data(closing)["access"], data(closing)["previous_access"]) == ("archived", "open")
    assert data(closing)["cause"] == "completed"
    last = matrix.messages_in(record.room_id)[-1]["body"]
    assert last == (
        "“Vintage bike” is completed: the deal is closed, "
        "and this chat is now a read-only archive."
    )
    entry = (await rows.audit("room.state_changed"))[-1]
    assert entry["detail"] == "paid -> closed; room open -> archived"


async def test_the_rooms_name_says_the_deals_state_at_each_step(
    market: Market, matrix: FakeMatrix
) -> None:
    def name(room_id) -> str:
        return matrix.state_of(room_id, "m.room.name")["name"]

    created, _ = await market.transactions.create(new_transaction())
    room = created.room_id
    assert name(room) == "Vintage bike · awaiting payment"
    await market.transactions.record_payment(ORDER)
    assert name(room) == "Vintage bike · open"
    await open_dispute(market)
    dispute = await market.disputes.get(DisputeId("d-1"))
    assert name(room) == "Vintage bike · frozen (dispute open)"
    assert name(dispute.room_id) == "Dispute: Vintage bike · open"
    await market.disputes.resolve(
        DisputeId("d-1"), Resolution("no_action", "", "marketplace", "api")
    )
    assert name(room) == "Vintage bike · open"
    assert name(dispute.room_id) == "Dispute: Vintage bike · resolved"
    await market.transactions.close(ORDER, Outcome.COMPLETED)
    assert name(room) == "Vintage bike · closed"


async def test_close_before_payment_goes_from_locked_to_archived(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await market.transactions.create(new_transaction())
    record = await market.transactions.close(ORDER, Outcome.CANCELLED)
    assert record.paid_at is None and record.outcome is Outcome.CANCELLED
    (row,) = await rows.outbox("room.state_changed")
    assert (data(row)["previous_access"], data(row)["access"]) == ("locked", "archived")
    assert data(row)["cause"] == "cancelled"
    bodies = [m["body"] for m in matrix.messages_in(record.room_id)]
    assert len(bodies) == 2 and not any("Payment for" in body for body in bodies)
    assert "is cancelled" in bodies[1]


async def test_closing_again_with_the_same_outcome_is_unchanged(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await market.transactions.create(new_transaction())
    first = await market.transactions.close(ORDER, Outcome.REFUNDED)
    again = await market.transactions.close(ORDER, Outcome.REFUNDED)
    assert again == first
    assert len(await rows.outbox("room.state_changed")) == 1
    closed = [m for m in matrix.messages_in(first.room_id) if "is refunded" in m["body"]]
    assert len(closed) == 1


async def test_closing_with_another_outcome_is_invalid_state(market: Market) -> None:
    await market.transactions.create(new_transaction())
    await market.transactions.close(ORDER, Outcome.COMPLETED)
    with pytest.raises(InvalidState) as raised:
        await market.transactions.close(ORDER, Outcome.REFUNDED)
    assert "already closed as completed" in raised.value.message
    assert (await market.transactions.get(ORDER)).outcome is Outcome.COMPLETED


async def test_close_while_a_dispute_is_open_is_invalid_state(
    market: Market, matrix: FakeMatrix
) -> None:
    await market.transactions.create(new_transaction())
    paid = await market.transactions.record_payment(ORDER)
    await open_dispute(market)
    with pytest.raises(InvalidState):
        await market.transactions.close(ORDER, Outcome.COMPLETED)
    assert (await market.transactions.get(ORDER)).state is TransactionState.PAID
    assert events_default(matrix, paid.room_id) == EVENTS_DEFAULT[Access.FROZEN]


# --- the transition loop ------------------------------------------------------------------------


async def test_settle_answers_unchanged_when_there_is_nothing_to_do() -> None:
    applied = []

    async def load():
        return "paid"

    async def apply(record, change):
        applied.append(change)
        return "never"

    assert await settle(load, lambda record: None, apply) == ("paid", False)
    assert applied == []


async def test_settle_applies_the_decided_change_and_says_so() -> None:
    async def load():
        return "awaiting_payment"

    async def apply(record, change):
        return f"{record} -> {change}"

    result = await settle(load, lambda record: "paid", apply)
    assert result == ("awaiting_payment -> paid", True)


async def test_settle_decides_again_on_the_latest_record_when_apply_answers_none() -> None:
    versions = iter(["v1", "v2", "v3"])
    decided, applied = [], []

    async def load():
        return next(versions)

    def decide(record):
        decided.append(record)
        return f"change on {record}"

    async def apply(record, change):
        applied.append(change)
        return None if record != "v3" else "done"  # another process changed v1 and v2

    assert await settle(load, decide, apply) == ("done", True)
    assert decided == ["v1", "v2", "v3"]
    assert applied == ["change on v1", "change on v2", "change on v3"]


async def test_settle_stops_when_the_record_changed_into_one_needing_nothing() -> None:
    versions = iter(["awaiting_payment", "paid"])

    async def load():
        return next(versions)

    async def apply(record, change):
        return None  # another process paid meanwhile

    result = await settle(load, lambda r: "pay" if r == "awaiting_payment" else None, apply)
    assert result == ("paid", False)


async def test_settle_turns_an_invalid_transition_into_invalid_state() -> None:
    async def load():
        return "closed"

    def decide(record):
        raise InvalidTransition("the transaction is closed")

    async def apply(record, change):
        raise AssertionError("nothing is applied")

    with pytest.raises(InvalidState) as raised:
        await settle(load, decide, apply)
    assert raised.value.message == "the transaction is closed"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


# --- races with another bridge process ----------------------------------------------------------


def between_decide_and_apply(market: Market, db, *statements: str):
    """Wrap apply_transition so that another process's writes land just before the first
    apply; returns the list of the states each apply was decided on."""
    records = market.transaction_records
    real = records.apply_transition
    decided_on: list[TransactionState] = []

    async def racing(record, transition, notification, audit, retry_for_ms):
        decided_on.append(record.state)
        if len(decided_on) == 1:
            for statement in statements:
                await db.execute(statement)
        return await real(record, transition, notification, audit, retry_for_ms)

    records.apply_transition = racing  # type: ignore[method-assign]
    return decided_on


async def test_a_payment_another_process_recorded_meanwhile_is_answered_unchanged(
    market: Market, matrix: FakeMatrix, rows: Rows, db
) -> None:
    await market.transactions.create(new_transaction())
    decided_on = between_decide_and_apply(
        market, db, "UPDATE transactions SET state = 'paid', paid_at = 1"
    )
    record = await market.transactions.record_payment(ORDER)
    assert decided_on == [TransactionState.AWAITING_PAYMENT]  # decided again: nothing to do
    assert record.state is TransactionState.PAID and record.paid_at == 1
    assert await rows.outbox() == [] and await rows.audit("room.state_changed") == []
    # The room still follows the record.
    assert events_default(matrix, record.room_id) == EVENTS_DEFAULT[Access.OPEN]


async def test_a_close_after_another_process_paid_meanwhile_is_decided_again_from_paid(
    market: Market, rows: Rows, db
) -> None:
    await market.transactions.create(new_transaction())
    decided_on = between_decide_and_apply(
        market, db, "UPDATE transactions SET state = 'paid', paid_at = 1"
    )
    record = await market.transactions.close(ORDER, Outcome.COMPLETED)
    assert decided_on == [TransactionState.AWAITING_PAYMENT, TransactionState.PAID]
    assert record.state is TransactionState.CLOSED and record.paid_at == 1
    (row,) = await rows.outbox("room.state_changed")
    assert (data(row)["previous_access"], data(row)["access"]) == ("open", "archived")
    (entry,) = await rows.audit("room.state_changed")
    assert entry["detail"] == "paid -> closed; room open -> archived"


async def test_a_close_meeting_another_close_with_another_outcome_is_invalid_state(
    market: Market, rows: Rows, db
) -> None:
    await market.transactions.create(new_transaction())
    between_decide_and_apply(
        market,
        db,
        "UPDATE transactions SET state = 'closed', outcome = 'cancelled', closed_at = 1",
    )
    with pytest.raises(InvalidState) as raised:
        await market.transactions.close(ORDER, Outcome.COMPLETED)
    assert "already closed as cancelled" in raised.value.message
    assert (await market.transactions.get(ORDER)).outcome is Outcome.CANCELLED
    assert await rows.outbox() == []


async def test_a_close_meeting_a_dispute_opened_meanwhile_is_rolled_back_and_refused(
    market: Market, rows: Rows, db
) -> None:
    await market.transactions.create(new_transaction())
    await market.transactions.record_payment(ORDER)
    between_decide_and_apply(
        market,
        db,
        "INSERT INTO disputes (dispute_id, transaction_id, reason, opened_by, state,"
        " room_version, created_at) VALUES ('d-9', 'order-1', 'late', 'buyer', 'open', '12', 1)",
    )
    with pytest.raises(InvalidState) as raised:
        await market.transactions.close(ORDER, Outcome.COMPLETED)
    assert "dispute is open" in raised.value.message
    record = await market.transactions.get(ORDER)
    assert record.state is TransactionState.PAID and record.closed_at is None
    assert record.open_dispute == "d-9"
    assert len(await rows.outbox("room.state_changed")) == 1  # the payment's only
    assert len(await rows.audit("room.state_changed")) == 1


# --- the chat list ------------------------------------------------------------------------------


async def add_message(
    db, room_id: str, event_id: str, sender: str, ts: int, preview: str, deleted: bool = False
) -> None:
    await db.execute(
        "INSERT INTO messages (room_id, event_id, sender, ts, preview, deleted)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        room_id,
        event_id,
        sender,
        ts,
        preview,
        deleted,
    )


async def test_the_chat_list_of_a_user_the_marketplace_never_named_is_none(
    market: Market,
) -> None:
    await market.transactions.create(new_transaction())
    assert await market.chat_list.of(MarketUserId("u-nobody")) is None


async def test_the_chat_list_is_newest_first_with_each_dispute_as_its_own_room(
    market: Market, matrix: FakeMatrix, clock: FakeClock
) -> None:
    matrix.add_user("@carol:localhost")
    await market.transactions.create(new_transaction())
    clock.advance(10)
    await market.transactions.create(new_transaction("order-2", seller="@carol:localhost"))
    clock.advance(10)
    await market.transactions.create(new_transaction("order-3", buyer="@carol:localhost"))
    await market.transactions.record_payment(ORDER)
    clock.advance(10)
    await open_dispute(market)
    chats = await market.chat_list.of(MarketUserId("u-buyer"))
    assert [chat.key for chat in chats] == ["d-1", "order-2", "order-1"]
    dispute_chat = chats[0]
    assert (dispute_chat.transaction_id, dispute_chat.dispute_id) == (ORDER, "d-1")
    assert dispute_chat.created_at == clock.now_ms()
    carol = await market.chat_list.of(MarketUserId("u-carol"))
    assert [chat.key for chat in carol] == ["order-3", "order-2"]


async def test_the_chat_list_shows_the_last_message_and_what_is_unread(market: Market, db) -> None:
    record, _ = await market.transactions.create(new_transaction())
    room = record.room_id
    await add_message(db, room, "$1", SELLER, 100, "Hello")
    await add_message(db, room, "$2", BUYER, 200, "Hi, is it still there?")
    await add_message(db, room, "$3", SELLER, 300, "Yes")
    await add_message(db, room, "$4", SELLER, 400, "Call me", deleted=True)
    await add_message(db, room, "$5", SELLER, 500, "Tomorrow?")
    await db.execute(
        "INSERT INTO read_positions (room_id, user_id, event_id, ts, updated_at)"
        " VALUES ($1, $2, '$1', 100, 100)",
        room,
        BUYER,
    )
    (buyer_chat,) = await market.chat_list.of(MarketUserId("u-buyer"))
    summary = buyer_chat.summary
    assert (summary.last_message, summary.last_message_at, summary.last_sender) == (
        "Tomorrow?",
        500,
        SELLER,
    )
    # After the buyer's read position: $3 and $5 from the seller ($2 is theirs, $4 deleted).
    assert summary.unread == 2
    # The seller has read nothing: only the buyer's one message is unread for them.
    (seller_chat,) = await market.chat_list.of(MarketUserId("u-seller"))
    assert seller_chat.summary.unread == 1


async def test_each_chat_says_the_users_role_its_state_and_access(market: Market) -> None:
    await market.transactions.create(new_transaction())
    await market.transactions.record_payment(ORDER)
    await open_dispute(market)
    buyer = {chat.key: chat for chat in await market.chat_list.of(MarketUserId("u-buyer"))}
    seller = {chat.key: chat for chat in await market.chat_list.of(MarketUserId("u-seller"))}
    assert {chat.role for chat in buyer.values()} == {"buyer"}
    assert {chat.role for chat in seller.values()} == {"seller"}
    transaction, dispute = buyer[ORDER], buyer["d-1"]
    assert (transaction.state, market.transactions.access(transaction)) == (
        TransactionState.PAID,
        Access.FROZEN,  # while its dispute is open
    )
    assert (dispute.state, market.transactions.access(dispute)) == (DisputeState.OPEN, Access.OPEN)
    assert dispute.title == transaction.title and dispute.room_id != transaction.room_id
    # The list only the web chat asks for names the other party; the API's does not.
    assert transaction.counterpart is None
    _, chats = await market.chat_list.of_matrix_id(UserId(BUYER))
    assert {chat.counterpart for chat in chats} == {SELLER}


async def test_a_chat_without_messages_has_no_last_message(market: Market) -> None:
    await market.transactions.create(new_transaction())
    (chat,) = await market.chat_list.of(MarketUserId("u-seller"))
    assert chat.dispute_id is None and chat.key == ORDER
    assert (chat.summary.last_message, chat.summary.unread) == (None, 0)
