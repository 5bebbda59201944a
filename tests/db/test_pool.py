"""The PostgreSQL connection pool (bridge.storage.pool) on a real server: connections lent
again, at most its size, waiters served in turn, a transaction left open rolled back, and a
connection the server ended or a statement cut off replaced by a fresh one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bridge.config import DatabaseConfig
from bridge.storage.database import create_database, database_failed, start_database
from bridge.storage.pool import ConnectionPool, PooledPostgresDatabase
from tests.harness import eventually, free_port, fresh_postgres_database


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
async def pool(url: str) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(url, 2)
    yield pool
    await pool.close()


async def backend(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT pg_backend_pid()")


async def test_a_returned_connection_is_lent_again(pool: ConnectionPool) -> None:
    first = await pool.acquire()
    pid = await backend(first)
    await pool.release(first)
    again = await pool.acquire()
    assert again is first and await backend(again) == pid
    assert pool.size == 1
    await pool.release(again)


async def test_no_more_than_its_size_are_open_and_waiters_are_served_in_turn(
    pool: ConnectionPool,
) -> None:
    held = [await pool.acquire(), await pool.acquire()]
    waiters = [asyncio.create_task(pool.acquire()) for _ in range(2)]
    await asyncio.sleep(0)  # both waiters reach the queue
    assert not any(w.done() for w in waiters)
    await pool.release(held[0])
    assert await waiters[0] is held[0]
    assert not waiters[1].done()
    await pool.release(held[1])
    assert await waiters[1] is held[1]
    assert pool.size == 2
    for conn in held:
        await pool.release(conn)


async def test_a_cancelled_waiter_passes_its_turn_on(pool: ConnectionPool) -> None:
    held = [await pool.acquire(), await pool.acquire()]
    cancelled = asyncio.create_task(pool.acquire())
    served = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    await pool.release(held[0])  # handed to the first waiter, which is then cancelled
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await served is held[0]
    await pool.release(held[0])
    await pool.release(held[1])
    assert pool.size == 2


async def test_a_transaction_left_open_is_rolled_back(pool: ConnectionPool) -> None:
    conn = await pool.acquire()
    await conn.execute("CREATE TABLE kept (n INT)")
    await conn.execute("BEGIN")
    await conn.execute("INSERT INTO kept VALUES (1)")
    await pool.release(conn)
    again = await pool.acquire()
    assert again is conn and not again.is_in_transaction()
    assert await again.fetchval("SELECT count(*) FROM kept") == 0
    await pool.release(again)


async def test_a_connection_the_server_ended_is_replaced(url: str, pool: ConnectionPool) -> None:
    conn = await pool.acquire()
    ended = await backend(conn)
    await pool.release(conn)
    killer = await asyncpg.connect(url)
    assert await killer.fetchval("SELECT pg_terminate_backend($1)", ended)
    await killer.close()

    async def seen_closed() -> bool:
        return conn.is_closed()

    await eventually(seen_closed)
    fresh = await pool.acquire()
    assert fresh is not conn and await backend(fresh) != ended
    assert pool.size == 1
    await pool.release(fresh)


async def test_a_server_ending_its_backends_does_not_stop_the_bridge(url: str) -> None:
    """A statement sent just as the server ends its backend (a restart of PostgreSQL) can
    meet an asyncpg internal client error, on which mautrix would exit the process (it did
    in about half of such tries here): the work sees a database failure, to be tried again,
    and the next statement gets a fresh connection."""
    db = create_database(DatabaseConfig(url=url, max_connections=1))
    await start_database(db)
    killer = await asyncpg.connect(url)
    try:
        for _ in range(20):
            ended = await db.fetchval("SELECT pg_backend_pid()")
            await killer.execute("SELECT pg_terminate_backend($1)", ended)

            async def answered_by_another(ended: int = ended) -> bool:
                try:
                    return await db.fetchval("SELECT pg_backend_pid()") != ended
                except SystemExit:
                    pytest.fail("the bridge's process would have exited")
                except Exception as e:
                    assert database_failed(e), e
                    return False

            await eventually(answered_by_another)
    finally:
        await killer.close()
        await db.stop()


async def test_a_statement_cut_off_drops_its_connection(url: str) -> None:
    db = create_database(DatabaseConfig(url=url, max_connections=1))
    assert isinstance(db, PooledPostgresDatabase)
    await start_database(db)
    try:
        with pytest.raises(TimeoutError):
            async with db.acquire() as conn:
                cut = await conn.fetchval("SELECT pg_backend_pid()")
                async with asyncio.timeout(0.2):
                    await conn.execute("SELECT pg_sleep(30)")
        # The next statement gets a fresh connection, not one with a query still running.
        assert await db.fetchval("SELECT pg_backend_pid()") != cut
    finally:
        await db.stop()


@pytest.mark.parametrize("cut", ["BEGIN", "a transaction", "a long statement"])
async def test_a_statement_cut_off_and_caught_loses_no_later_write(url: str, cut: str) -> None:
    """A statement cut off with its error caught inside the block (a BEGIN the server may
    have run, say) must not leave the next borrower's writes in a transaction that is then
    rolled back unseen, nor make its transactions fail: every write after it is kept."""
    db = create_database(DatabaseConfig(url=url, max_connections=1))
    await start_database(db)
    try:
        await db.execute("CREATE TABLE kept (n INT)")
        for n in range(10):
            async with db.acquire() as conn:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05 if cut == "a long statement" else 0):
                        if cut == "BEGIN":
                            await conn.execute("BEGIN")
                        elif cut == "a transaction":
                            async with conn.transaction():
                                await conn.execute("SELECT 1")
                        else:
                            await conn.execute("SELECT pg_sleep(30)")
            await db.execute("INSERT INTO kept VALUES ($1)", n)
            async with db.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO kept VALUES ($1)", 100 + n)
        assert await db.fetchval("SELECT count(*) FROM kept") == 20
    finally:
        await db.stop()


async def test_a_failed_connect_frees_its_place() -> None:
    pool = ConnectionPool(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", 1)
    for _ in range(2):  # the second try is not left waiting for the first's place
        with pytest.raises(OSError):
            await pool.acquire()
    assert pool.size == 0
    await pool.close()


async def test_a_closed_pool_lends_nothing_and_closes_what_comes_back(
    pool: ConnectionPool,
) -> None:
    lent = await pool.acquire()
    idle = await pool.acquire()
    await pool.release(idle)
    await pool.close()
    assert idle.is_closed()
    with pytest.raises(asyncpg.InterfaceError):
        await pool.acquire()
    await pool.release(lent)
    assert lent.is_closed() and pool.size == 0


async def test_closing_fails_the_waiters(pool: ConnectionPool) -> None:
    held = [await pool.acquire(), await pool.acquire()]
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    await pool.close()
    with pytest.raises(asyncpg.InterfaceError):
        await waiter
    for conn in held:
        await pool.release(conn)
    assert pool.size == 0


async def test_a_connection_coming_back_while_the_pool_closes_is_closed(
    pool: ConnectionPool,
) -> None:
    conn = await pool.acquire()
    await conn.execute("BEGIN")  # its return waits for a ROLLBACK, during which the pool closes
    returning = asyncio.create_task(pool.release(conn))
    await asyncio.sleep(0)
    await pool.close()
    await returning
    assert conn.is_closed() and pool.size == 0


async def test_a_connection_used_after_its_return_fails(url: str) -> None:
    db = create_database(DatabaseConfig(url=url, max_connections=1))
    await start_database(db)
    try:
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        async with db.acquire() as other, other.transaction():
            with pytest.raises(asyncpg.InterfaceError):
                await conn.execute("SELECT 1")  # not run in the other borrower's transaction
    finally:
        await db.stop()


async def test_a_task_holding_a_connection_is_lent_it_again(url: str) -> None:
    """mautrix's contract: inside ``acquire``, the database's own statements and a nested
    ``acquire`` run on the connection the task holds (in its transaction), not on another."""
    db = create_database(DatabaseConfig(url=url, max_connections=2))
    await start_database(db)
    try:
        async with db.acquire() as conn, conn.transaction():
            await conn.execute("CREATE TEMPORARY TABLE seen (n INT) ON COMMIT DROP")
            await conn.execute("INSERT INTO seen VALUES (1)")
            assert await db.fetchval("SELECT COUNT(*) FROM seen") == 1
            async with db.acquire() as nested:
                assert nested is conn
            async with db.acquire_direct() as other:  # a loan of its own, outside it
                assert other is not conn
                assert await other.fetchval("SELECT to_regclass('seen') IS NULL")
        assert await db.fetchval("SELECT 1") == 1  # the loan came back: lent again
    finally:
        await db.stop()
