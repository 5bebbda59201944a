"""The room keeper: rooms made, adopted, repaired and announced, against the fake homeserver."""

from __future__ import annotations

import pytest

from appservice.matrix import HomeserverUnavailable, MatrixError
from bridge.market import Market
from bridge.market.keeper import UNMADE_ROOM_GRACE_SECONDS
from policy.rooms import EVENTS_DEFAULT
from policy.states import Access

from .conftest import ADMIN, BUYER, SELLER, Rows, new_transaction
from .fakes import FakeClock, FakeMatrix


async def test_a_new_transaction_gets_a_locked_room_with_both_parties_invited(
    market: Market, matrix: FakeMatrix
) -> None:
    record, created = await market.transactions.create(new_transaction())
    assert created and record.room_id is not None
    room = matrix.rooms[record.room_id]
    assert room.members == {matrix.user_id: "join", BUYER: "invite", SELLER: "invite"}
    levels = matrix.state_of(record.room_id, "m.room.power_levels")
    assert levels["events_default"] == EVENTS_DEFAULT[Access.LOCKED]
    assert matrix.aliases == {"#market_transaction_order-1:localhost": record.room_id}


async def test_a_made_room_is_audited_once_and_announced_once(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    record, _ = await market.transactions.create(new_transaction())
    again, created = await market.transactions.create(new_transaction())
    assert not created and again.room_id == record.room_id
    assert len(await rows.audit("room.created")) == 1
    notices = matrix.messages_in(record.room_id)
    assert (
        len(notices) == 1 and "opens once the marketplace confirms payment" in notices[0]["body"]
    )


async def test_an_alias_taken_by_an_earlier_attempt_adopts_its_room(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    # An earlier attempt made the room, then failed before the bridge stored its id.
    earlier = await matrix.create_room(
        room_version="12", alias_localpart="market_transaction_order-1"
    )
    record, _ = await market.transactions.create(new_transaction())
    assert record.room_id == earlier
    # Adopted, not made: its state and members are checked against the plan.
    assert matrix.state_of(earlier, "m.room.name") == {"name": "Vintage bike · awaiting payment"}
    assert matrix.rooms[earlier].members[BUYER] == "invite"
    assert await rows.audit("room.created") == []


async def test_an_alias_naming_a_room_never_made_is_freed_and_the_room_made(
    market: Market, matrix: FakeMatrix, clock: FakeClock
) -> None:
    matrix.aliases["#market_transaction_order-1:localhost"] = "!never-made"  # type: ignore[assignment]
    started = clock.monotonic()
    record, _ = await market.transactions.create(new_transaction())
    assert record.room_id in matrix.rooms and record.room_id != "!never-made"
    assert matrix.called("delete_alias")
    # It waited the grace period (another process may be between Synapse's two steps).
    assert clock.monotonic() - started >= UNMADE_ROOM_GRACE_SECONDS


async def test_a_room_that_appears_within_the_grace_period_is_adopted(
    market: Market, matrix: FakeMatrix
) -> None:
    alias = "#market_transaction_order-1:localhost"
    matrix.aliases[alias] = "!being-made"  # type: ignore[assignment]
    not_yet = MatrixError(404, "M_NOT_FOUND", "unknown room")
    matrix.fail("join", not_yet, not_yet)
    made = matrix.make_room()
    matrix.aliases[alias] = made
    record, _ = await market.transactions.create(new_transaction())
    assert record.room_id == made
    assert not matrix.called("delete_alias")


async def test_drift_is_put_back_power_levels_last_and_audited_as_a_repair(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    record, _ = await market.transactions.create(new_transaction())
    room = record.room_id
    levels = matrix.state_of(room, "m.room.power_levels")
    matrix.rooms[room].state[("m.room.power_levels", "")] = {**levels, "users": {BUYER: 100}}
    matrix.rooms[room].state[("m.room.topic", "")] = {"topic": "DM me"}
    matrix.forget_calls()
    await market.reconciler.repair_room(room)
    sent = [call[1] for call in matrix.called("send_state")]
    assert sent == ["m.room.topic", "m.room.power_levels"]
    assert matrix.state_of(room, "m.room.power_levels")["users"] == {ADMIN: 50}
    (repair,) = await rows.audit("state.repaired")
    assert repair["detail"] == "m.room.topic, m.room.power_levels"


async def test_a_room_on_its_plan_is_left_alone(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    record, _ = await market.transactions.create(new_transaction())
    matrix.forget_calls()
    await market.reconciler.repair_room(record.room_id)
    assert not matrix.called("send_state") and not matrix.called("invite")
    assert await rows.audit("state.repaired") == []


async def test_a_stranger_is_removed_and_a_missing_party_invited_again(
    market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    record, _ = await market.transactions.create(new_transaction())
    members = matrix.rooms[record.room_id].members
    members["@stranger:localhost"] = "join"
    members[SELLER] = "leave"
    await market.reconciler.repair_room(record.room_id)
    assert members["@stranger:localhost"] == "leave"
    assert members[SELLER] == "invite"
    (removed,) = await rows.audit("member.removed")
    assert (removed["subject"], removed["detail"]) == ("@stranger:localhost", "was join")


async def test_a_banned_party_is_not_invited_again(market: Market, matrix: FakeMatrix) -> None:
    record, _ = await market.transactions.create(new_transaction())
    matrix.rooms[record.room_id].members[BUYER] = "ban"
    matrix.forget_calls()
    await market.reconciler.repair_room(record.room_id)
    assert not [call for call in matrix.called("invite") if call[1] == BUYER]


async def test_a_notice_is_posted_once_even_after_a_crash_before_it_was_recorded(
    market: Market, matrix: FakeMatrix, db
) -> None:
    record, _ = await market.transactions.create(new_transaction())
    # The bridge crashed after sending, before recording: the record is gone.
    await db.execute("DELETE FROM bot_actions")
    await market.reconciler.repair_room(record.room_id)
    # The same txn id: the homeserver answers with the event it made the first time.
    assert len(matrix.messages_in(record.room_id)) == 1
    sends = matrix.called("send_message")
    assert len({call[3] for call in sends}) == 1 and len(sends) == 2


async def test_the_homeserver_down_fails_the_call_and_the_retry_completes_the_same_room(
    market: Market, matrix: FakeMatrix
) -> None:
    matrix.fail("create_room", HomeserverUnavailable("503"))
    with pytest.raises(HomeserverUnavailable):
        await market.transactions.create(new_transaction())
    record, created = await market.transactions.create(new_transaction())
    assert not created and record.room_id is not None and len(matrix.rooms) == 1


async def test_another_process_changing_the_object_meanwhile_is_followed(
    market: Market, matrix: FakeMatrix, db
) -> None:
    record, _ = await market.transactions.create(new_transaction())
    room = record.room_id
    real_room_state = matrix.room_state

    async def paid_by_another_process_while_reading(room_id):
        # Another bridge process records the payment while this one writes the old plan.
        await db.execute("UPDATE transactions SET state = 'paid', paid_at = 1")
        matrix.room_state = real_room_state  # type: ignore[method-assign]
        return await real_room_state(room_id)

    matrix.room_state = paid_by_another_process_while_reading  # type: ignore[method-assign]
    await market.reconciler.repair_room(room)
    levels = matrix.state_of(room, "m.room.power_levels")
    assert levels["events_default"] == EVENTS_DEFAULT[Access.OPEN]
    assert any("Payment" in m["body"] for m in matrix.messages_in(room))
