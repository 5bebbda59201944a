"""SQLite's one connection: a cancellation leaves no statement holding its locks, and a
connection used after its loan fails instead of joining the next borrower's work."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mautrix.util.async_db import Database

from bridge.config import DatabaseConfig
from bridge.storage.database import create_database, start_database
from tests.sqlite_lock import takes_write_lock

STATEMENT_DEADLINE_S = 10.0


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = create_database(
        DatabaseConfig(url=f"sqlite://{tmp_path / 'bridge.db'}", max_connections=1)
    )
    await start_database(database)
    await database.execute("CREATE TABLE t (x INTEGER)")
    yield database
    await database.stop()


async def test_a_statement_answered_as_its_caller_is_cancelled_keeps_no_lock(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """The cancellation reaches the task after its statement's cursor came back (the order
    is made certain: the connection's thread is held, then the answer is queued before the
    cancellation). The task is kept, as a closing bridge keeps its cancelled workers, and
    with it the cancellation's traceback: the cursor of an INSERT ... RETURNING used to keep
    the file write-locked, and the connection's later writes uncommitted, for as long."""
    loop = asyncio.get_running_loop()
    held, answered = threading.Event(), threading.Event()
    async with sqlite_db.acquire() as conn:
        thread_queue = conn.wrapped._tx  # aiosqlite's queue of work for the connection's thread
        thread_queue.put_nowait((None, held.wait))
        task = asyncio.create_task(conn.fetch("INSERT INTO t VALUES (1) RETURNING x"))
        await asyncio.sleep(0)  # the task queues its statement, behind the wait
        thread_queue.put_nowait((None, answered.set))  # after the statement's answer
        held.set()
        assert answered.wait(STATEMENT_DEADLINE_S)  # its answer is queued for this loop
        loop.call_soon(task.cancel)  # runs after the answer, before the task resumes
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
    await sqlite_db.execute("INSERT INTO t VALUES (2)")
    path = str(tmp_path / "bridge.db")
    assert takes_write_lock(path)
    other = sqlite3.connect(path)
    try:
        assert [x for (x,) in other.execute("SELECT x FROM t ORDER BY x")] == [1, 2]
    finally:
        other.close()


async def test_a_connection_used_after_its_loan_fails(sqlite_db: Database) -> None:
    async with sqlite_db.acquire() as conn:
        await conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.ProgrammingError, match="after its return"):
        await conn.execute("INSERT INTO t VALUES (2)")
    assert await sqlite_db.fetchval("SELECT COUNT(*) FROM t") == 1
