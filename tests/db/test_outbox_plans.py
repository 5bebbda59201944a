"""The outbox's statements reach its rows through indexes, however many delivered rows it
keeps: they stay for `retention.webhooks_days`, so a statement that reads the whole table
slows every webhook as they pile up (the batch's delivered mark did: 306 ms a batch at 300,000
delivered rows, 0.5 ms through the primary key).

PostgreSQL only: SQLite has no statistics to choose a scan by (its plans name an index for
each of these statements whatever the table holds)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mautrix.util.async_db import Database

from bridge.delivery.outbox import Outbox

DELIVERED = 50_000  # rows kept: enough that reading them all costs more than any index
STREAM = "!busy:localhost"
NOW = 10_000_000


class RecordingDatabase:
    """The database as the outbox uses it, noting each statement it sends."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.scheme = db.scheme
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, query: str, *args: Any) -> Any:
        self.statements.append((query, args))
        return await self._db.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> Any:
        self.statements.append((query, args))
        return await self._db.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.statements.append((query, args))
        return await self._db.fetchrow(query, *args)


async def fill(db: Database) -> None:
    """Many delivered rows over many streams, a few pending ones, and the statistics."""
    await db.execute(
        "INSERT INTO outbox (id, stream, type, body, status, next_attempt_at, retry_until,"
        " created_at, delivered_at) SELECT 'old-' || g, '!room' || (g % 5000), 'message.created',"
        " repeat('x', 300), 'delivered', 0, 0, g, g FROM generate_series(1, $1) g",
        DELIVERED,
    )
    await db.execute(
        "INSERT INTO outbox (id, stream, type, body, next_attempt_at, retry_until, created_at)"
        " SELECT 'new-' || g, $1, 'message.created', '{}', $2::bigint, $2::bigint + 60000,"
        " $2::bigint"
        " FROM generate_series(1, 3) g",
        STREAM,
        NOW,
    )
    await db.execute("ANALYZE outbox")


async def every_statement(outbox: Outbox) -> None:
    """Each of the outbox's queries, as the workers and the admin commands make them."""
    heads = await outbox.lease_heads(NOW, NOW + 3000, 16)
    assert [row.id for row in heads] == ["new-1"], "the busy stream's head was leased"
    head = heads[0]
    following = await outbox.settle([head], NOW, NOW + 3000, 64)
    assert [row.id for row in following] == ["new-2", "new-3"]
    await outbox.renew(STREAM, NOW + 6000)
    await outbox.release(following[1:])
    await outbox.failed(following[0], "HTTP 503", NOW + 1000)
    await outbox.bring_forward(NOW)
    await outbox.retry_waiting(NOW)
    await outbox.lease(following[0], NOW, NOW + 3000)
    await outbox.next_head(STREAM)
    await outbox.delivered(following[0], NOW)
    await outbox.census(NOW)
    await outbox.failed(following[1], "HTTP 400", None)
    await outbox.dead_letters(10)
    await outbox.replay(["new-3"], STREAM, 60_000, NOW)
    await outbox.replay(None, None, 60_000, NOW)


def literal(value: Any) -> str:
    """An argument written into the statement (EXECUTE takes no parameters of its own)."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def scans_of(plan: dict, table: str) -> list[str]:
    """The plan's nodes that read every row of ``table``."""
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") == table:
        found.append(plan.get("Alias", table))
    for child in plan.get("Plans", []):
        found += scans_of(child, table)
    return found


@pytest.mark.parametrize("backend", ["postgres"])
async def test_no_outbox_statement_reads_every_row(db: Database) -> None:
    await fill(db)
    recording = RecordingDatabase(db)
    await every_statement(Outbox(recording))  # type: ignore[arg-type]
    assert len(recording.statements) >= 15
    scanning = []
    async with db.acquire() as conn:
        for query, args in recording.statements:
            # Both plans the server may use for a prepared statement: one made for the
            # arguments, and the generic one it switches to after a few executions.
            for mode in ("force_custom_plan", "force_generic_plan"):
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
                    await conn.execute(f"PREPARE audited AS {query}")
                    values = f"({', '.join(map(literal, args))})" if args else ""
                    explained = await conn.fetchval(
                        f"EXPLAIN (FORMAT JSON) EXECUTE audited{values}"
                    )
                    await conn.execute("DEALLOCATE audited")
                plan = json.loads(explained)[0]["Plan"]
                if scans_of(plan, "outbox"):
                    scanning.append((mode, query))
    assert scanning == []
