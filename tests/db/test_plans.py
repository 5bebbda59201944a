"""Statements that run again and again reach their rows through indexes, however much
history the tables keep: delivered webhooks stay for `retention.webhooks_days`, transactions
and users for good, so a statement that reads a whole table slows as the marketplace grows.
Found this way: the batch's delivered mark (306 ms a batch at 300,000 delivered rows, 0.5 ms
through the primary key), retention's batches of webhooks to delete, the 'changed' reconcile's
suspended or erased users (every few seconds), the open transactions.

PostgreSQL only: SQLite has no statistics to choose a scan by (its plans name an index for
these statements whatever the tables hold)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from mautrix.util.async_db import Database

from bridge.delivery.outbox import DUE, Outbox, queue_notifications
from bridge.market.records.reconcile_runs import ReconcileRuns
from bridge.market.records.rooms import ManagedRooms
from bridge.retention.records import prune_webhooks
from bridge.runtime.due import DueCheck, DueWatch
from bridge.storage.writes import Writes
from policy.notifications import Notification

DELIVERED = 50_000  # webhooks kept: enough that reading them all costs more than any index
USERS = 20_000
TRANSACTIONS = 50_000  # one in ten open
CHECKED = ("outbox", "marketplace_users", "transactions")  # the tables made big here
STREAM = "!busy:localhost"
NOW = 10_000_000


class Recorder:
    """Notes each statement sent, with its arguments, and sends it on."""

    def __init__(self, target: Any, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._target = target
        self.scheme = target.scheme
        self.statements = statements

    async def _send(self, method: str, query: str, *args: Any) -> Any:
        self.statements.append((query, args))
        return await getattr(self._target, method)(query, *args)

    async def execute(self, query: str, *args: Any) -> Any:
        return await self._send("execute", query, *args)

    async def fetch(self, query: str, *args: Any) -> Any:
        return await self._send("fetch", query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._send("fetchrow", query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._send("fetchval", query, *args)


class RecordingDatabase(Recorder):
    """The database as the bridge's records use it, its connections' statements noted too."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, [])

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Recorder]:
        async with self._target.acquire() as conn:
            yield Recorder(conn, self.statements)


async def fill(db: Database) -> None:
    """Much history, a little of it live: delivered webhooks over many rooms and a busy
    room's three pending ones; users, a few suspended long ago; transactions, most closed."""
    await db.execute(
        "INSERT INTO outbox (id, stream, type, body, status, next_attempt_at, retry_until,"
        " created_at, delivered_at) SELECT 'old-' || g, '!room' || (g % 5000), 'message.created',"
        " repeat('x', 300), 'delivered', 0, 0, g, g FROM generate_series(1, $1) g",
        DELIVERED,
    )
    await db.execute(
        "INSERT INTO outbox (id, stream, type, body, next_attempt_at, retry_until, created_at)"
        " SELECT 'new-' || g, $1, 'message.created', '{}', $2::bigint, $2::bigint + 60000,"
        " $2::bigint FROM generate_series(1, 3) g",
        STREAM,
        NOW,
    )
    await db.execute(
        "INSERT INTO marketplace_users (user_id, matrix_id, created_at, suspended_at)"
        " SELECT 'u' || g, '@u' || g || ':localhost', g,"
        " CASE WHEN g % 1000 = 0 THEN g END FROM generate_series(1, $1) g",
        USERS,
    )
    await db.execute(
        "INSERT INTO transactions (transaction_id, title, buyer_id, seller_id, state, room_id,"
        " room_version, created_at, changed_at) SELECT 't' || g, 'A lamp', 'u' || (1 + g % $2),"
        " 'u' || (1 + (g + 1) % $2), CASE WHEN g % 10 = 0 THEN 'paid' ELSE 'closed' END,"
        " '!t' || g, '10', g, g FROM generate_series(1, $1) g",
        TRANSACTIONS,
        USERS,
    )
    for table in CHECKED:
        await db.execute(f"ANALYZE {table}")


async def every_statement(db: RecordingDatabase) -> None:
    """The outbox's queries as the inbox, the workers, the due watch and the admin commands
    make them; the 'changed' and scheduled reconciles' and the catch-up's reads; retention's
    prune of webhooks."""
    writes = Writes()  # a message's webhook, leased as it is queued (the inbox's hand-off)
    note = Notification("message.created", "quiet-1", NOW, {"text": "hello"})
    queue_notifications(writes, "!quiet:localhost", [note], 60_000, NOW, None, NOW + 3000)
    async with db.acquire() as conn:
        await writes.run(conn)  # type: ignore[arg-type]
    outbox = Outbox(db)  # type: ignore[arg-type]
    heads = await outbox.lease_heads(NOW, NOW + 3000, 16)
    assert [row.id for row in heads] == ["new-1"], "the busy stream's head was leased"
    following = await outbox.settle(heads, NOW, NOW + 3000, 64)
    assert [row.id for row in following] == ["new-2", "new-3"]
    await outbox.renew(STREAM, NOW + 6000)
    await outbox.release(following[1:])
    await outbox.failed(following[0], "HTTP 503", NOW + 1000)
    await outbox.bring_forward(NOW)
    await outbox.retry_waiting(NOW)
    await outbox.lease(following[0], NOW, NOW + 3000)
    await outbox.next_head(STREAM)
    await outbox.delivered(following[0], NOW)
    at_now = SimpleNamespace(now_ms=lambda: NOW)  # the clock DueWatch reads
    await DueWatch(db, at_now, [DueCheck(DUE, lambda *_: None, columns=3)], 1).look()  # type: ignore[arg-type]
    await outbox.failed(following[1], "HTTP 400", None)
    await outbox.dead_letters(10)
    await outbox.replay(["new-3"], STREAM, 60_000, NOW)
    await outbox.replay(None, None, 60_000, NOW)
    runs = ReconcileRuns(db)  # type: ignore[arg-type]
    await runs.changed_since(NOW, "!management:localhost")
    assert len(await runs.active_objects()) == TRANSACTIONS // 10
    await ManagedRooms(db).active()  # type: ignore[arg-type]
    assert await prune_webhooks(db, DELIVERED // 10) == DELIVERED // 10 - 1  # type: ignore[arg-type]


def literal(value: Any) -> str:
    """An argument written into the statement (EXECUTE takes no parameters of its own)."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def scans(plan: dict) -> list[str]:
    """The tables of `CHECKED` the plan reads every row of."""
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in CHECKED:
        found.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def plan(conn: Any, query: str, args: tuple[Any, ...], mode: str) -> dict:
    """The plan of ``query`` with ``args`` prepared as the bridge's driver prepares it, made
    for these arguments (force_custom_plan) or for any (force_generic_plan)."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE audited AS {query}")
        values = f"({', '.join(map(literal, args))})" if args else ""
        explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE audited{values}")
        await conn.execute("DEALLOCATE audited")
    return json.loads(explained)[0]["Plan"]


@pytest.mark.parametrize("backend", ["postgres"])
async def test_no_statement_run_again_and_again_reads_a_whole_big_table(db: Database) -> None:
    await fill(db)
    recording = RecordingDatabase(db)
    await every_statement(recording)
    assert len(recording.statements) >= 20
    scanning = []
    async with db.acquire() as conn:
        for query, args in recording.statements:
            # The plans PostgreSQL may use for a prepared statement: one made for its
            # arguments, and after a few executions the generic one, if that is estimated to
            # cost no more.
            custom = await plan(conn, query, args, "force_custom_plan")
            generic = await plan(conn, query, args, "force_generic_plan")
            for mode, chosen in (("custom", custom), ("generic", generic)):
                if mode == "generic" and generic["Total Cost"] > custom["Total Cost"]:
                    continue
                if found := scans(chosen):
                    scanning.append((mode, found, query))
    assert scanning == []
