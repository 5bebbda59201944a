"""PostgreSQL connections: a small pool of asyncpg connections behind mautrix's `Database`.

Why not asyncpg's own pool: a message takes three pool connections (intake, inbox writes,
delivered mark), and asyncpg's acquire and release cost about 40 us of client CPU more
than taking a connection from a list (its release shields a task of its own and re-arms an
inactivity timer): 72 against 35 us for acquire, `SELECT 1` and release, measured here
(docs/performance.md, tenth round). The bridge keeps no session state on its connections,
so of what asyncpg's pool does on a return only ending a transaction left open is needed
(`LeanConnection`), and idle connections need not be closed. What else is needed is here: at
most ``max_size`` connections, waiters served in turn, a connection broken, cut off
mid-statement or still cancelling a statement dropped (the next acquire connects afresh,
after a database cut say), and a connection used after its return refused (`Loan`). Each
loan is a class-based context (`_Lending`) lending a lean wrapper (`PooledConnection`), where
mautrix's are two generator contexts and a wrapper with a logging coroutine per statement.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import asyncpg
from mautrix.util.async_db import Database
from mautrix.util.async_db.asyncpg import PostgresDatabase
from mautrix.util.async_db.connection import LoggingConnection
from mautrix.util.async_db.database import conn_var
from yarl import URL

# Errors after which a connection's state is unknown (a statement cut off mid-way, the
# socket gone): it is closed rather than lent again.
_BREAKING = (
    asyncpg.InternalClientError,
    asyncio.CancelledError,
    TimeoutError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
)


class Loan:
    """A lent connection as its borrower sees it: used after its return (by a task started
    inside the block, say), it fails rather than run in another borrower's transaction, as
    asyncpg's pool's proxy did. ``error``: what is raised then."""

    __slots__ = ("_conn", "_error")

    def __init__(self, conn: Any, error: type[Exception] = asyncpg.InterfaceError) -> None:
        self._conn: Any = conn
        self._error = error

    def __getattr__(self, name: str) -> Any:
        if self._conn is None:
            raise self._error("a connection used after its return to the pool")
        return getattr(self._conn, name)

    def end(self) -> None:
        self._conn = None


class LeanConnection(asyncpg.Connection):
    """A connection whose `reset` only ends a transaction left open (and forgets listeners):
    the bridge sets no session state on its connections (no LISTEN, SET, cursor or session
    advisory lock), so asyncpg's reset query (UNLISTEN, RESET ALL, CLOSE ALL, advisory
    unlock: a round trip a loan) would undo nothing."""

    def get_reset_query(self) -> str:
        return ""


class ConnectionPool:
    """Lends up to ``max_size`` asyncpg connections, opened as needed and kept open."""

    def __init__(self, url: str, max_size: int, **connect_args: Any) -> None:
        self._url = url
        self._max_size = max_size
        self._connect_args = connect_args
        self._idle: list[asyncpg.Connection] = []
        # Each waiter is given a connection, or None when a slot came free to connect in.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._size = 0  # connections open, being opened or lent
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    async def acquire(self) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("the connection pool is closed")
            while self._idle:
                conn = self._idle.pop()  # the latest returned: the fewest kept busy
                if not conn.is_closed():
                    return conn
                self._size -= 1  # closed while idle (the server went away)
            if self._size < self._max_size:
                return await self._connect()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                self._abandon(waiter)
                raise
            if conn is not None:
                return conn

    async def release(self, conn: asyncpg.Connection, *, broken: bool = False) -> None:
        """Take a connection back: lent again, or closed when ``broken`` or unusable."""
        # A statement cut off with its error caught in the block may still be cancelling: the
        # connection's transaction status is not known until the server answers (a BEGIN it
        # ran would leave the next borrower's writes in a transaction rolled back unseen).
        # asyncpg's pool waits for that; this one drops the connection (seldom met).
        if broken or conn.is_closed() or self._closed or conn._protocol._is_cancelling():
            self._drop(conn)
            return
        # Else nothing to undo (no reset query: Lean); a transaction object left behind by a
        # BEGIN that failed is one, or every later transaction() on it would fail.
        if conn.is_in_transaction() or conn._top_xact is not None:
            try:
                await conn.reset()  # the transaction left open rolled back
            except Exception:  # the connection failed: closed instead
                self._drop(conn)
                return
            except BaseException:  # cancelled mid-way
                self._drop(conn)
                raise
        self._give(conn)

    async def close(self) -> None:
        """Close the idle connections; those lent are closed as they come back."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the connection pool is closed"))
        idle, self._idle = self._idle, []
        self._size -= len(idle)
        await asyncio.gather(*(conn.close(timeout=5) for conn in idle), return_exceptions=True)

    async def _connect(self) -> asyncpg.Connection:
        self._size += 1  # taken before the wait, so that others count it
        try:
            return await asyncpg.connect(
                self._url, connection_class=LeanConnection, **self._connect_args
            )
        except BaseException:
            self._size -= 1
            self._hand(None)  # another waiter may try
            raise

    def _drop(self, conn: asyncpg.Connection) -> None:
        conn.terminate()
        self._size -= 1
        self._hand(None)  # a waiter may connect in its place

    def _give(self, conn: asyncpg.Connection) -> None:
        if self._closed:  # closed while the connection was rolled back, or handed on
            self._drop(conn)
        elif not self._hand(conn):
            self._idle.append(conn)

    def _hand(self, conn: asyncpg.Connection | None) -> bool:
        """Give the first live waiter ``conn`` (None: a free slot); whether one took it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _abandon(self, waiter: asyncio.Future[asyncpg.Connection | None]) -> None:
        """A waiter cancelled: what it was handed goes to the next one."""
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            handed = waiter.result()
            if handed is not None:
                self._give(handed)
            else:
                self._hand(None)
        elif waiter in self._waiters:
            self._waiters.remove(waiter)


class PooledConnection(LoggingConnection):
    """mautrix's connection wrapper, lean: a statement goes straight to asyncpg. mautrix's
    own wraps each in two coroutines of its own and a log call, at TRACE level, or WARNING
    past a second (`log_duration`), and hands every error to the database's handler, a
    no-op here (``_exit_on_ice`` is off). A slow database shows in the metrics
    (`bridge_inbox_lag_seconds`, `bridge_outbox_depth`: docs/operations.md), not in that log."""

    def __init__(self, scheme: Any, conn: Any, log: Any) -> None:
        # mautrix's fields, frozen as there, set without its per-field check.
        for name, value in (("scheme", scheme), ("wrapped", conn), ("log", log)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_handle_exception", _no_handler)
        object.__setattr__(self, "_inited", True)

    # The signatures are mautrix's (its ``timeout``: asyncpg's, per statement).
    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        return await self.wrapped.execute(query, *args, timeout=timeout)

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        return await self.wrapped.fetch(query, *args, timeout=timeout)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        return await self.wrapped.fetchrow(query, *args, timeout=timeout)

    async def fetchval(
        self,
        query: str,
        *args: Any,
        column: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        return await self.wrapped.fetchval(query, *args, column=column, timeout=timeout)


async def _no_handler(_: Exception) -> None:
    pass


class _Lending:
    """A loan as an async context (a class, not a generator: one or more a message):
    `acquire_direct`'s, or with ``shared`` mautrix's `acquire`'s, which lends the connection
    the task already holds, if any, and else makes its own the task's (``conn_var``)."""

    __slots__ = ("_conn", "_db", "_loan", "_shared", "_token")

    def __init__(self, db: PooledPostgresDatabase, shared: bool) -> None:
        self._db = db
        self._shared = shared
        self._conn: asyncpg.Connection | None = None
        self._loan: Loan | None = None
        self._token: Any = None

    async def __aenter__(self) -> PooledConnection:
        if self._shared:
            held = conn_var.get(None)
            if held is not None:
                return held  # the task's own loan: returned by whoever took it
        db = self._db
        self._conn = await db._connections.acquire()
        self._loan = Loan(self._conn)
        conn = PooledConnection(db.scheme, self._loan, db.log)
        if self._shared:
            self._token = conn_var.set(conn)
        return conn

    async def __aexit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if self._loan is None:
            return
        if self._token is not None:
            conn_var.reset(self._token)
        self._loan.end()
        broken = kind is not None and issubclass(kind, _BREAKING)
        await self._db._connections.release(self._conn, broken=broken)


class PooledPostgresDatabase(PostgresDatabase):
    """mautrix's PostgreSQL `Database` with its connections lent by `ConnectionPool`."""

    def __init__(self, url: str, upgrade_table: Any, max_size: int, **connect_args: Any) -> None:
        super().__init__(URL(url), upgrade_table=upgrade_table)
        # mautrix exits the process on an asyncpg internal client error. One comes when a
        # statement is sent on a connection whose backend the server has just ended (a
        # restart of PostgreSQL) before asyncpg read the server's notice: that connection
        # is dropped instead, and the work that met it is tried again, as after a cut.
        self._exit_on_ice = False
        self._connections = ConnectionPool(str(self.url), max_size, **connect_args)

    async def start(self) -> None:
        await Database.start(self)  # the schema's upgrade; no asyncpg pool to create

    async def stop(self) -> None:
        await self._connections.close()

    def acquire_direct(self) -> _Lending:  # type: ignore[override]
        return _Lending(self, shared=False)

    def acquire(self) -> _Lending:  # type: ignore[override]
        return _Lending(self, shared=True)
