"""SQLite (the embedded default): mautrix's database and aiosqlite's connection, made safe
against cancellation and against use after a loan.

One connection serves everyone, through aiosqlite's thread. Three ways it could keep locks
or swallow writes, each closed here:

- mautrix rolls a transaction back on an exception but not on a cancellation: the
  connection would carry the cancelled transaction into every later statement, and none of
  them would ever be committed. A loan that ends by any exception, or with a transaction
  open, is rolled back (PostgreSQL's pool does the same, `bridge.storage.pool`).
- A statement whose cursor came back just as its caller was cancelled was never reset: its
  cursor, kept by the cancellation's traceback (a cancelled task remembers it), held the
  statement's locks, and an INSERT or UPDATE ... RETURNING holds the write lock until it is
  reset. Later writes on the connection were not committed while it lived, and another
  process met "database is locked" (seen in the tests: a bridge closed, then the next one
  on its file). Such a cursor is now closed at once (`CancellationSafeConnection`).
- A task started inside a loan inherits mautrix's connection context; used after the
  loan, it would run its statements inside the next borrower's transaction. It fails
  instead (`Loan`), as on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from mautrix.util.async_db import Database
from mautrix.util.async_db.aiosqlite import SQLiteDatabase as MautrixSQLiteDatabase
from mautrix.util.async_db.aiosqlite import TxnConnection
from mautrix.util.async_db.connection import LoggingConnection

from .pool import Loan


class CancellationSafeConnection(TxnConnection):
    """mautrix's aiosqlite connection, whose statements a cancellation does not leave open."""

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # aiosqlite's own, but for the cancellation.
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        future = asyncio.get_event_loop().create_future()
        self._tx.put_nowait((future, partial(fn, *args, **kwargs)))
        try:
            return await future
        except asyncio.CancelledError:
            # The statement ran and its cursor came back before the cancellation reached
            # this task: reset it in the connection's thread, before any later statement.
            if future.done() and not future.cancelled():
                result = future.result()
                if isinstance(result, sqlite3.Cursor):
                    self._tx.put_nowait((None, result.close))
            raise


class SQLiteDatabase(MautrixSQLiteDatabase):
    """mautrix's SQLite database on `CancellationSafeConnection`, lending its connection
    through a `Loan` and taking it back with no transaction open."""

    async def start(self) -> None:
        # mautrix's own, with the connection class above.
        if self._conns:
            raise RuntimeError("database pool has already been started")
        if self._stopped:
            raise RuntimeError("database pool can't be restarted")
        for _ in range(self._pool.maxsize):
            conn = await CancellationSafeConnection(self._path, **self._db_args)
            for command in self._init_commands:
                cursor = await conn.execute(command)
                await cursor.close()
            await conn.commit()
            conn.row_factory = sqlite3.Row
            self._pool.put_nowait(conn)
            self._conns += 1
        await Database.start(self)  # the schema's upgrade

    @asynccontextmanager
    async def acquire_direct(self) -> AsyncIterator[LoggingConnection]:  # type: ignore[override]
        if self._stopped:
            raise RuntimeError("database pool has been stopped")
        conn = await self._pool.get()
        loan = Loan(conn, sqlite3.ProgrammingError)
        try:
            try:
                yield LoggingConnection(self.scheme, loan, self.log)
            except BaseException:
                # Queued behind a statement the cancellation left running; a no-op when
                # mautrix rolled back already.
                await _roll_back(conn)
                raise
            if conn.in_transaction:
                await _roll_back(conn)
        finally:
            loan.end()
            self._pool.put_nowait(conn)


async def _roll_back(conn: TxnConnection) -> None:
    try:
        await conn.rollback()
    except Exception:  # the error that ended the loan is the one to raise
        logging.getLogger("bridge.storage").exception("Could not roll back a transaction")
