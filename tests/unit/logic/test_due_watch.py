"""`DueWatch`: one statement a second for every worker's look, each given its own values."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mautrix.util.async_db import Database

from bridge.runtime.due import DueCheck, DueWatch
from tests.harness import eventually

from .fakes import FakeClock

pytestmark = pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)


class CountingDatabase:
    """The database, with the statements sent to it counted."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.scheme = db.scheme
        self.statements: list[str] = []

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.statements.append(query)
        return await self._db.fetchrow(query, *args)


async def test_every_check_is_answered_by_one_statement_each_given_its_own_values(
    db: Database, clock: FakeClock
) -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    checks = [
        DueCheck("SELECT 1, 2", lambda *values: seen.append(("first", values)), columns=2),
        DueCheck("SELECT CAST($1 AS BIGINT) + 1", lambda *v: seen.append(("second", v))),
        DueCheck("SELECT NULL", lambda *values: seen.append(("third", values))),
    ]
    counting = CountingDatabase(db)
    await DueWatch(counting, clock, checks, 1).look()  # type: ignore[arg-type]
    assert len(counting.statements) == 1
    now = clock.now_ms()
    assert seen == [("first", (1, 2)), ("second", (now + 1,)), ("third", (None,))]


async def test_a_statement_without_the_time_is_sent_without_it(
    db: Database, clock: FakeClock
) -> None:
    seen: list[Any] = []
    await DueWatch(db, clock, [DueCheck("SELECT 7", seen.append)], 1).look()
    assert seen == [7]


async def test_a_round_that_fails_is_logged_and_the_next_looks_again(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rounds: list[int] = []

    def found(value: int) -> None:
        rounds.append(value)
        if len(rounds) == 1:
            raise RuntimeError("a bug in a worker's check")

    watch = DueWatch(db, clock, [DueCheck("SELECT 1", found)], 0.01)
    task = asyncio.create_task(watch.run())
    try:

        async def looked_again() -> bool:
            return len(rounds) >= 2

        await eventually(looked_again)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "Could not look for due work" in caplog.text


async def test_the_watch_keeps_to_the_event_loops_time_whatever_the_clock(
    db: Database, clock: FakeClock
) -> None:
    # A test clock moves when slept on: a watch slept on it would look in a tight loop.
    rounds: list[int] = []
    watch = DueWatch(db, clock, [DueCheck("SELECT 1", rounds.append)], 1.0)
    task = asyncio.create_task(watch.run())
    try:

        async def looked() -> bool:
            return bool(rounds)

        await eventually(looked)
        await asyncio.sleep(0.1)  # the wait between rounds is what is looked at here
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert clock.slept == []
    assert len(rounds) < 5  # a watch on the test clock would have looked hundreds of times
