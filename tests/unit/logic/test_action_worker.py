"""The action worker: planned actions claimed, performed, retried and finished, by a fake clock."""

from __future__ import annotations

import asyncio
import json
from collections import deque

import pytest
from mautrix.util.async_db import Database

from appservice.matrix import HomeserverUnavailable, MatrixError
from bridge.config import Config
from bridge.market import Market
from bridge.market.records.audit import AuditEntry
from bridge.policybot.action_worker import BACKOFF, BATCH, LEASE_MS, MAX_ATTEMPTS, ActionWorker
from bridge.policybot.actions import ActionKind, PlannedAction, PlannedActions, plan_actions
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeups
from policy.ids import RoomId
from tests.harness import eventually

from .conftest import BUYER, Rows, build_performer, look, new_transaction
from .fakes import FakeClock, FakeMatrix

ROOM = RoomId("!room:localhost")
STRANGER = "@stranger:localhost"


class ScriptedPerform:
    """A stand-in for `ActionPerformer.perform`: records each action, then raises or returns
    what the script says next (an audit entry naming the action when the script is empty)."""

    def __init__(self) -> None:
        self.performed: list[PlannedAction] = []
        self.script: deque[BaseException | AuditEntry | None] = deque()

    async def __call__(self, action: PlannedAction) -> AuditEntry | None:
        self.performed.append(action)
        await asyncio.sleep(0)
        if self.script:
            outcome = self.script.popleft()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return AuditEntry("@marketbot:localhost", f"did.{action.kind}", action.room_id)

    @property
    def keys(self) -> list[str]:
        return [action.key for action in self.performed]


@pytest.fixture
def perform() -> ScriptedPerform:
    return ScriptedPerform()


def make_worker(
    db: Database,
    perform,
    config: Config,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
) -> ActionWorker:
    return ActionWorker(
        PlannedActions(db), perform, config.bot_mxid, clock, metrics, wakeups.actions
    )


@pytest.fixture
def worker(
    db: Database,
    perform: ScriptedPerform,
    config: Config,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
) -> ActionWorker:
    return make_worker(db, perform, config, clock, metrics, wakeups)


def kick(key: str = "kick:$e1", due_at: int = 0) -> PlannedAction:
    return PlannedAction(
        key, ROOM, ActionKind.KICK, {"user_id": STRANGER, "reason": "not a party"}, due_at
    )


async def plan(db: Database, clock: FakeClock, *actions: PlannedAction) -> None:
    async with db.acquire() as conn, conn.transaction():
        await plan_actions(conn, list(actions), clock.now_ms())


def counted(metrics: Metrics, kind: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "bridge_policy_actions_total", {"kind": kind, "outcome": outcome}
    )
    return value or 0.0


async def test_a_due_action_is_performed_and_marked_done_with_its_audit_entry(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock, rows: Rows
) -> None:
    await plan(db, clock, kick())
    clock.advance(1)
    await worker.drain()
    assert perform.performed == [kick()]
    (row,) = await rows.planned()
    assert (row["status"], row["attempts"], row["done_at"], row["last_error"]) == (
        "done",
        1,
        clock.now_ms(),
        None,
    )
    (audit,) = await rows.audit("did.kick")
    assert audit["at"] == clock.now_ms() and audit["room_id"] == ROOM


async def test_a_done_action_is_not_performed_again(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock
) -> None:
    await plan(db, clock, kick())
    await worker.drain()
    clock.advance(LEASE_MS / 1000 + 1)
    await worker.drain()
    assert perform.keys == ["kick:$e1"]


async def test_an_action_with_nothing_to_say_is_done_without_an_audit_entry(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock, rows: Rows
) -> None:
    perform.script.append(None)
    await plan(db, clock, kick())
    await worker.drain()
    assert [row["status"] for row in await rows.planned()] == ["done"]
    assert await rows.audit() == []


async def test_actions_are_performed_oldest_first(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock
) -> None:
    await plan(db, clock, kick("kick:$b"), kick("kick:$a"), kick("kick:$c"))
    await worker.drain()
    assert perform.keys == ["kick:$b", "kick:$a", "kick:$c"]


@pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)
async def test_a_room_waiting_on_the_homeserver_does_not_hold_another_rooms_actions(
    db: Database, config: Config, clock: FakeClock, metrics: Metrics, wakeups: Wakeups
) -> None:
    other = RoomId("!other:localhost")
    other_done = asyncio.Event()
    performed: list[str] = []

    async def perform(action: PlannedAction) -> None:
        if action.room_id == ROOM:  # answered only once the other room's turn has come
            await other_done.wait()
        else:
            other_done.set()
        performed.append(action.key)

    later = PlannedAction("kick:$o1", other, ActionKind.KICK, {"user_id": STRANGER})
    await plan(db, clock, kick("kick:$e1"), kick("kick:$e2"), later)
    async with asyncio.timeout(10):  # one action at a time would wait here for ever
        await make_worker(db, perform, config, clock, metrics, wakeups).drain()
    assert performed == ["kick:$o1", "kick:$e1", "kick:$e2"]  # each room's in order


async def test_an_action_due_later_waits_until_the_clock_passes_its_due_time(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock, rows: Rows
) -> None:
    due_at = clock.now_ms() + 60_000
    unmute = PlannedAction("unmute:$e1", ROOM, ActionKind.UNMUTE, {"user_id": BUYER}, due_at)
    await plan(db, clock, unmute)
    await worker.drain()
    clock.advance(59.999)
    await worker.drain()
    assert perform.performed == []
    assert [row["status"] for row in await rows.planned()] == ["pending"]
    clock.advance(0.001)
    await worker.drain()
    assert perform.keys == ["unmute:$e1"]
    assert [row["status"] for row in await rows.planned()] == ["done"]


@pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)
async def test_the_watch_wakes_the_worker_once_an_action_comes_due(
    worker: ActionWorker, db: Database, clock: FakeClock, wakeups: Wakeups
) -> None:
    due_at = clock.now_ms() + 60_000
    unmute = PlannedAction("unmute:$e1", ROOM, ActionKind.UNMUTE, {"user_id": BUYER}, due_at)
    await plan(db, clock, unmute)
    await look(db, clock, worker.due)
    assert wakeups.actions.sets == 0  # type: ignore[attr-defined]
    clock.advance(60)
    await look(db, clock, worker.due)
    assert wakeups.actions.sets == 1  # type: ignore[attr-defined]


async def test_more_actions_than_a_batch_are_all_carried_out_in_one_drain(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock
) -> None:
    await plan(db, clock, *(kick(f"kick:${n}") for n in range(BATCH + 5)))
    await worker.drain()
    assert perform.keys == [f"kick:${n}" for n in range(BATCH + 5)]


async def test_the_homeserver_unavailable_reschedules_the_action_after_a_backoff(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock, rows: Rows
) -> None:
    perform.script.append(HomeserverUnavailable("kick: connection refused"))
    await plan(db, clock, kick())
    failed_at = clock.now_ms()
    await worker.drain()
    (row,) = await rows.planned()
    assert (row["status"], row["attempts"], row["lease_until"]) == ("pending", 1, 0)
    assert row["due_at"] == failed_at + 2_000
    assert "connection refused" in row["last_error"]
    assert await rows.audit() == []

    clock.advance(1.999)
    await worker.drain()
    assert len(perform.performed) == 1  # not yet
    clock.advance(0.001)
    await worker.drain()
    assert len(perform.performed) == 2
    (row,) = await rows.planned()
    assert (row["status"], row["attempts"]) == ("done", 2)


async def test_retries_back_off_2_4_8_seconds(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock, rows: Rows
) -> None:
    perform.script.extend(HomeserverUnavailable("down") for _ in range(3))
    await plan(db, clock, kick())
    waits = []
    for _ in range(3):
        await worker.drain()
        (row,) = await rows.planned()
        waits.append(row["due_at"] - clock.now_ms())
        clock.advance(waits[-1] / 1000)
    assert waits == [2_000, 4_000, 8_000]
    assert [BACKOFF.delay(n) for n in (1, 2, 3)] == [2, 4, 8]
    await worker.drain()
    assert [row["status"] for row in await rows.planned()] == ["done"]


async def test_after_max_attempts_of_the_homeserver_unavailable_the_action_fails_audited(
    worker: ActionWorker,
    perform: ScriptedPerform,
    db: Database,
    clock: FakeClock,
    rows: Rows,
    metrics: Metrics,
) -> None:
    perform.script.extend(HomeserverUnavailable("still down") for _ in range(MAX_ATTEMPTS + 1))
    await plan(db, clock, kick())
    for _ in range(MAX_ATTEMPTS):
        await worker.drain()
        clock.advance(BACKOFF.maximum)
    assert len(perform.performed) == MAX_ATTEMPTS
    (row,) = await rows.planned()
    assert (row["status"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert row["last_error"] == "still down"
    (audit,) = await rows.audit("action.kick")
    assert (audit["outcome"], audit["subject"], audit["detail"]) == (
        "failed",
        STRANGER,
        "still down",
    )
    await worker.drain()  # parked: never tried again
    assert len(perform.performed) == MAX_ATTEMPTS
    assert counted(metrics, "kick", "failed") == 1 and counted(metrics, "kick", "done") == 0


async def test_a_refusal_by_the_homeserver_fails_the_action_at_once(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock, rows: Rows
) -> None:
    perform.script.append(MatrixError(403, "M_FORBIDDEN", "You cannot kick this user"))
    redact = PlannedAction(
        "redact:$e9", ROOM, ActionKind.REDACT, {"event_id": "$e9", "rule": "r", "reason": "r"}
    )
    await plan(db, clock, redact)
    await worker.drain()
    clock.advance(BACKOFF.maximum)
    await worker.drain()
    assert len(perform.performed) == 1
    (row,) = await rows.planned()
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "M_FORBIDDEN" in row["last_error"]
    (audit,) = await rows.audit("action.redact")
    assert (audit["outcome"], audit["subject"]) == ("failed", "$e9")
    assert audit["actor"] == "@marketbot:localhost"


async def test_an_unexpected_exception_parks_the_action_instead_of_looping(
    worker: ActionWorker, perform: ScriptedPerform, db: Database, clock: FakeClock, rows: Rows
) -> None:
    perform.script.append(KeyError("user_id"))
    await plan(db, clock, kick("kick:$bad"), kick("kick:$good"))
    await worker.drain()
    assert perform.keys == ["kick:$bad", "kick:$good"]  # the next one still ran
    bad, good = await rows.planned()
    assert (bad["status"], bad["last_error"]) == ("failed", "KeyError: 'user_id'")
    assert good["status"] == "done"
    (audit,) = await rows.audit("action.kick")
    assert audit["outcome"] == "failed" and audit["detail"] == "KeyError: 'user_id'"
    clock.advance(LEASE_MS / 1000 + BACKOFF.maximum)
    await worker.drain()
    assert len(perform.performed) == 2


async def test_a_leased_action_is_left_to_its_holder_until_the_lease_ends(
    perform: ScriptedPerform,
    db: Database,
    config: Config,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    rows: Rows,
) -> None:
    first = ScriptedPerform()
    first.script.append(asyncio.CancelledError())  # its process stops mid-action
    crashed = make_worker(db, first, config, clock, metrics, wakeups)
    second = make_worker(db, perform, config, clock, metrics, wakeups)
    await plan(db, clock, kick())
    with pytest.raises(asyncio.CancelledError):
        await crashed.drain()
    assert len(first.performed) == 1

    await second.drain()
    clock.advance(LEASE_MS / 1000)  # the lease's last moment
    await second.drain()
    assert perform.performed == []

    clock.advance(0.001)
    await second.drain()
    assert perform.keys == ["kick:$e1"]
    (row,) = await rows.planned()
    assert (row["status"], row["attempts"]) == ("done", 2)


async def test_two_workers_draining_together_perform_each_action_once(
    perform: ScriptedPerform,
    db: Database,
    config: Config,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    rows: Rows,
) -> None:
    one = make_worker(db, perform, config, clock, metrics, wakeups)
    two = make_worker(db, perform, config, clock, metrics, wakeups)
    await plan(db, clock, *(kick(f"kick:${n}") for n in range(10)))
    await asyncio.gather(one.drain(), two.drain())
    assert sorted(perform.keys) == sorted(f"kick:${n}" for n in range(10))
    assert all(row["status"] == "done" for row in await rows.planned())


async def test_the_metrics_count_outcomes_by_kind_and_not_retries(
    worker: ActionWorker,
    perform: ScriptedPerform,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    perform.script.extend(
        [
            None,  # kick:$1 done
            MatrixError(404, "M_NOT_FOUND", "unknown room"),  # kick:$2 failed
            HomeserverUnavailable("down"),  # warn:$3 retried
        ]
    )
    warn = PlannedAction("warn:$3", ROOM, ActionKind.WARN, {"user_id": BUYER})
    await plan(db, clock, kick("kick:$1"), kick("kick:$2"), warn)
    await worker.drain()
    assert counted(metrics, "kick", "done") == 1
    assert counted(metrics, "kick", "failed") == 1
    assert counted(metrics, "warn", "done") == 0 and counted(metrics, "warn", "failed") == 0
    clock.advance(2)
    await worker.drain()
    assert counted(metrics, "warn", "done") == 1


async def test_the_worker_carries_out_a_plan_through_the_real_performer(
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    config: Config,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    rows: Rows,
) -> None:
    record, _ = await market.transactions.create(new_transaction())
    room_id = record.room_id
    matrix.rooms[room_id].members[STRANGER] = "join"
    performer = build_performer(market, matrix, db, clock)
    worker = make_worker(db, performer.perform, config, clock, metrics, wakeups)
    action = PlannedAction(
        "kick:$j1", room_id, ActionKind.KICK, {"user_id": STRANGER, "reason": "not a party"}
    )
    await plan(db, clock, action)
    matrix.down = True
    await worker.drain()
    assert matrix.rooms[room_id].members[STRANGER] == "join"
    (row,) = await rows.planned()
    assert row["status"] == "pending" and "connection refused" in row["last_error"]

    matrix.down = False
    clock.advance(2)
    await worker.drain()
    assert matrix.rooms[room_id].members[STRANGER] == "leave"
    (removed,) = await rows.audit("member.removed")
    assert (removed["subject"], removed["reason"]) == (STRANGER, "not a party")
    assert removed["transaction_id"] == "order-1"
    assert json.loads((await rows.planned())[0]["params"])["user_id"] == STRANGER


async def test_a_long_action_keeps_its_short_lease_while_it_runs(
    db: Database,
    config: Config,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    rows: Rows,
) -> None:
    """The lease is a few seconds, renewed while the action runs: another process waits for
    a slow action, and takes over soon after a killed one (its lease is not renewed)."""
    gate = asyncio.Event()
    slow = ScriptedPerform()

    async def held(action: PlannedAction) -> AuditEntry | None:
        await gate.wait()
        return await slow(action)

    holder = ActionWorker(
        PlannedActions(db), held, config.bot_mxid, clock, metrics, wakeups.actions, 0.01
    )
    other = ScriptedPerform()
    await plan(db, clock, kick())
    running = asyncio.create_task(holder.drain())
    for _ in range(3):  # well past the first lease
        clock.advance(LEASE_MS / 1000)
        until = clock.now_ms() + LEASE_MS

        async def renewed(until: int = until) -> bool:
            (row,) = await rows.planned()
            return row["lease_until"] == until

        await eventually(renewed, within=5)
        await make_worker(db, other, config, clock, metrics, wakeups).drain()
        assert other.performed == []  # still held
    gate.set()
    await running
    (row,) = await rows.planned()
    assert (row["status"], row["attempts"], slow.keys) == ("done", 1, ["kick:$e1"])
