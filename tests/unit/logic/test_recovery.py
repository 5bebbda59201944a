"""Intake and recovery: a homeserver transaction stored before it is acknowledged, one that
could not be stored kept trying (then the homeserver asked to go on), and events a restarted
homeserver never sent read back from room timelines; all on the fake clock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mautrix.util.async_db import Database

from appservice.matrix import HomeserverUnavailable, MatrixError
from appservice.transactions import MalformedEvent, Receipt, Transaction, parse_room_event
from bridge.homeserver import recovery as recovery_module
from bridge.homeserver.inbox import InboxStore, Pending, ReadAlong
from bridge.homeserver.intake import HomeserverIntake
from bridge.homeserver.recovery import (
    OUTAGE_MARGIN_MS,
    PING_AGAIN_SECONDS,
    PING_RETRY,
    READ_BACK_AFTER_SECONDS,
    READ_BACK_ATTEMPTS,
    READ_BACK_RETRY,
    STORE_RETRY,
    Recovery,
)
from bridge.market import Market
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup
from policy.ids import RoomId, TransactionId, UserId
from policy.states import Outcome

from .conftest import BUYER, SELLER, CountingWakeup, new_transaction, until
from .fakes import START_MS, FakeClock, FakeMatrix

BOT = UserId("@marketbot:localhost")
_ids = itertools.count(1)


class RecordingRecovery:
    """Stands in for `Recovery` where the intake hands over what it could not store."""

    def __init__(self) -> None:
        self.refused: list[Transaction] = []

    def store_failed(self, txn: Transaction) -> None:
        self.refused.append(txn)

    async def store_refused(self) -> None:
        pass  # nothing refused is ever stored here


class FlakyInbox(InboxStore):
    """Storing fails the first ``failures`` times (the database cut), then works."""

    def __init__(self, db: Database, clock: FakeClock, failures: int) -> None:
        super().__init__(db, clock)
        self.failures = failures
        self.attempts = 0

    async def store_transaction(
        self, txn: Transaction, along: ReadAlong | None = None
    ) -> Pending | None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("database unreachable")
        return await super().store_transaction(txn, along)


@pytest.fixture
def inbox_wakeup() -> CountingWakeup:
    return CountingWakeup()


def build_recovery(
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    wakeup: Wakeup,
    active_rooms: Callable[[], Awaitable[list[RoomId]]] | None = None,
    watch_seconds: float = 0,
) -> Recovery:
    async def no_rooms() -> list[RoomId]:
        return []

    return Recovery(
        matrix,  # type: ignore[arg-type]
        inbox,
        active_rooms or no_rooms,
        "marketplace",
        watch_seconds,
        clock,
        metrics,
        wakeup,
    )


@pytest.fixture
def recovery(
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
    market: Market,
) -> Recovery:
    async def active_rooms() -> list[RoomId]:
        return await market.rooms.active()

    return build_recovery(matrix, inbox, clock, metrics, inbox_wakeup, active_rooms)


def text(room_id: str, sender: str, body: str, ts: int = START_MS) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": f"$ev{next(_ids)}",
        "room_id": room_id,
        "sender": sender,
        "origin_server_ts": ts,
        "content": {"msgtype": "m.text", "body": body},
    }


def transaction(*events: dict[str, Any], receipts: list[Receipt] = ()) -> Transaction:
    parsed = [parse_room_event(event) for event in events]
    return Transaction(f"txn{next(_ids)}", parsed, list(receipts))


async def stored_ids(db: Database, room_id: str | None = None) -> list[str]:
    rows = await db.fetch(
        "SELECT event_id, room_id FROM inbox_events WHERE event_type <> 'm.receipt' ORDER BY seq"
    )
    return [row["event_id"] for row in rows if room_id is None or row["room_id"] == room_id]


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


def fill(matrix: FakeMatrix, room_id: RoomId, count: int, step_ms: int = 1000) -> list[str]:
    """``count`` messages in the room's timeline, one every ``step_ms``; their ids, oldest
    first."""
    return [
        matrix.post(
            room_id, BUYER, {"msgtype": "m.text", "body": f"m{i}"}, ts=START_MS + i * step_ms
        )
        for i in range(count)
    ]


# --- intake -----------------------------------------------------------------------------------


@pytest.fixture
def intake(
    inbox: InboxStore, metrics: Metrics, inbox_wakeup: CountingWakeup
) -> tuple[HomeserverIntake, RecordingRecovery]:
    refused = RecordingRecovery()
    return HomeserverIntake(inbox, BOT, metrics, inbox_wakeup, refused), refused


async def test_intake_stores_a_transaction_and_wakes_the_inbox(
    intake: tuple[HomeserverIntake, RecordingRecovery],
    inbox: InboxStore,
    inbox_wakeup: CountingWakeup,
    db: Database,
) -> None:
    handler, refused = intake
    said = text("!room:localhost", BUYER, "hello")
    await handler.store_transaction(transaction(said))
    stored = await inbox.get_event(RoomId("!room:localhost"), said["event_id"])
    assert stored is not None and stored.status == "pending" and stored.sender == BUYER
    assert inbox_wakeup.sets == 1
    assert refused.refused == []


async def test_intake_counts_transactions_events_by_status_and_receipts(
    intake: tuple[HomeserverIntake, RecordingRecovery], metrics: Metrics, db: Database
) -> None:
    handler, _ = intake
    room = "!room:localhost"
    good = [text(room, BUYER, "a"), text(room, SELLER, "b")]
    broken = {"type": "m.room.message", "event_id": "$broken", "room_id": room}
    receipts = [Receipt(room, SELLER, good[0]["event_id"], START_MS + 5)]
    txn = transaction(*good, broken, receipts=receipts)
    assert isinstance(txn.events[-1], MalformedEvent)
    await handler.store_transaction(txn)
    assert sample(metrics, "bridge_homeserver_transactions_total", {"result": "stored"}) == 1
    assert sample(metrics, "bridge_inbox_events_received_total", {"status": "pending"}) == 2
    assert sample(metrics, "bridge_inbox_events_received_total", {"status": "dead"}) == 1
    assert sample(metrics, "bridge_read_receipts_received_total") == 1
    statuses = dict(await db.fetch("SELECT event_id, status FROM inbox_events"))
    assert statuses["$broken"] == "dead"


async def test_a_resent_transaction_is_stored_once_but_counted_as_it_arrives(
    intake: tuple[HomeserverIntake, RecordingRecovery], metrics: Metrics, db: Database
) -> None:
    handler, _ = intake
    said = text("!room:localhost", BUYER, "hello")
    await handler.store_transaction(transaction(said))
    await handler.store_transaction(transaction(said))
    assert await stored_ids(db) == [said["event_id"]]
    assert sample(metrics, "bridge_homeserver_transactions_total", {"result": "stored"}) == 2
    assert sample(metrics, "bridge_inbox_events_received_total", {"status": "pending"}) == 2


async def test_a_storage_failure_goes_to_recovery_and_is_raised(
    intake: tuple[HomeserverIntake, RecordingRecovery],
    inbox_wakeup: CountingWakeup,
    metrics: Metrics,
    db: Database,
) -> None:
    handler, refused = intake
    await db.execute("ALTER TABLE inbox_events RENAME TO inbox_events_away")
    txn = transaction(text("!room:localhost", BUYER, "hello"))
    with pytest.raises(Exception, match="inbox_events"):
        await handler.store_transaction(txn)
    assert refused.refused == [txn]
    assert sample(metrics, "bridge_homeserver_transactions_total", {"result": "failed"}) == 1
    assert sample(metrics, "bridge_homeserver_transactions_total", {"result": "stored"}) == 0
    assert sample(metrics, "bridge_inbox_events_received_total", {"status": "pending"}) == 0
    assert inbox_wakeup.sets == 0


async def test_intake_knows_only_the_bot_and_no_alias(
    intake: tuple[HomeserverIntake, RecordingRecovery],
) -> None:
    handler, _ = intake
    assert await handler.query_user(BOT)
    assert not await handler.query_user("@marketbot_2:localhost")
    assert not await handler.query_alias("#market_transaction_order-1:localhost")


# --- resuming the push after a storage failure --------------------------------------------------


async def test_resume_pushes_keeps_storing_the_refused_transaction_then_pings(
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    flaky = FlakyInbox(db, clock, failures=3)
    recovery = build_recovery(matrix, flaky, clock, metrics, inbox_wakeup)
    said = text("!room:localhost", BUYER, "hello")
    txn = transaction(said)
    recovery.store_failed(txn)
    started = clock.monotonic()
    await recovery.resume_pushes()
    assert flaky.attempts == 4
    assert clock.slept == [STORE_RETRY.delay(n) for n in (1, 2, 3)] == [0.5, 0.5, 0.5]
    assert clock.monotonic() - started == pytest.approx(1.5)
    assert await stored_ids(db) == [said["event_id"]]
    assert inbox_wakeup.sets == 1
    assert [call.args for call in matrix.called("ping")] == [("marketplace",)]
    assert matrix.pings == 1


async def test_resume_pushes_pings_only_once_storing_works(
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    flaky = FlakyInbox(db, clock, failures=2)
    recovery = build_recovery(matrix, flaky, clock, metrics, inbox_wakeup)
    order: list[str] = []
    real_store, real_ping = flaky.store_transaction, matrix.ping

    async def store(txn: Transaction) -> None:
        order.append("store")
        await real_store(txn)

    async def ping(appservice_id: str) -> None:
        order.append("ping")
        await real_ping(appservice_id)

    flaky.store_transaction = store  # type: ignore[method-assign]
    matrix.ping = ping  # type: ignore[method-assign]
    recovery.store_failed(transaction(text("!room:localhost", BUYER, "hello")))
    await recovery.resume_pushes()
    assert order == ["store", "store", "store", "ping"]


async def test_resume_pushes_retries_the_ping_while_the_homeserver_fails(
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    recovery = build_recovery(matrix, inbox, clock, metrics, inbox_wakeup)
    matrix.fail(
        "ping",
        HomeserverUnavailable("connection refused"),
        MatrixError(502, "M_UNKNOWN", "bad gateway"),
        HomeserverUnavailable("connection refused"),
    )
    said = text("!room:localhost", BUYER, "hello")
    recovery.store_failed(transaction(said))
    await recovery.resume_pushes()
    assert len(matrix.called("ping")) == 4 and matrix.pings == 1
    # Stored at once; then the ping's backoff, doubling.
    assert clock.slept == [PING_RETRY.delay(n) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    assert await stored_ids(db) == [said["event_id"]]


async def test_the_homeserver_is_pinged_again_shortly_after_it_answered(
    matrix: FakeMatrix, recovery: Recovery, clock: FakeClock
) -> None:
    # A push that failed just before the ping starts Synapse's recoverer after it, on a
    # 2 s timer: the follow-up pings end that wait; one that fails changes nothing.
    running = asyncio.create_task(recovery.run())
    try:
        await recovery.ask_to_resend()
        assert matrix.pings == 1 and clock.slept == []
        matrix.fail("ping", MatrixError(502, "M_CONNECTION_FAILED", "AlreadyCalled"))
        await until(lambda: matrix.pings == len(PING_AGAIN_SECONDS))  # the first failed
        assert len(matrix.called("ping")) == 1 + len(PING_AGAIN_SECONDS)
        assert clock.slept == list(PING_AGAIN_SECONDS) == [0.5, 1.0]
        assert not running.done()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_real_storage_failure_is_mended_once_the_database_is_back(
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    recovery = build_recovery(matrix, inbox, clock, metrics, inbox_wakeup)
    intake = HomeserverIntake(inbox, BOT, metrics, inbox_wakeup, recovery)
    said = text("!room:localhost", BUYER, "hello")
    await db.execute("ALTER TABLE inbox_events RENAME TO inbox_events_away")
    with pytest.raises(Exception, match="inbox_events"):
        await intake.store_transaction(transaction(said))

    real_sleep = clock.sleep

    async def database_back_after_two_waits(seconds: float) -> None:
        await real_sleep(seconds)
        if len(clock.slept) == 2:
            await db.execute("ALTER TABLE inbox_events_away RENAME TO inbox_events")

    clock.sleep = database_back_after_two_waits  # type: ignore[method-assign]
    await recovery.resume_pushes()
    assert clock.slept == [0.5, 0.5]
    assert await stored_ids(db) == [said["event_id"]]
    assert matrix.pings == 1


async def test_a_newer_transaction_waits_for_the_refused_ones_before_it(
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    """Synapse can send its next transaction before re-sending one the bridge refused: the
    refused ones are stored first, oldest first, so a room's events keep their order."""
    flaky = FlakyInbox(db, clock, failures=2)
    recovery = build_recovery(matrix, flaky, clock, metrics, inbox_wakeup)
    intake = HomeserverIntake(flaky, BOT, metrics, inbox_wakeup, recovery)
    said = [text("!room:localhost", BUYER, f"message {n}") for n in range(3)]
    for refused in said[:2]:
        with pytest.raises(ConnectionError):
            await intake.store_transaction(transaction(refused))
    await intake.store_transaction(transaction(said[2]))  # the database is back
    assert await stored_ids(db) == [event["event_id"] for event in said]
    # A refused transaction Synapse re-sends later is stored once.
    await intake.store_transaction(transaction(said[0]))
    await recovery.store_refused()
    assert await stored_ids(db) == [event["event_id"] for event in said]


async def test_while_storing_fails_newer_transactions_are_refused_and_kept_in_order(
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    flaky = FlakyInbox(db, clock, failures=3)
    recovery = build_recovery(matrix, flaky, clock, metrics, inbox_wakeup)
    intake = HomeserverIntake(flaky, BOT, metrics, inbox_wakeup, recovery)
    said = [text("!room:localhost", BUYER, f"message {n}") for n in range(2)]
    with pytest.raises(ConnectionError):
        await intake.store_transaction(transaction(said[0]))
    with pytest.raises(ConnectionError):  # the refused one first, which fails again
        await intake.store_transaction(transaction(said[1]))
    await recovery.resume_pushes()
    assert await stored_ids(db) == [event["event_id"] for event in said]
    assert matrix.pings == 1


async def test_run_resumes_the_push_whenever_storing_failed(
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    recovery = build_recovery(matrix, inbox, clock, metrics, inbox_wakeup)
    pinged = asyncio.Queue[str]()
    real_ping = matrix.ping

    async def ping(appservice_id: str) -> None:
        await real_ping(appservice_id)
        pinged.put_nowait(appservice_id)

    matrix.ping = ping  # type: ignore[method-assign]
    task = asyncio.create_task(recovery.run())
    try:
        first, second = text("!a:localhost", BUYER, "1"), text("!a:localhost", BUYER, "2")
        pings = 1 + len(PING_AGAIN_SECONDS)  # each resume: a ping and its follow-ups
        recovery.store_failed(transaction(first))
        for _ in range(pings):
            assert await asyncio.wait_for(pinged.get(), 5) == "marketplace"
        recovery.store_failed(transaction(second))  # a later failure comes round again
        for _ in range(pings):
            assert await asyncio.wait_for(pinged.get(), 5) == "marketplace"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await stored_ids(db) == [first["event_id"], second["event_id"]]
    assert matrix.pings == 2 * pings


# --- reading back what the homeserver stranded after a refusal ---------------------------------


def recording_catch_up(recovery: Recovery, clock: FakeClock) -> list[tuple[int, int]]:
    """Each catch-up's ``since_ms`` and when it ran, the real one still running."""
    calls: list[tuple[int, int]] = []
    real = recovery.catch_up

    async def catch_up(since_ms: int) -> int:
        calls.append((since_ms, clock.now_ms()))
        return await real(since_ms)

    recovery.catch_up = catch_up  # type: ignore[method-assign]
    return calls


def recovery_of_one_room(
    matrix: FakeMatrix, inbox: InboxStore, clock: FakeClock, metrics: Metrics
) -> tuple[Recovery, RoomId]:
    """A recovery whose only active room is a new one."""
    room_id = matrix.make_room()

    async def rooms() -> list[RoomId]:
        return [room_id]

    return build_recovery(matrix, inbox, clock, metrics, CountingWakeup(), rooms), room_id


async def test_after_a_refusal_the_active_rooms_are_read_back_twice_from_before_the_resume(
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    """A transaction Synapse makes while its recoverer is finishing is pushed only at its
    next outage (docs/reliability.md): its event is read back from the room instead."""
    recovery, room_id = recovery_of_one_room(matrix, inbox, clock, metrics)
    calls = recording_catch_up(recovery, clock)
    recovery.store_failed(transaction(text(room_id, BUYER, "refused, then stored")))
    clock.advance(60)  # the outage
    await recovery.resume_pushes()
    resumed_at = clock.now_ms()
    (stranded,) = fill(matrix, room_id, 1)  # in the timeline, never pushed
    await recovery.read_back_refused()
    first, second = READ_BACK_AFTER_SECONDS
    since = resumed_at - OUTAGE_MARGIN_MS
    assert calls == [
        (since, resumed_at + round(first * 1000)),
        (since, resumed_at + round((first + second) * 1000)),
    ]
    assert stranded in await stored_ids(db, room_id)
    assert sample(metrics, "bridge_events_read_back_total") == 1
    # The next refusal reads back from its own resume.
    calls.clear()
    recovery.store_failed(transaction(text(room_id, BUYER, "again")))
    clock.advance(60)
    await recovery.resume_pushes()
    resumed_again_at = clock.now_ms()
    await recovery.read_back_refused()
    assert [since for since, _ in calls] == [resumed_again_at - OUTAGE_MARGIN_MS] * 2


async def test_nothing_is_read_back_without_a_refusal(
    recovery: Recovery, matrix: FakeMatrix, clock: FakeClock
) -> None:
    calls = recording_catch_up(recovery, clock)
    await recovery.ask_to_resend()  # as at start-up
    await recovery.read_back_refused()
    assert calls == [] and matrix.called("messages") == []


async def test_a_refusal_during_a_round_ends_it_and_the_next_resume_reads_back(
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    recovery = build_recovery(matrix, inbox, clock, metrics, CountingWakeup())
    calls = recording_catch_up(recovery, clock)
    recovery.store_failed(transaction(text("!room:localhost", BUYER, "one")))
    await recovery.resume_pushes()
    real_sleep = clock.sleep

    async def refused_in_the_second_wait(seconds: float) -> None:
        await real_sleep(seconds)
        if seconds == READ_BACK_AFTER_SECONDS[1]:
            # Refused, and stored at once by the intake before Synapse's next transaction:
            # nothing waits to be stored, and the resume has not pinged yet.
            recovery.store_failed(transaction(text("!room:localhost", BUYER, "two")))
            await recovery.store_refused()

    clock.sleep = refused_in_the_second_wait  # type: ignore[method-assign]
    await recovery.read_back_refused()
    assert len(calls) == 1  # the first read; the second would come during the new outage
    clock.sleep = real_sleep  # type: ignore[method-assign]
    await recovery.resume_pushes()
    resumed_at = clock.now_ms()
    await recovery.read_back_refused()
    assert [since for since, _ in calls[1:]] == [resumed_at - OUTAGE_MARGIN_MS] * 2


async def test_the_read_back_is_tried_again_while_the_homeserver_fails(
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    recovery, room_id = recovery_of_one_room(matrix, inbox, clock, metrics)
    recovery.store_failed(transaction(text(room_id, BUYER, "refused")))
    await recovery.resume_pushes()
    (stranded,) = fill(matrix, room_id, 1)
    matrix.fail("messages", HomeserverUnavailable("timed out"), HomeserverUnavailable("again"))
    clock.slept.clear()
    await recovery.read_back_refused()
    first, second = READ_BACK_AFTER_SECONDS
    retries = [READ_BACK_RETRY.delay(n) for n in (1, 2)]
    assert clock.slept == [first, *retries, second]
    assert stranded in await stored_ids(db, room_id)


async def test_a_read_back_failing_in_a_new_outage_gives_way_to_the_next_resume(
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    attempts = 0

    async def rooms() -> list[RoomId]:  # the database is cut again before Synapse pushes
        nonlocal attempts
        attempts += 1
        recovery.store_failed(transaction(text("!room:localhost", BUYER, "refused")))
        raise ConnectionError("database unreachable")

    recovery = build_recovery(matrix, inbox, clock, metrics, CountingWakeup(), rooms)
    recovery.store_failed(transaction(text("!room:localhost", BUYER, "first")))
    await recovery.resume_pushes()
    clock.slept.clear()
    await recovery.read_back_refused()
    # Not tried again while the new outage lasts: the resume after it reads back.
    assert attempts == 1
    assert clock.slept == [READ_BACK_AFTER_SECONDS[0], READ_BACK_RETRY.delay(1)]


async def test_a_read_back_that_keeps_failing_is_given_up(
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    recovery, room_id = recovery_of_one_room(matrix, inbox, clock, metrics)
    recovery.store_failed(transaction(text(room_id, BUYER, "refused")))
    await recovery.resume_pushes()
    matrix.fail("messages", *(HomeserverUnavailable("502") for _ in range(READ_BACK_ATTEMPTS)))
    clock.slept.clear()
    await recovery.read_back_refused()
    assert len(matrix.called("messages")) == READ_BACK_ATTEMPTS
    retries = [READ_BACK_RETRY.delay(n) for n in range(1, READ_BACK_ATTEMPTS)]
    assert clock.slept == [READ_BACK_AFTER_SECONDS[0], *retries]  # not the second round


async def test_catch_up_reads_every_other_room_before_raising_for_one_unavailable(
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    db: Database,
) -> None:
    room_ids = [matrix.make_room() for _ in range(recovery_module.CATCH_UP_CONCURRENCY + 3)]
    for room_id in room_ids:
        fill(matrix, room_id, 1)

    async def rooms() -> list[RoomId]:
        return room_ids

    wakeup = CountingWakeup()
    recovery = build_recovery(matrix, inbox, clock, metrics, wakeup, rooms)
    matrix.fail("messages", HomeserverUnavailable("timed out"))  # the first room read
    with pytest.raises(HomeserverUnavailable, match="1 rooms not read"):
        await recovery.catch_up(since_ms=0)
    assert len(matrix.called("messages")) == len(room_ids)
    assert len(await stored_ids(db)) == len(room_ids) - 1
    assert wakeup.sets == 1
    assert sample(metrics, "bridge_events_read_back_total") == len(room_ids) - 1


async def test_run_reads_back_after_resuming_the_push(
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    recovery, room_id = recovery_of_one_room(matrix, inbox, clock, metrics)
    (stranded,) = fill(matrix, room_id, 1)
    read_back = asyncio.Event()
    real_catch_up = recovery.catch_up

    async def catch_up(since_ms: int) -> int:
        found = await real_catch_up(since_ms)
        if len(matrix.called("messages")) == len(READ_BACK_AFTER_SECONDS):
            read_back.set()
        return found

    recovery.catch_up = catch_up  # type: ignore[method-assign]
    task = asyncio.create_task(recovery.run())
    try:
        recovery.store_failed(transaction(text(room_id, BUYER, "refused")))
        await asyncio.wait_for(read_back.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert stranded in await stored_ids(db, room_id)


# --- reading back what a restarted homeserver never sent ----------------------------------------


async def test_catch_up_room_pages_back_and_stores_only_what_the_inbox_lacks(
    recovery: Recovery, matrix: FakeMatrix, inbox: InboxStore, db: Database
) -> None:
    room_id = matrix.make_room()
    ids = fill(matrix, room_id, 250)
    timeline = matrix.rooms[room_id].timeline
    # The bridge got one event of each page (newest first: 150-249, 50-149, 0-49).
    got = [timeline[249], timeline[120], timeline[3]]
    await inbox.store_transaction(Transaction("push", [parse_room_event(e) for e in got], []))
    found = await recovery.catch_up_room(room_id, since_ms=0)
    assert found == 247
    calls = [call.args for call in matrix.called("messages")]
    assert calls == [(room_id, None, 100), (room_id, "150", 100), (room_id, "50", 100)]
    stored = await stored_ids(db, room_id)
    assert sorted(stored) == sorted(ids) and len(stored) == len(set(stored)) == 250
    # The read-back events come after those already stored, oldest first.
    missing = [i for i in ids if i not in {e["event_id"] for e in got}]
    assert stored[3:] == missing


async def test_catching_up_twice_stores_nothing_twice(
    recovery: Recovery, matrix: FakeMatrix, db: Database
) -> None:
    room_id = matrix.make_room()
    fill(matrix, room_id, 30)
    assert await recovery.catch_up_room(room_id, since_ms=0) == 30
    assert await recovery.catch_up_room(room_id, since_ms=0) == 0
    assert len(await stored_ids(db, room_id)) == 30


async def test_catch_up_room_stops_at_the_page_reaching_back_past_since(
    recovery: Recovery, matrix: FakeMatrix, db: Database
) -> None:
    room_id = matrix.make_room()
    ids = fill(matrix, room_id, 250, step_ms=1000)
    # Event 180 was sent at since: the first page (events 150-249) already reaches past it.
    found = await recovery.catch_up_room(room_id, since_ms=START_MS + 180 * 1000)
    assert len(matrix.called("messages")) == 1
    assert found == 100
    assert await stored_ids(db, room_id) == ids[150:]


async def test_catch_up_room_reads_on_while_the_pages_are_newer_than_since(
    recovery: Recovery, matrix: FakeMatrix, db: Database
) -> None:
    room_id = matrix.make_room()
    ids = fill(matrix, room_id, 250, step_ms=1000)
    # Event 120 was sent at since: the second page (50-149) reaches past it, not the first.
    found = await recovery.catch_up_room(room_id, since_ms=START_MS + 120 * 1000)
    assert len(matrix.called("messages")) == 2
    assert found == 200
    assert await stored_ids(db, room_id) == ids[50:]


async def test_catch_up_room_reads_at_most_max_pages(
    recovery: Recovery, matrix: FakeMatrix, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery_module, "PAGE_SIZE", 2)
    room_id = matrix.make_room()
    ids = fill(matrix, room_id, recovery_module.MAX_PAGES * 2 + 10)
    found = await recovery.catch_up_room(room_id, since_ms=0)
    assert len(matrix.called("messages")) == recovery_module.MAX_PAGES
    assert found == recovery_module.MAX_PAGES * 2
    assert await stored_ids(db, room_id) == ids[10:]


async def test_an_empty_timeline_stores_nothing(
    recovery: Recovery, matrix: FakeMatrix, db: Database
) -> None:
    room_id = matrix.make_room()
    assert await recovery.catch_up_room(room_id, since_ms=0) == 0
    assert await stored_ids(db) == []


async def test_a_read_back_event_becomes_pending_for_the_inbox_worker(
    recovery: Recovery, matrix: FakeMatrix, inbox: InboxStore, clock: FakeClock, db: Database
) -> None:
    room_id = matrix.make_room()
    (event_id,) = fill(matrix, room_id, 1)
    await recovery.catch_up_room(room_id, since_ms=0)
    stored = await inbox.get_event(room_id, event_id)
    assert stored is not None
    assert (stored.status, stored.sender, stored.origin_server_ts) == ("pending", BUYER, START_MS)
    txn = await db.fetchval("SELECT txn_id FROM inbox_events WHERE event_id = $1", event_id)
    assert txn == f"catch-up:{room_id}:{clock.now_ms()}"


async def test_catch_up_reads_every_active_room_and_counts_what_it_found(
    recovery: Recovery,
    market: Market,
    matrix: FakeMatrix,
    db: Database,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    open_one, _ = await market.transactions.create(new_transaction("order-1"))
    other, _ = await market.transactions.create(new_transaction("order-2"))
    closed, _ = await market.transactions.create(new_transaction("order-3"))
    await market.transactions.close(TransactionId("order-3"), Outcome.CANCELLED)
    before = {
        room: len(matrix.rooms[room].timeline)
        for room in (open_one.room_id, other.room_id, closed.room_id)
    }
    matrix.post(open_one.room_id, BUYER, {"msgtype": "m.text", "body": "x"})
    matrix.post(open_one.room_id, SELLER, {"msgtype": "m.text", "body": "x2"})
    matrix.post(other.room_id, SELLER, {"msgtype": "m.text", "body": "y"})
    matrix.post(closed.room_id, SELLER, {"msgtype": "m.text", "body": "z"})
    found = await recovery.catch_up(since_ms=0)
    # Everything in the two active rooms' timelines was new to the inbox (the bot's own
    # events included); the closed transaction's room is not read.
    read = {call[0] for call in matrix.called("messages")}
    assert read == {open_one.room_id, other.room_id}
    assert len(await stored_ids(db, open_one.room_id)) == before[open_one.room_id] + 2
    assert len(await stored_ids(db, other.room_id)) == before[other.room_id] + 1
    assert await stored_ids(db, closed.room_id) == []
    assert found == before[open_one.room_id] + 2 + before[other.room_id] + 1
    assert sample(metrics, "bridge_events_read_back_total") == found
    assert inbox_wakeup.sets == 1


async def test_catch_up_wakes_the_inbox_whichever_room_finishes_last(
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    inbox = InboxStore(db, clock)
    with_news, without = matrix.make_room(), matrix.make_room()
    fill(matrix, with_news, 2)
    old_news = fill(matrix, without, 1)
    await inbox.store_transaction(
        Transaction("push", [parse_room_event(matrix.rooms[without].timeline[0])], [])
    )
    assert await stored_ids(db, without) == old_news
    stored = asyncio.Event()
    real_store, real_messages = inbox.store_transaction, matrix.messages

    async def store(txn: Transaction) -> None:
        await real_store(txn)
        stored.set()

    async def messages(room_id: RoomId, from_token: str | None, limit: int) -> Any:
        if room_id == without:  # this room answers after the other room's events are stored
            await stored.wait()
        return await real_messages(room_id, from_token, limit)

    inbox.store_transaction = store  # type: ignore[method-assign]
    matrix.messages = messages  # type: ignore[method-assign]

    async def rooms() -> list[RoomId]:
        return [with_news, without]

    recovery = build_recovery(matrix, inbox, clock, metrics, inbox_wakeup, rooms)
    found = await recovery.catch_up(since_ms=0)
    assert len(await stored_ids(db, with_news)) == 2
    assert found == 2
    assert inbox_wakeup.sets == 1
    assert sample(metrics, "bridge_events_read_back_total") == 2


async def test_catch_up_with_nothing_missing_neither_counts_nor_wakes(
    recovery: Recovery,
    market: Market,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    await market.transactions.create(new_transaction())
    assert await recovery.catch_up(since_ms=0) > 0
    inbox_wakeup.sets = 0
    assert await recovery.catch_up(since_ms=0) == 0
    assert inbox_wakeup.sets == 0
    assert sample(metrics, "bridge_events_read_back_total") > 0  # only the first time


async def test_a_room_the_bot_cannot_read_is_skipped_and_the_others_read(
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
    db: Database,
) -> None:
    readable = matrix.make_room()
    fill(matrix, readable, 3)

    async def rooms() -> list[RoomId]:
        return [RoomId("!gone:localhost"), readable]

    recovery = build_recovery(matrix, inbox, clock, metrics, inbox_wakeup, rooms)
    assert await recovery.catch_up(since_ms=0) == 3
    assert len(await stored_ids(db, readable)) == 3


async def test_catch_up_raises_the_database_error_that_stopped_it(
    matrix: FakeMatrix,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    cut = FlakyInbox(db, clock, failures=1)
    recovery, room_id = recovery_of_one_room(matrix, cut, clock, metrics)
    fill(matrix, room_id, 1)
    with pytest.raises(ConnectionError, match="database unreachable"):
        await recovery.catch_up(since_ms=0)


async def test_catch_up_raises_when_the_homeserver_is_unavailable(
    recovery: Recovery,
    market: Market,
    matrix: FakeMatrix,
    inbox_wakeup: CountingWakeup,
    db: Database,
) -> None:
    await market.transactions.create(new_transaction())
    matrix.down = True
    with pytest.raises(HomeserverUnavailable):
        await recovery.catch_up(since_ms=0)
    assert await stored_ids(db) == []
    assert inbox_wakeup.sets == 0


async def test_the_watch_catches_up_once_the_homeserver_answers_again(
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    recovery = build_recovery(matrix, inbox, clock, metrics, inbox_wakeup, watch_seconds=10)
    caught_up: list[tuple[int, int]] = []

    async def catch_up(since_ms: int) -> int:
        caught_up.append((since_ms, clock.now_ms()))
        return 0

    recovery.catch_up = catch_up  # type: ignore[method-assign]
    # Round 1 answers, rounds 2 and 3 do not, round 4 and later answer again.
    answers = [True, False, False, True, True, True, True, True]
    rounds = 0
    watched = asyncio.Event()

    async def versions() -> dict[str, Any]:
        nonlocal rounds
        rounds += 1
        if rounds == len(answers):
            watched.set()
        if not answers[min(rounds, len(answers)) - 1]:
            raise HomeserverUnavailable("connection refused")
        return {"versions": ["v1.11"]}

    matrix.versions = versions  # type: ignore[method-assign]
    task = asyncio.create_task(recovery.run())
    try:
        await asyncio.wait_for(watched.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Once, in round 4, back to shortly before round 1 (the last answer before the outage).
    assert caught_up == [(START_MS - OUTAGE_MARGIN_MS, START_MS + 3 * 10_000)]


async def test_a_failed_catch_up_is_tried_again_on_the_next_round(
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    inbox_wakeup: CountingWakeup,
) -> None:
    recovery = build_recovery(matrix, inbox, clock, metrics, inbox_wakeup, watch_seconds=10)
    attempts: list[int] = []
    done = asyncio.Event()

    async def catch_up(since_ms: int) -> int:
        attempts.append(since_ms)
        if len(attempts) < 3:
            raise HomeserverUnavailable("timed out reading a room")
        done.set()
        return 0

    recovery.catch_up = catch_up  # type: ignore[method-assign]
    rounds = 0

    async def versions() -> dict[str, Any]:
        nonlocal rounds
        rounds += 1
        if rounds == 2:
            raise HomeserverUnavailable("connection refused")
        return {"versions": ["v1.11"]}

    matrix.versions = versions  # type: ignore[method-assign]
    task = asyncio.create_task(recovery.run())
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Each retry goes back to the same point: before the last answer ahead of the outage.
    assert attempts == [START_MS - OUTAGE_MARGIN_MS] * 3
