"""Disputes: opened on a paid transaction, with their own room; resolved, archived, thawed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appservice.matrix import HomeserverUnavailable
from bridge.market import Market
from bridge.market.errors import Conflict, InvalidRequest, InvalidState, NotFound
from bridge.market.models import NewDispute, Opener, Resolution
from bridge.runtime.workers import Wakeup
from policy.ids import DisputeId, TransactionId
from policy.rooms import EVENTS_DEFAULT
from policy.states import Access, DisputeState, Outcome, TransactionState
from tests.harness import make_config

from .conftest import ADMIN, BUYER, SELLER, Rows, new_transaction
from .fakes import FakeClock, FakeMatrix

ORDER = TransactionId("order-1")
D1 = DisputeId("d-1")
REFUND = Resolution("refund_buyer", "Refunded in full", "marketplace", "api")


def new_dispute(
    dispute_id: str = "d-1",
    transaction_id: str = "order-1",
    reason: str = "Item not as described",
    opened_by: Opener = "buyer",
) -> NewDispute:
    return NewDispute(DisputeId(dispute_id), TransactionId(transaction_id), reason, opened_by)


def data(row: dict) -> dict:
    return json.loads(row["body"])["data"]


def events_default(matrix: FakeMatrix, room_id: str) -> int:
    return matrix.state_of(room_id, "m.room.power_levels")["events_default"]


def link_notices(matrix: FakeMatrix, room_id: str) -> list[dict]:
    return [m for m in matrix.messages_in(room_id) if m["body"].startswith("A dispute is open")]


async def paid_transaction(market: Market, transaction_id: str = "order-1"):
    await market.transactions.create(new_transaction(transaction_id))
    return await market.transactions.record_payment(TransactionId(transaction_id))


# --- open -------------------------------------------------------------------------------------


async def test_a_dispute_needs_a_paid_transaction(market: Market, db) -> None:
    await market.transactions.create(new_transaction())
    with pytest.raises(InvalidState) as raised:
        await market.disputes.open(new_dispute())
    assert "needs a paid transaction" in raised.value.message
    await market.transactions.close(ORDER, Outcome.CANCELLED)
    with pytest.raises(InvalidState):
        await market.disputes.open(new_dispute())
    assert await db.fetchval("SELECT COUNT(*) FROM disputes") == 0


async def test_a_dispute_on_an_unknown_transaction_is_not_found(market: Market) -> None:
    with pytest.raises(NotFound):
        await market.disputes.open(new_dispute(transaction_id="nope"))
    with pytest.raises(NotFound):
        await market.disputes.get(D1)


async def test_opening_makes_a_dispute_room_with_the_parties_and_the_admins(
    market: Market, matrix: FakeMatrix
) -> None:
    await paid_transaction(market)
    dispute, created = await market.disputes.open(new_dispute())
    assert created and dispute.state is DisputeState.OPEN and dispute.access is Access.OPEN
    room = dispute.room_id
    assert matrix.aliases["#market_dispute_d-1:localhost"] == room
    assert matrix.rooms[room].members == {
        matrix.user_id: "join",
        BUYER: "invite",
        SELLER: "invite",
        ADMIN: "invite",
    }
    assert events_default(matrix, room) == EVENTS_DEFAULT[Access.OPEN]
    (opened,) = matrix.messages_in(room)
    assert opened["body"].startswith("A dispute about “Vintage bike” (transaction order-1)")
    assert "opened by the buyer. Reason: Item not as described." in opened["body"]


async def test_opening_freezes_the_transaction_room_and_invites_the_admins_to_read_it(
    market: Market, matrix: FakeMatrix
) -> None:
    paid = await paid_transaction(market)
    dispute, _ = await market.disputes.open(new_dispute())
    transaction = await market.transactions.get(ORDER)
    assert transaction.open_dispute == D1
    assert market.transactions.access(transaction) is Access.FROZEN
    assert events_default(matrix, paid.room_id) == EVENTS_DEFAULT[Access.FROZEN]
    assert matrix.rooms[paid.room_id].members[ADMIN] == "invite"
    (link,) = link_notices(matrix, paid.room_id)
    assert f"https://matrix.to/#/{dispute.room_id}" in link["body"]


async def test_the_identical_repeat_answers_the_same_dispute_and_posts_nothing_again(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    paid = await paid_transaction(market)
    dispute, _ = await market.disputes.open(new_dispute())
    again, created = await market.disputes.open(new_dispute())
    assert not created and again == dispute
    assert len(matrix.called("create_room")) == 2  # the transaction's room and the dispute's
    assert len(link_notices(matrix, paid.room_id)) == 1
    assert len(matrix.messages_in(dispute.room_id)) == 1
    assert len(await rows.outbox("dispute.opened")) == 1
    assert len(await rows.audit("dispute.opened")) == 1


async def test_opening_queues_dispute_opened_in_the_transaction_rooms_stream(
    market: Market, rows: Rows
) -> None:
    paid = await paid_transaction(market)
    await market.disputes.open(new_dispute(opened_by="seller", reason="Never paid for shipping"))
    (row,) = await rows.outbox("dispute.opened")
    assert row["stream"] == paid.room_id
    assert data(row) == {
        "room_id": paid.room_id,
        "room_kind": "transaction",
        "transaction_id": ORDER,
        "dispute_id": D1,
        "links": {"matrix_to": "https://matrix.to/#/%23market_transaction_order-1:localhost"},
        "reason": "Never paid for shipping",
        "opened_by": "seller",
    }
    (entry,) = await rows.audit("dispute.opened")
    assert (entry["actor"], entry["room_id"], entry["dispute_id"]) == (
        "marketplace",
        paid.room_id,
        D1,
    )
    assert entry["detail"] == "opened by the seller"


async def test_only_one_dispute_is_open_at_a_time(market: Market, rows: Rows) -> None:
    await paid_transaction(market)
    await market.disputes.open(new_dispute())
    with pytest.raises(InvalidState) as raised:
        await market.disputes.open(new_dispute("d-2"))
    assert "d-1 is already open" in raised.value.message
    with pytest.raises(NotFound):
        await market.disputes.get(DisputeId("d-2"))
    assert len(await rows.outbox("dispute.opened")) == 1


async def test_the_same_dispute_id_with_other_content_is_a_conflict_naming_the_fields(
    market: Market,
) -> None:
    await paid_transaction(market)
    await paid_transaction(market, "order-2")
    await market.disputes.open(new_dispute())
    with pytest.raises(Conflict) as raised:
        await market.disputes.open(new_dispute(reason="Arrived broken", opened_by="seller"))
    assert raised.value.fields == ["reason", "opened_by"]
    with pytest.raises(Conflict) as raised:
        await market.disputes.open(new_dispute(transaction_id="order-2"))
    assert raised.value.fields == ["transaction_id"]
    assert (await market.disputes.get(D1)).reason == "Item not as described"


async def test_opening_tells_the_admins_in_the_management_room_once(
    market: Market, matrix: FakeMatrix
) -> None:
    management = await market.management.ensure()
    await paid_transaction(market)
    await market.disputes.open(new_dispute())
    await market.disputes.open(new_dispute())
    (announcement,) = matrix.messages_in(management)
    assert announcement["body"] == (
        "Dispute d-1 opened by the buyer on transaction order-1 (“Vintage bike”): "
        "Item not as described"
    )


async def test_without_a_management_room_a_dispute_opens_all_the_same(
    market: Market, matrix: FakeMatrix
) -> None:
    await paid_transaction(market)
    dispute, created = await market.disputes.open(new_dispute())
    assert created and dispute.room_id is not None
    assert market.management.room_id is None
    assert set(matrix.rooms) == {dispute.room_id, (await market.transactions.get(ORDER)).room_id}


async def test_with_freezing_off_the_transaction_room_stays_open_during_a_dispute(
    db, matrix: FakeMatrix, clock: FakeClock, tmp_path: Path
) -> None:
    config = make_config(
        database_url=f"sqlite://{tmp_path / 'bridge.db'}",
        rooms={"admins": [ADMIN]},
        disputes={"freeze_transaction_room": False},
    )
    market = Market.build(config, db, matrix, clock, Wakeup())  # type: ignore[arg-type]
    paid = await paid_transaction(market)
    await market.disputes.open(new_dispute())
    transaction = await market.transactions.get(ORDER)
    assert market.transactions.access(transaction) is Access.OPEN
    assert events_default(matrix, paid.room_id) == EVENTS_DEFAULT[Access.OPEN]
    assert matrix.rooms[paid.room_id].members[ADMIN] == "invite"  # still there to read


async def test_a_dispute_open_cut_short_by_the_homeserver_is_completed_by_the_retry(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    paid = await paid_transaction(market)
    matrix.fail("create_room", HomeserverUnavailable("503"))
    with pytest.raises(HomeserverUnavailable):
        await market.disputes.open(new_dispute())
    dispute, created = await market.disputes.open(new_dispute())
    assert not created and dispute.room_id in matrix.rooms
    assert matrix.rooms[dispute.room_id].members[ADMIN] == "invite"
    assert events_default(matrix, paid.room_id) == EVENTS_DEFAULT[Access.FROZEN]
    assert len(link_notices(matrix, paid.room_id)) == 1
    assert len(await rows.outbox("dispute.opened")) == 1


# --- resolve ----------------------------------------------------------------------------------


async def test_a_decision_not_configured_is_an_invalid_request(market: Market, rows: Rows) -> None:
    await paid_transaction(market)
    await market.disputes.open(new_dispute())
    with pytest.raises(InvalidRequest) as raised:
        await market.disputes.resolve(D1, Resolution("split", "", "marketplace", "api"))
    assert raised.value.fields == ["decision"]
    assert "refund_buyer, release_to_seller, no_action" in raised.value.message
    assert (await market.disputes.get(D1)).state is DisputeState.OPEN
    assert await rows.outbox("dispute.resolved") == []


async def test_resolving_an_unknown_dispute_is_not_found(market: Market) -> None:
    with pytest.raises(NotFound):
        await market.disputes.resolve(DisputeId("nope"), REFUND)


async def test_resolving_archives_the_dispute_room_and_thaws_the_transaction_room(
    market: Market, matrix: FakeMatrix, clock: FakeClock
) -> None:
    paid = await paid_transaction(market)
    await market.disputes.open(new_dispute())
    clock.advance(600)
    dispute = await market.disputes.resolve(D1, REFUND)
    assert dispute.state is DisputeState.RESOLVED and dispute.access is Access.ARCHIVED
    assert (dispute.decision, dispute.note, dispute.resolved_by, dispute.source) == (
        "refund_buyer",
        "Refunded in full",
        "marketplace",
        "api",
    )
    assert dispute.resolved_at == clock.now_ms()
    assert events_default(matrix, dispute.room_id) == EVENTS_DEFAULT[Access.ARCHIVED]
    resolved = matrix.messages_in(dispute.room_id)[-1]["body"]
    assert resolved.startswith("The dispute is resolved: refund_buyer. Refunded in full")
    assert resolved.endswith("This chat is now a read-only archive.")
    transaction = await market.transactions.get(ORDER)
    assert transaction.open_dispute is None and transaction.state is TransactionState.PAID
    assert market.transactions.access(transaction) is Access.OPEN
    assert events_default(matrix, paid.room_id) == EVENTS_DEFAULT[Access.OPEN]


async def test_resolving_queues_dispute_resolved_and_audits_who_resolved_it(
    market: Market, rows: Rows
) -> None:
    paid = await paid_transaction(market)
    opened, _ = await market.disputes.open(new_dispute())
    by_admin = Resolution("no_action", "Both agreed", ADMIN, "matrix")
    await market.disputes.resolve(D1, by_admin)
    (row,) = await rows.outbox("dispute.resolved")
    assert row["stream"] == paid.room_id
    assert data(row) == {
        "room_id": paid.room_id,
        "room_kind": "transaction",
        "transaction_id": ORDER,
        "dispute_id": D1,
        "links": {"matrix_to": "https://matrix.to/#/%23market_transaction_order-1:localhost"},
        "decision": "no_action",
        "note": "Both agreed",
        "resolved_by": ADMIN,
        "source": "matrix",
    }
    (entry,) = await rows.audit("dispute.resolved")
    assert (entry["actor"], entry["room_id"], entry["reason"], entry["detail"]) == (
        ADMIN,
        opened.room_id,
        "no_action",
        "Both agreed",
    )
    assert (entry["transaction_id"], entry["dispute_id"]) == (ORDER, D1)


async def test_resolving_again_with_the_same_decision_is_unchanged(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await paid_transaction(market)
    await market.disputes.open(new_dispute())
    first = await market.disputes.resolve(D1, REFUND)
    again = await market.disputes.resolve(D1, REFUND)
    assert again == first
    assert len(await rows.outbox("dispute.resolved")) == 1
    assert len(await rows.audit("dispute.resolved")) == 1
    assert len(matrix.messages_in(first.room_id)) == 2  # opened, resolved


async def test_resolving_again_with_another_decision_is_invalid_state(market: Market) -> None:
    await paid_transaction(market)
    await market.disputes.open(new_dispute())
    await market.disputes.resolve(D1, REFUND)
    other = Resolution("release_to_seller", "", "marketplace", "api")
    with pytest.raises(InvalidState) as raised:
        await market.disputes.resolve(D1, other)
    assert "already resolved as refund_buyer" in raised.value.message
    assert (await market.disputes.get(D1)).decision == "refund_buyer"


async def test_after_a_resolution_the_transaction_closes_and_another_dispute_may_open(
    market: Market, matrix: FakeMatrix
) -> None:
    paid = await paid_transaction(market)
    await market.disputes.open(new_dispute())
    await market.disputes.resolve(D1, REFUND)
    second, created = await market.disputes.open(new_dispute("d-2", reason="Still broken"))
    assert created and second.room_id != (await market.disputes.get(D1)).room_id
    assert len(link_notices(matrix, paid.room_id)) == 2
    await market.disputes.resolve(second.dispute_id, REFUND)
    closed = await market.transactions.close(ORDER, Outcome.REFUNDED)
    assert closed.state is TransactionState.CLOSED


async def test_a_resolution_by_another_process_the_same_way_is_answered_unchanged(
    market: Market, rows: Rows, db
) -> None:
    await paid_transaction(market)
    await market.disputes.open(new_dispute())
    records = market.dispute_records
    real, decided_on = records.resolve, []

    async def racing(dispute, resolution, notification, audit, stream, retry_for_ms):
        decided_on.append(dispute.state)
        await db.execute(
            "UPDATE disputes SET state = 'resolved', decision = 'refund_buyer', note = 'other',"
            " resolved_by = 'marketplace', source = 'api', resolved_at = 1"
        )
        return await real(dispute, resolution, notification, audit, stream, retry_for_ms)

    records.resolve = racing  # type: ignore[method-assign]
    dispute = await market.disputes.resolve(D1, REFUND)
    assert decided_on == [DisputeState.OPEN]  # decided again on the resolved one: nothing to do
    assert dispute.state is DisputeState.RESOLVED and dispute.note == "other"
    assert await rows.outbox("dispute.resolved") == []


async def test_a_resolution_by_another_process_another_way_is_invalid_state(
    market: Market, rows: Rows, db
) -> None:
    await paid_transaction(market)
    await market.disputes.open(new_dispute())
    records = market.dispute_records
    real = records.resolve

    async def racing(*args):
        await db.execute(
            "UPDATE disputes SET state = 'resolved', decision = 'no_action', note = '',"
            " resolved_by = 'marketplace', source = 'api', resolved_at = 1"
        )
        return await real(*args)

    records.resolve = racing  # type: ignore[method-assign]
    with pytest.raises(InvalidState):
        await market.disputes.resolve(D1, REFUND)
    assert (await market.disputes.get(D1)).decision == "no_action"
    assert await rows.outbox("dispute.resolved") == []


async def test_a_dispute_is_refused_when_the_transaction_closed_meanwhile(
    market: Market, rows: Rows, db
) -> None:
    await paid_transaction(market)
    records = market.dispute_records
    real = records.insert

    async def racing(*args):
        # Another process closed the transaction after this one decided.
        await db.execute("UPDATE transactions SET state = 'closed', outcome = 'completed'")
        return await real(*args)

    records.insert = racing  # type: ignore[method-assign]
    with pytest.raises(InvalidState) as raised:
        await market.disputes.open(new_dispute())
    assert "changed meanwhile" in raised.value.message
    assert await db.fetchval("SELECT COUNT(*) FROM disputes") == 0
    assert await rows.outbox("dispute.opened") == []


async def test_a_dispute_opened_by_another_process_meanwhile_is_invalid_state(
    market: Market, rows: Rows, db
) -> None:
    # Two processes open different disputes on one transaction: both decide on a transaction
    # with none open; the other one commits first. The database's one-open index refuses the
    # second, and the marketplace must hear 409 MARKET_INVALID_STATE (as it would within one
    # process), not a database error (500).
    await paid_transaction(market)
    records = market.dispute_records
    real = records.insert

    async def racing(*args):
        await db.execute(
            "INSERT INTO disputes (dispute_id, transaction_id, reason, opened_by, state,"
            " room_version, created_at) VALUES ('d-9', 'order-1', 'late', 'seller', 'open',"
            " '12', 1)"
        )
        return await real(*args)

    records.insert = racing  # type: ignore[method-assign]
    with pytest.raises(InvalidState):
        await market.disputes.open(new_dispute())
    assert await rows.outbox("dispute.opened") == []


async def test_an_announcement_lost_to_the_homeserver_is_made_by_the_retry(
    market: Market, matrix: FakeMatrix
) -> None:
    # The dispute is stored, then the homeserver fails while the admins are told. The
    # marketplace retries (the API answered 503): the retry must complete what the first call
    # left undone, the announcement included (it is keyed, so it is never posted twice).
    management = await market.management.ensure()
    await paid_transaction(market)
    matrix.fail("send_message", HomeserverUnavailable("503"))
    with pytest.raises(HomeserverUnavailable):
        await market.disputes.open(new_dispute())
    _, created = await market.disputes.open(new_dispute())
    assert not created
    assert [m["body"][:14] for m in matrix.messages_in(management)] == ["Dispute d-1 op"]
