"""Writes gathered and run together (bridge.storage.writes), on both backends."""

from __future__ import annotations

import pytest
from mautrix.util.async_db import Database

from bridge.market.records.audit import AuditEntry, write_audit
from bridge.storage.writes import Rows, Writes
from tests.db.conftest import deal_with_dispute

INSERT_MUTE = "INSERT INTO mutes (room_id, user_id, until) VALUES ($1, $2, $3) RETURNING until"


async def mutes(db: Database) -> list[tuple[str, str, int]]:
    rows = await db.fetch("SELECT room_id, user_id, until FROM mutes ORDER BY room_id, user_id")
    return [(r["room_id"], r["user_id"], r["until"]) for r in rows]


async def test_every_statement_runs_with_its_own_arguments(db: Database) -> None:
    writes = Writes()
    answered: list[Rows] = []
    writes.add(INSERT_MUTE, "!a", "@x", 5, then=answered.append)
    await writes.execute(
        "INSERT INTO mutes (room_id, user_id, until) VALUES ($1, $2, $3)", "!b", "@y", 6
    )
    writes.add(INSERT_MUTE, "!c", "@z", 7, then=answered.append)
    async with db.acquire() as conn, conn.transaction():
        await writes.run(conn)
    assert await mutes(db) == [("!a", "@x", 5), ("!b", "@y", 6), ("!c", "@z", 7)]
    assert answered == [[{"until": 5}], [{"until": 7}]]


async def test_a_statement_that_changes_nothing_answers_no_rows(db: Database) -> None:
    writes = Writes()
    answered: list[Rows] = []
    writes.add("UPDATE mutes SET until = 1 WHERE room_id = $1 RETURNING until", "!none")
    writes.add(
        "UPDATE mutes SET until = 1 WHERE room_id = $1 RETURNING until",
        "!none",
        then=answered.append,
    )
    async with db.acquire() as conn:
        await writes.run(conn)
    assert answered == [[]]


async def test_run_forgets_what_it_ran(db: Database) -> None:
    writes = Writes()
    writes.add(INSERT_MUTE, "!a", "@x", 5)
    async with db.acquire() as conn:
        await writes.run(conn)
        await writes.run(conn)  # nothing left: no second insert (it would conflict)
    assert await mutes(db) == [("!a", "@x", 5)]


async def test_a_failing_statement_fails_the_run_and_the_transaction(db: Database) -> None:
    writes = Writes()
    writes.add(INSERT_MUTE, "!a", "@x", 5)
    writes.add(INSERT_MUTE, "!a", "@x", 6)  # the same key again
    with pytest.raises(Exception, match=r"(?i)unique"):
        async with db.acquire() as conn, conn.transaction():
            await writes.run(conn)
    assert await mutes(db) == []


async def test_audit_entries_find_their_room_s_objects_in_the_same_statement(
    db: Database,
) -> None:
    await deal_with_dispute(db)
    writes = Writes()
    for room in ("!deal", "!dispute", "!elsewhere", ""):
        await write_audit(writes, AuditEntry("@bot", "test", room), 1)
    await write_audit(writes, AuditEntry("@bot", "given", "!deal", transaction_id="t9"), 1)
    async with db.acquire() as conn, conn.transaction():
        await writes.run(conn)
    rows = await db.fetch("SELECT room_id, transaction_id, dispute_id FROM audit ORDER BY seq")
    found = {(r["room_id"], r["transaction_id"], r["dispute_id"]) for r in rows}
    assert found == {
        ("!deal", "t1", None),
        ("!dispute", "t1", "d1"),
        ("!elsewhere", None, None),
        ("", None, None),
        ("!deal", "t9", None),
    }
