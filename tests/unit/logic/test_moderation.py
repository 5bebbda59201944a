"""What admins do beyond the marketplace's transitions (lock, unlock, remove), their room, and
reconciling every room with its plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from appservice.matrix import HomeserverUnavailable
from bridge.market import Market
from bridge.market.errors import InvalidState, NotFound
from bridge.market.management import NAME, SETTING
from bridge.market.models import NewDispute, Resolution
from bridge.market.moderation import REMOVED
from bridge.runtime.workers import Wakeup
from policy.ids import DisputeId, TransactionId, UserId
from policy.rooms import EVENTS_DEFAULT, OVERRIDE_TOPICS, TRANSACTION_TOPICS
from policy.states import Access, Outcome
from tests.harness import make_config

from .conftest import ADMIN, BUYER, SELLER, Rows, new_transaction
from .fakes import FakeClock, FakeMatrix

ORDER = TransactionId("order-1")
D1 = DisputeId("d-1")
STRANGER = UserId("@stranger:localhost")


def events_default(matrix: FakeMatrix, room_id: str) -> int:
    return matrix.state_of(room_id, "m.room.power_levels")["events_default"]


def topic(matrix: FakeMatrix, room_id: str) -> str:
    return matrix.state_of(room_id, "m.room.topic")["topic"]


async def paid_transaction(market: Market, transaction_id: str = "order-1"):
    await market.transactions.create(new_transaction(transaction_id))
    return await market.transactions.record_payment(TransactionId(transaction_id))


async def open_dispute(market: Market):
    dispute, _ = await market.disputes.open(NewDispute(D1, ORDER, "Not as described", "buyer"))
    return dispute


def market_with(db, matrix: FakeMatrix, clock: FakeClock, tmp_path: Path, **rooms) -> Market:
    """Another bridge process on the same database, with its own rooms settings."""
    config = make_config(database_url=f"sqlite://{tmp_path / 'bridge.db'}", rooms=rooms)
    return Market.build(config, db, matrix, clock, Wakeup())  # type: ignore[arg-type]


# --- lock and unlock ----------------------------------------------------------------------------


async def test_lock_makes_a_paid_room_read_only_for_the_parties(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    paid = await paid_transaction(market)
    record = await market.moderation.set_override(ORDER, Access.LOCKED, ADMIN)
    assert record.access_override is Access.LOCKED
    assert market.transactions.access(record) is Access.LOCKED
    assert events_default(matrix, paid.room_id) == EVENTS_DEFAULT[Access.LOCKED]
    # Said as the admins' lock, not as waiting for a payment already made.
    assert topic(matrix, paid.room_id) == OVERRIDE_TOPICS[Access.LOCKED]
    name = matrix.state_of(paid.room_id, "m.room.name")["name"]
    assert name == "Vintage bike · locked by moderators"
    entry = (await rows.audit("room.state_changed"))[-1]
    assert (entry["actor"], entry["reason"], entry["detail"]) == (
        ADMIN,
        "lock",
        "room open -> locked",
    )
    assert entry["room_id"] == paid.room_id and entry["transaction_id"] == ORDER


async def test_unlock_lets_the_parties_talk_before_payment(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    created, _ = await market.transactions.create(new_transaction())
    record = await market.moderation.set_override(ORDER, Access.OPEN, ADMIN)
    assert market.transactions.access(record) is Access.OPEN
    assert events_default(matrix, created.room_id) == EVENTS_DEFAULT[Access.OPEN]
    assert topic(matrix, created.room_id) == OVERRIDE_TOPICS[Access.OPEN]  # not "paid"
    (entry,) = await rows.audit("room.state_changed")
    assert (entry["reason"], entry["detail"]) == ("unlock", "room locked -> open")


async def test_unlock_thaws_a_room_frozen_by_a_dispute(market: Market, matrix: FakeMatrix) -> None:
    paid = await paid_transaction(market)
    await open_dispute(market)
    assert events_default(matrix, paid.room_id) == EVENTS_DEFAULT[Access.FROZEN]
    record = await market.moderation.set_override(ORDER, Access.OPEN, ADMIN)
    assert market.transactions.access(record) is Access.OPEN
    assert events_default(matrix, paid.room_id) == EVENTS_DEFAULT[Access.OPEN]


async def test_the_next_payment_clears_an_admins_lock(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await market.transactions.create(new_transaction())
    await market.moderation.set_override(ORDER, Access.LOCKED, ADMIN)
    record = await market.transactions.record_payment(ORDER)
    assert record.access_override is None
    assert market.transactions.access(record) is Access.OPEN
    assert events_default(matrix, record.room_id) == EVENTS_DEFAULT[Access.OPEN]
    assert len(await rows.outbox("room.state_changed")) == 1  # the lock itself notifies nothing


async def test_a_dispute_opening_clears_an_admins_unlock(
    market: Market, matrix: FakeMatrix
) -> None:
    paid = await paid_transaction(market)
    await market.moderation.set_override(ORDER, Access.LOCKED, ADMIN)
    await open_dispute(market)
    record = await market.transactions.get(ORDER)
    assert record.access_override is None
    assert market.transactions.access(record) is Access.FROZEN
    assert topic(matrix, paid.room_id) == TRANSACTION_TOPICS[Access.FROZEN]


async def test_a_dispute_resolution_clears_an_admins_lock(
    market: Market, matrix: FakeMatrix
) -> None:
    paid = await paid_transaction(market)
    await open_dispute(market)
    await market.moderation.set_override(ORDER, Access.LOCKED, ADMIN)
    await market.disputes.resolve(D1, Resolution("no_action", "", ADMIN, "matrix"))
    record = await market.transactions.get(ORDER)
    assert record.access_override is None
    assert market.transactions.access(record) is Access.OPEN
    assert events_default(matrix, paid.room_id) == EVENTS_DEFAULT[Access.OPEN]


async def test_a_closed_transaction_cannot_be_locked_or_unlocked(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await market.transactions.create(new_transaction())
    closed = await market.transactions.close(ORDER, Outcome.CANCELLED)
    for access in (Access.LOCKED, Access.OPEN):
        with pytest.raises(InvalidState):
            await market.moderation.set_override(ORDER, access, ADMIN)
    assert (await market.transactions.get(ORDER)).access_override is None
    assert events_default(matrix, closed.room_id) == EVENTS_DEFAULT[Access.ARCHIVED]
    assert len(await rows.audit("room.state_changed")) == 1  # the close's only


async def test_locking_an_unknown_transaction_is_not_found(market: Market) -> None:
    with pytest.raises(NotFound):
        await market.moderation.set_override(TransactionId("nope"), Access.LOCKED, ADMIN)


# --- removing someone ---------------------------------------------------------------------------


async def test_the_parties_and_the_bot_cannot_be_removed(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await paid_transaction(market)
    for user in (UserId(BUYER), UserId(SELLER), matrix.user_id):
        with pytest.raises(InvalidState):
            await market.moderation.remove_member(user, ORDER, ADMIN)
    assert not matrix.called("kick")
    assert await rows.audit("member.removed") == []


async def test_someone_else_is_kicked_from_the_transaction_room_and_it_is_audited(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    paid = await paid_transaction(market)
    matrix.rooms[paid.room_id].members[STRANGER] = "join"
    room_id = await market.moderation.remove_member(STRANGER, ORDER, ADMIN)
    assert room_id == paid.room_id
    assert matrix.rooms[paid.room_id].members[STRANGER] == "leave"
    (kick,) = matrix.called("kick")
    assert kick.args == (paid.room_id, STRANGER, REMOVED)
    (entry,) = await rows.audit("member.removed")
    assert (entry["actor"], entry["subject"], entry["reason"]) == (ADMIN, STRANGER, REMOVED)
    assert entry["transaction_id"] == ORDER


async def test_a_dispute_id_removes_from_the_dispute_room(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    paid = await paid_transaction(market)
    dispute = await open_dispute(market)
    matrix.rooms[dispute.room_id].members[STRANGER] = "join"
    matrix.rooms[paid.room_id].members[STRANGER] = "join"
    room_id = await market.moderation.remove_member(STRANGER, D1, ADMIN)
    assert room_id == dispute.room_id
    assert matrix.rooms[dispute.room_id].members[STRANGER] == "leave"
    assert matrix.rooms[paid.room_id].members[STRANGER] == "join"
    (entry,) = await rows.audit("member.removed")
    assert (entry["room_id"], entry["dispute_id"]) == (dispute.room_id, D1)
    with pytest.raises(InvalidState):
        await market.moderation.remove_member(UserId(SELLER), D1, ADMIN)


async def test_removing_from_an_unknown_object_is_not_found(
    market: Market, matrix: FakeMatrix
) -> None:
    await paid_transaction(market)
    with pytest.raises(NotFound):
        await market.moderation.remove_member(STRANGER, "nope", ADMIN)
    assert not matrix.called("kick")


# --- the management room ------------------------------------------------------------------------


async def test_the_management_room_is_made_once_with_the_admins_invited(
    market: Market, matrix: FakeMatrix, db
) -> None:
    room_id = await market.management.ensure()
    again = await market.management.ensure()
    assert room_id is not None and again == room_id == market.management.room_id
    assert len(matrix.called("create_room")) == 1
    assert matrix.rooms[room_id].members == {matrix.user_id: "join", ADMIN: "invite"}
    assert matrix.state_of(room_id, "m.room.name") == {"name": NAME}
    assert matrix.aliases["#market_management_room:localhost"] == room_id
    assert await db.fetchval("SELECT value FROM settings WHERE key = $1", SETTING) == room_id


async def test_the_management_room_is_remembered_by_the_next_process(
    market: Market, matrix: FakeMatrix, db, clock: FakeClock, tmp_path: Path
) -> None:
    room_id = await market.management.ensure()
    restarted = market_with(db, matrix, clock, tmp_path, admins=[ADMIN])
    assert await restarted.management.ensure() == room_id
    assert len(matrix.called("create_room")) == 1


async def test_a_restarted_bridge_knows_its_management_room_before_reaching_the_homeserver(
    market: Market, matrix: FakeMatrix, db, clock: FakeClock, tmp_path: Path
) -> None:
    # Events Synapse re-sends at start must be judged as the management room's.
    room_id = await market.management.ensure()
    restarted = market_with(db, matrix, clock, tmp_path, admins=[ADMIN])
    matrix.down = True
    await restarted.management.load()
    assert restarted.management.room_id == room_id


async def test_a_configured_management_room_is_used_as_it_is(
    db, matrix: FakeMatrix, clock: FakeClock, tmp_path: Path
) -> None:
    configured = matrix.make_room()
    matrix.rooms[configured].state[("m.room.name", "")] = {"name": "Ops"}
    matrix.rooms[configured].members[ADMIN] = "join"
    market = market_with(db, matrix, clock, tmp_path, admins=[ADMIN], management_room=configured)
    assert await market.management.ensure() == configured
    assert not matrix.called("create_room") and not matrix.called("send_state")
    assert matrix.state_of(configured, "m.room.name") == {"name": "Ops"}
    assert matrix.rooms[configured].members[ADMIN] == "join"
    assert await db.fetchval("SELECT COUNT(*) FROM settings") == 0


async def test_a_configured_management_room_gets_its_missing_admins_invited(
    db, matrix: FakeMatrix, clock: FakeClock, tmp_path: Path
) -> None:
    configured = matrix.make_room()
    market = market_with(db, matrix, clock, tmp_path, admins=[ADMIN], management_room=configured)
    await market.management.ensure()
    assert matrix.rooms[configured].members[ADMIN] == "invite"


async def test_without_admins_or_a_room_there_is_no_management_room(
    db, matrix: FakeMatrix, clock: FakeClock, tmp_path: Path
) -> None:
    market = market_with(db, matrix, clock, tmp_path, admins=[])
    assert await market.management.ensure() is None
    assert market.management.room_id is None and not matrix.called("create_room")


async def test_announce_posts_once_per_key(market: Market, matrix: FakeMatrix) -> None:
    room_id = await market.management.ensure()
    await market.management.announce("dead:1", "A webhook was given up <for good>")
    await market.management.announce("dead:1", "A webhook was given up <for good>")
    await market.management.announce("dead:2", "Another one")
    bodies = [m["body"] for m in matrix.messages_in(room_id)]
    assert bodies == ["A webhook was given up <for good>", "Another one"]
    assert matrix.messages_in(room_id)[0]["formatted_body"] == (
        "A webhook was given up &lt;for good&gt;"
    )


async def test_announce_is_quiet_without_a_room(market: Market, matrix: FakeMatrix) -> None:
    await market.management.announce("dead:1", "Nobody hears this")
    assert not matrix.called("send_message") and matrix.rooms == {}


# --- reconcile ----------------------------------------------------------------------------------


async def drift(matrix: FakeMatrix, room_id: str) -> None:
    matrix.rooms[room_id].state[("m.room.topic", "")] = {"topic": "DM me elsewhere"}


def drifted(matrix: FakeMatrix, room_id: str) -> bool:
    return topic(matrix, room_id) == "DM me elsewhere"


async def test_reconcile_on_start_brings_every_room_and_the_management_room_back(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    management = await market.management.ensure()
    paid = await paid_transaction(market)
    dispute = await open_dispute(market)
    await market.transactions.create(new_transaction("order-2"))
    await market.transactions.close(TransactionId("order-2"), Outcome.CANCELLED)
    closed = await market.transactions.get(TransactionId("order-2"))
    for room in (paid.room_id, dispute.room_id, closed.room_id):
        await drift(matrix, room)
    matrix.rooms[management].members[ADMIN] = "leave"
    matrix.rooms[management].members[STRANGER] = "join"
    await market.reconciler.reconcile()
    assert not any(drifted(matrix, room) for room in (paid.room_id, dispute.room_id))
    assert topic(matrix, closed.room_id) == TRANSACTION_TOPICS[Access.ARCHIVED]
    assert matrix.rooms[management].members[ADMIN] == "invite"
    assert matrix.rooms[management].members[STRANGER] == "leave"
    assert len(await rows.audit("state.repaired")) == 3


async def test_reconcile_active_only_skips_closed_transactions(
    market: Market, matrix: FakeMatrix
) -> None:
    paid = await paid_transaction(market)
    await market.transactions.create(new_transaction("order-2"))
    closed = await market.transactions.close(TransactionId("order-2"), Outcome.CANCELLED)
    await drift(matrix, paid.room_id)
    await drift(matrix, closed.room_id)
    matrix.forget_calls()
    await market.reconciler.reconcile(active_only=True)
    assert topic(matrix, paid.room_id) == TRANSACTION_TOPICS[Access.OPEN]
    assert drifted(matrix, closed.room_id)
    assert paid.room_id in {call[0] for call in matrix.called("room_state")}
    assert closed.room_id not in {call[0] for call in matrix.called("room_state")}


async def test_reconcile_active_only_covers_open_disputes_and_the_management_room(
    market: Market, matrix: FakeMatrix
) -> None:
    management = await market.management.ensure()
    await paid_transaction(market)
    dispute = await open_dispute(market)
    await drift(matrix, dispute.room_id)
    matrix.rooms[management].members[ADMIN] = "leave"
    await market.reconciler.reconcile(active_only=True)
    assert not drifted(matrix, dispute.room_id)
    assert matrix.rooms[management].members[ADMIN] == "invite"


async def test_a_room_that_fails_does_not_stop_the_others(
    market: Market, matrix: FakeMatrix
) -> None:
    rooms = []
    for n in range(1, 5):
        record, _ = await market.transactions.create(new_transaction(f"order-{n}"))
        rooms.append(record.room_id)
        await drift(matrix, record.room_id)
    matrix.fail("room_state", HomeserverUnavailable("503"))
    await market.reconciler.reconcile()  # logs the failure, does not raise
    assert sum(drifted(matrix, room) for room in rooms) == 1
    await market.reconciler.reconcile()
    assert not any(drifted(matrix, room) for room in rooms)


async def test_reconcile_makes_the_room_a_failed_create_never_made(
    market: Market, matrix: FakeMatrix
) -> None:
    matrix.fail("create_room", HomeserverUnavailable("503"))
    with pytest.raises(HomeserverUnavailable):
        await market.transactions.create(new_transaction())
    assert (await market.transactions.get(ORDER)).room_id is None
    await market.reconciler.reconcile()
    record = await market.transactions.get(ORDER)
    assert record.room_id in matrix.rooms
    assert matrix.rooms[record.room_id].members[BUYER] == "invite"


async def test_repair_room_follows_the_room_to_its_owner(
    market: Market, matrix: FakeMatrix
) -> None:
    management = await market.management.ensure()
    await paid_transaction(market)
    dispute = await open_dispute(market)
    await drift(matrix, dispute.room_id)
    matrix.rooms[management].members[ADMIN] = "leave"
    await market.reconciler.repair_room(dispute.room_id)
    assert not drifted(matrix, dispute.room_id)
    assert matrix.rooms[management].members[ADMIN] == "leave"
    await market.reconciler.repair_room(management)
    assert matrix.rooms[management].members[ADMIN] == "invite"
    matrix.forget_calls()
    await market.reconciler.repair_room(matrix.make_room())  # nobody's room: left alone
    assert matrix.calls == []
