"""The reconcile compares what changed since its last completed run, not every room: a room
changed while the bridge was stopped is repaired at start, an unchanged one is not read, a
failed one is tried again, the full run compares everything, and one process runs at a time."""

from __future__ import annotations

from pathlib import Path

from appservice.matrix import HomeserverUnavailable
from bridge.config import Config
from bridge.market import Market
from bridge.runtime.workers import Wakeup
from policy.ids import TransactionId
from policy.rooms import TRANSACTION_TOPICS
from policy.states import Access, Outcome
from tests.harness import make_config

from .conftest import new_transaction
from .fakes import FakeClock, FakeMatrix

TOPIC = ("m.room.topic", "")


def restarted(config: Config, db, matrix: FakeMatrix, clock: FakeClock) -> Market:
    """The bridge started again (a new process) on the same database and homeserver."""
    return Market.build(config, db, matrix, clock, Wakeup())  # type: ignore[arg-type]


async def rooms_of(market: Market, count: int) -> list[str]:
    """``count`` paid transactions; their room ids."""
    rooms = []
    for n in range(1, count + 1):
        transaction_id = TransactionId(f"order-{n}")
        await market.transactions.create(new_transaction(transaction_id))
        record = await market.transactions.record_payment(transaction_id)
        rooms.append(record.room_id)
    return rooms


def drift(matrix: FakeMatrix, room_id: str) -> None:
    matrix.rooms[room_id].state[TOPIC] = {"topic": "DM me elsewhere"}


def drifted(matrix: FakeMatrix, room_id: str) -> bool:
    return matrix.state_of(room_id, "m.room.topic")["topic"] == "DM me elsewhere"


def read(matrix: FakeMatrix) -> set[str]:
    """The rooms whose state the bot read since the calls were last forgotten."""
    return {call[0] for call in matrix.called("room_state")}


async def store_state_event(db, clock: FakeClock, room_id: str, event_type: str, n: int) -> None:
    """What the homeserver's push stores for a state event (its JSON is not read here)."""
    await db.execute(
        "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
        " event_json, status, txn_id, received_at) VALUES ($1, $2, $3, $4, $5, '{}', 'done',"
        " 't', $5)",
        f"$state{n}",
        room_id,
        event_type,
        "@marketbot:localhost",
        clock.now_ms(),
    )


async def test_the_first_run_compares_every_room_and_the_next_only_what_changed(
    market: Market, matrix: FakeMatrix, clock: FakeClock, config: Config, db
) -> None:
    rooms = await rooms_of(market, 4)
    clock.advance(600)  # the rooms' changes are older than the margin of the next runs
    for room in rooms:
        drift(matrix, room)
    assert await market.reconciler.run("start") >= 4  # no completed run yet: every room
    assert not any(drifted(matrix, room) for room in rooms)
    clock.advance(3600)
    # While the bridge is stopped: the bot's token changes one room's topic (its event is
    # stored when the homeserver sends it), and the marketplace closes another transaction
    # whose room update fails half-way.
    drift(matrix, rooms[0])
    await store_state_event(db, clock, rooms[0], "m.room.topic", 1)
    matrix.fail("send_state", HomeserverUnavailable("503"))
    try:
        await market.transactions.close(TransactionId("order-2"), Outcome.COMPLETED)
    except HomeserverUnavailable:
        pass
    drift(matrix, rooms[3])  # drift the bridge cannot see: left to the full run
    clock.advance(3600)
    matrix.forget_calls()
    again = restarted(config, db, matrix, clock)
    assert await again.reconciler.run("start") == 2
    assert read(matrix) >= {rooms[0], rooms[1]}
    assert not read(matrix) & {rooms[2], rooms[3]}  # unchanged: not even read
    assert not drifted(matrix, rooms[0])
    assert (
        matrix.state_of(rooms[1], "m.room.topic")["topic"] == (TRANSACTION_TOPICS[Access.ARCHIVED])
    )
    assert drifted(matrix, rooms[3])
    # Nothing changed since: the next runs read nothing.
    matrix.forget_calls()
    clock.advance(5)
    assert await again.reconciler.run() == 0
    assert read(matrix) == set()
    # The full comparison (the command, the daily run) reads every room.
    assert await again.reconciler.run("full") >= 4
    assert read(matrix) >= set(rooms)
    assert not drifted(matrix, rooms[3])


async def test_a_room_that_failed_is_compared_again_until_it_succeeds(
    market: Market, matrix: FakeMatrix, clock: FakeClock, db
) -> None:
    rooms = await rooms_of(market, 2)
    clock.advance(600)
    await market.reconciler.run()
    clock.advance(600)
    await store_state_event(db, clock, rooms[0], "m.room.power_levels", 1)
    drift(matrix, rooms[0])
    matrix.fail("room_state", HomeserverUnavailable("503"))
    clock.advance(600)  # past the margin: the event alone would not select it again
    assert await market.reconciler.run() == 1
    assert drifted(matrix, rooms[0])
    assert await db.fetchval("SELECT COUNT(*) FROM reconcile_failures") == 1
    clock.advance(3600)
    matrix.forget_calls()
    assert await market.reconciler.run() == 0  # not on every tick
    assert await market.reconciler.run("start") == 1
    assert read(matrix) >= {rooms[0]} and not drifted(matrix, rooms[0])
    assert rooms[1] not in read(matrix)
    assert await db.fetchval("SELECT COUNT(*) FROM reconcile_failures") == 0


async def test_changed_settings_of_the_plans_compare_every_room(
    market: Market, matrix: FakeMatrix, clock: FakeClock, db, tmp_path: Path
) -> None:
    rooms = await rooms_of(market, 3)
    clock.advance(600)
    await market.reconciler.run()
    clock.advance(3600)
    matrix.forget_calls()
    config = make_config(
        database_url=f"sqlite://{tmp_path / 'bridge.db'}", rooms={"admins": ["@other:localhost"]}
    )
    assert await restarted(config, db, matrix, clock).reconciler.run() >= 3
    assert read(matrix) >= set(rooms)


async def test_one_process_runs_the_reconcile_at_a_time(
    market: Market, matrix: FakeMatrix, clock: FakeClock, config: Config, db
) -> None:
    await rooms_of(market, 2)
    clock.advance(600)
    await market.reconciler.run()  # the first run is full
    await market.reconciler.run()  # then a 'changed' one: this process holds both leases
    other = restarted(config, db, matrix, clock)
    assert await other.reconciler.run() is None
    assert await other.reconciler.run("full") is None
    await market.reconciler.release()  # a clean stop hands them over at once
    assert await other.reconciler.run("full") >= 2
    assert await market.reconciler.run("full") is None
    clock.advance(120)  # a process that died: its leases end
    assert await market.reconciler.run("full") >= 2


async def test_the_full_run_is_due_after_its_interval(market: Market, clock: FakeClock) -> None:
    await market.reconciler.run()  # the first run is full
    assert not await market.reconciler.due("full", 86400)
    clock.advance(86400)
    assert await market.reconciler.due("full", 86400)
    assert not await market.reconciler.due("full", 0)
